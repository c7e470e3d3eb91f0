"""The chat data path against the real server: the tokenizer a dataset builder fetches, and
role_colon's stop handling on what the server actually samples."""

from __future__ import annotations

from pathlib import Path

from cookbook.client.local_server import LocalServer
from cookbook.client.types import SamplingParams
from cookbook.recipes.chat_sl.chat_datasets import NoRobotsBuilder
from cookbook.renderers import ParseTermination, get_renderer
from cookbook.supervised import ChatDatasetBuilderCommonConfig
from cookbook.tokenizer_utils import find_tokenizer

BUILTIN = "tiny-llama"


def test_builder_fetches_the_tokenizer_from_the_server(server: LocalServer, tmp_path: Path) -> None:
    from server_stub.models.builtin_tokenizer import builtin_tokenizer_json

    (tmp_path / "train.jsonl").write_text(
        '{"messages": [{"role": "user", "content": "What is 3 plus 4?"}, {"role": "assistant", "content": "7"}]}\n'
    )
    cfg = ChatDatasetBuilderCommonConfig(
        model_name_for_tokenizer=BUILTIN,
        renderer_name="role_colon",
        max_length=64,
        batch_size=1,
        base_url=server.url,
    )
    builder = NoRobotsBuilder(common_config=cfg, dataset=str(tmp_path / "train.jsonl"))
    tokenizer = builder.tokenizer
    assert tokenizer.to_json_str() == builtin_tokenizer_json() and tokenizer.eos_token == "<|endoftext|>"
    assert find_tokenizer(BUILTIN) is tokenizer  # cached: later builders need no server
    (datum,) = builder()[0].get_batch(0)
    targets = datum.loss_fn_inputs["target_tokens"].tolist()
    trained = [t for t, w in zip(targets, datum.loss_fn_inputs["weights"].tolist(), strict=True) if w]
    assert tokenizer.decode(trained) == " 7\n\nUser:"


def test_sampled_tokens_parse_consistently_with_the_stop_reason(server: LocalServer) -> None:
    from cookbook.client import connect

    with connect(server.url) as service:
        tokenizer = service.get_tokenizer(BUILTIN)
        renderer = get_renderer("role_colon", tokenizer)
        sampler = service.create_sampling_client(base_model=BUILTIN)
        prompt = renderer.build_generation_prompt([{"role": "user", "content": "What is 3 plus 4?"}])
        params = SamplingParams(max_tokens=12, temperature=1.0, seed=0, stop=renderer.get_stop_sequences())
        sequences = sampler.sample(prompt, 8, params).result().sequences
    for sequence in sequences:
        message, ended = renderer.parse_response(sequence.tokens)
        text = tokenizer.decode(sequence.tokens)
        if sequence.stop_reason == "length":
            assert ended is ParseTermination.MALFORMED, text
        else:  # stopped by the stop sequence (kept in the tokens) or by EOS
            assert ended.is_clean, text
        assert message["content"] == text.split("\n\nUser:")[0].replace("<|endoftext|>", "").strip()
