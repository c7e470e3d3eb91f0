"""Exports through the server: what transformers and peft load must compute the server's logprobs.

One server with an API key serves the built-in tiny model under its own name and the same model
saved as a Hugging Face directory under the alias "tiny" (so an adapter must name the directory,
not the alias). Its output layer is tied to the input embeddings and LoRA adapts it, which is
where a naive merge goes wrong.
"""

from __future__ import annotations

import io
import json
import os
import tarfile
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest

from cookbook import export as export_cli
from cookbook.client import ServiceClient, types
from cookbook.client.errors import AuthenticationError, NotFoundError
from cookbook.client.http import HttpServiceClient
from cookbook.client.local_server import LocalServer
from tests.client.real_helpers import PROBE, TEXTS, text_datum
from tests.official_sdk.cookbook_workspace import save_tiny_model

ALIAS = "tiny"
BUILTIN = "tiny-llama"
API_KEY = "tml-export-test"  # the official SDK refuses keys without this prefix
ADAM = types.AdamParams(learning_rate=2e-2)
TOLERANCE = 1e-4


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("tiny-hf")
    save_tiny_model(directory)
    return directory


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, tiny_dir: Path) -> Iterator[LocalServer]:
    storage = tmp_path_factory.mktemp("export-storage")
    with LocalServer(storage, api_key=API_KEY, extra_args=["--model", f"{ALIAS}={tiny_dir}"]) as running:
        yield running


@pytest.fixture(scope="module")
def service(server: LocalServer) -> Iterator[ServiceClient]:
    client = HttpServiceClient(server.url, API_KEY)
    yield client
    client.close()


def _train(service: ServiceClient, base_model: str, rank: int, name: str) -> tuple[str, str]:
    """(sampler path, state path) after a few steps that move every trained tensor."""
    tokenizer = service.get_tokenizer(base_model)
    tc = service.create_lora_training_client(base_model, rank=rank)
    for step in range(3):
        tc.forward_backward(
            [text_datum(tokenizer, TEXTS[step]), text_datum(tokenizer, PROBE)], "cross_entropy"
        )
        tc.optim_step(ADAM)
    return tc.save_weights_for_sampler(name).result().path, tc.save_state(name).result().path


@pytest.fixture(scope="module")
def lora_paths(service: ServiceClient) -> tuple[str, str]:
    return _train(service, ALIAS, rank=4, name="lora")


@pytest.fixture(scope="module")
def full_paths(service: ServiceClient) -> tuple[str, str]:
    return _train(service, ALIAS, rank=0, name="full")


def _probe_ids(service: ServiceClient) -> list[int]:
    return service.get_tokenizer(ALIAS).encode(PROBE + TEXTS[1])


def _server_logprobs(service: ServiceClient, sampler_path: str, ids: list[int]) -> np.ndarray:
    scores = service.create_sampling_client(model_path=sampler_path).compute_logprobs(
        types.ModelInput.from_ints(ids)
    )
    return np.array(scores.result()[1:], dtype=np.float64)


def _hf_logprobs(model: object, ids: list[int]) -> np.ndarray:
    import torch

    with torch.no_grad():
        logits = model(torch.tensor([ids])).logits[0].float()  # type: ignore[operator]
    logprobs = torch.log_softmax(logits, dim=-1)[:-1].gather(1, torch.tensor(ids[1:])[:, None])[:, 0]
    return logprobs.double().numpy()


def _load_merged(directory: Path) -> object:
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(str(directory), dtype="float32").eval()


def _load_adapter(directory: Path) -> object:
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    base_ref = json.loads((directory / "adapter_config.json").read_text())["base_model_name_or_path"]
    base = AutoModelForCausalLM.from_pretrained(base_ref, dtype="float32")
    return PeftModel.from_pretrained(base, str(directory)).eval()


def _assert_tokenizer_files(directory: Path, ids: list[int]) -> None:
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(directory))
    assert tokenizer.encode(PROBE + TEXTS[1], add_special_tokens=False) == ids


def test_lora_adapter_names_its_real_base_and_matches_the_server(
    service: ServiceClient, server: LocalServer, lora_paths: tuple[str, str], tiny_dir: Path, tmp_path: Path
) -> None:
    sampler_path, _ = lora_paths
    result = export_cli.export_checkpoint(
        sampler_path, tmp_path / "adapter", base_url=server.url, api_key=API_KEY
    )
    assert result.format == "peft"
    assert result.base_reference == str(tiny_dir.resolve())
    assert {"adapter_config.json", "adapter_model.safetensors", "tokenizer.json"} <= {
        p.name for p in result.directory.iterdir()
    }
    ids = _probe_ids(service)
    _assert_tokenizer_files(result.directory, ids)
    diff = np.abs(
        _hf_logprobs(_load_adapter(result.directory), ids) - _server_logprobs(service, sampler_path, ids)
    )
    assert diff.max() <= TOLERANCE


def test_lora_merged_unties_the_output_layer_and_matches_the_server(
    service: ServiceClient, server: LocalServer, lora_paths: tuple[str, str], tiny_dir: Path, tmp_path: Path
) -> None:
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    sampler_path, state_path = lora_paths
    ids = _probe_ids(service)
    expected = _server_logprobs(service, sampler_path, ids)
    for path, out in ((sampler_path, tmp_path / "from-sampler"), (state_path, tmp_path / "from-state")):
        result = export_cli.export_checkpoint(path, out, merged=True, base_url=server.url, api_key=API_KEY)
        assert result.format == "merged" and result.base_reference is None
        names = {p.name for p in out.iterdir()}
        assert {"config.json", "model.safetensors", "generation_config.json", "tokenizer.json"} <= names
        assert json.loads((out / "config.json").read_text())["tie_word_embeddings"] is False
        _assert_tokenizer_files(out, ids)
        assert np.abs(_hf_logprobs(_load_merged(out), ids) - expected).max() <= TOLERANCE

    # The tie is what the untie is for: a plain merge into the tied model moves the input embeddings too.
    naive_base = AutoModelForCausalLM.from_pretrained(str(tiny_dir), dtype="float32")
    adapter_dir = tmp_path / "adapter-for-naive"
    export_cli.export_checkpoint(sampler_path, adapter_dir, base_url=server.url, api_key=API_KEY)
    naive_merged = PeftModel.from_pretrained(naive_base, str(adapter_dir)).merge_and_unload().eval()
    assert np.abs(_hf_logprobs(naive_merged, ids) - expected).max() > 100 * TOLERANCE


def test_full_weight_run_always_exports_a_full_model(
    service: ServiceClient, server: LocalServer, full_paths: tuple[str, str], tmp_path: Path
) -> None:
    sampler_path, state_path = full_paths
    ids = _probe_ids(service)
    expected = _server_logprobs(service, sampler_path, ids)
    for path, out in ((sampler_path, tmp_path / "sampler"), (state_path, tmp_path / "state")):
        result = export_cli.export_checkpoint(path, out, base_url=server.url, api_key=API_KEY)
        assert result.format == "merged"
        _assert_tokenizer_files(out, ids)
        assert np.abs(_hf_logprobs(_load_merged(out), ids) - expected).max() <= TOLERANCE


def test_cli_exports_a_builtin_base_beside_its_adapter(
    service: ServiceClient,
    server: LocalServer,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    sampler_path, _ = _train(service, BUILTIN, rank=2, name="builtin")
    monkeypatch.setenv("COOKBOOK_BASE_URL", server.url)
    monkeypatch.setenv("COOKBOOK_API_KEY", API_KEY)
    out = tmp_path / "builtin-adapter"
    assert export_cli.main([sampler_path, "--out", str(out)]) == 0
    assert "peft export" in capsys.readouterr().out
    base_ref = json.loads((out / "adapter_config.json").read_text())["base_model_name_or_path"]
    assert base_ref == str((out / "base_model").resolve())
    ids = service.get_tokenizer(BUILTIN).encode(PROBE)
    diff = np.abs(_hf_logprobs(_load_adapter(out), ids) - _server_logprobs(service, sampler_path, ids))
    assert diff.max() <= TOLERANCE

    custom = tmp_path / "custom-ref"
    assert export_cli.main([sampler_path, "--out", str(custom), "--base-ref", "org/some-model"]) == 0
    assert (
        json.loads((custom / "adapter_config.json").read_text())["base_model_name_or_path"]
        == "org/some-model"
    )
    assert not (custom / "base_model").exists()  # a caller who names the base gets no copy of it


def test_official_sdk_downloads_the_tinker_archive(server: LocalServer, lora_paths: tuple[str, str]) -> None:
    import tinker

    sampler_path, _ = lora_paths
    parsed = types.ParsedCheckpointTinkerPath.from_tinker_path(sampler_path)
    rest = tinker.ServiceClient(base_url=server.url, api_key=API_KEY).create_rest_client()
    link = rest.get_checkpoint_archive_url(parsed.training_run_id, parsed.checkpoint_id).result()
    with urllib.request.urlopen(link.url, timeout=60) as response:  # a signed link needs no key
        content = response.read()
    with tarfile.open(fileobj=io.BytesIO(content)) as archive:
        names = set(archive.getnames())
    assert {"adapter_config.json", "adapter_model.safetensors", "checkpoint_complete"} <= names


def test_capabilities_list_the_archive_extension(service: ServiceClient) -> None:
    assert types.EXTENSION_CHECKPOINT_ARCHIVE in (service.get_server_capabilities().extensions or [])


def test_bad_inputs_get_clear_errors(
    server: LocalServer, lora_paths: tuple[str, str], full_paths: tuple[str, str], tmp_path: Path
) -> None:
    run_id = types.ParsedCheckpointTinkerPath.from_tinker_path(lora_paths[0]).training_run_id
    with pytest.raises(NotFoundError, match="not found"):
        export_cli.export_checkpoint(
            f"tinker://{run_id}/sampler_weights/nope", tmp_path / "a", base_url=server.url, api_key=API_KEY
        )
    with pytest.raises(AuthenticationError):
        export_cli.export_checkpoint(lora_paths[0], tmp_path / "b", base_url=server.url, api_key="tml-wrong")
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "x").write_text("")
    with pytest.raises(export_cli.ExportError, match="not an empty directory"):
        export_cli.export_checkpoint(lora_paths[0], tmp_path / "full", base_url=server.url, api_key=API_KEY)

    http = httpx.Client(base_url=server.url, headers={"X-API-Key": API_KEY})
    checkpoints = f"/api/v1/training_runs/{run_id}/checkpoints"

    def error(response: httpx.Response, status: int) -> str:
        assert response.status_code == status, response.text
        return str(response.json()["error"])

    assert "tinker://" in error(http.get("/api/v1/training_runs/%2E%2E/checkpoints/weights/x/archive"), 400)
    assert "format must be one of" in error(
        http.get(f"{checkpoints}/sampler_weights/lora/archive?format=zip"), 400
    )
    full_run = types.ParsedCheckpointTinkerPath.from_tinker_path(full_paths[0]).training_run_id
    for adapter_format in ("peft", "peft_without_base"):
        assert "'merged'" in error(
            http.get(
                f"/api/v1/training_runs/{full_run}/checkpoints/sampler_weights/full/archive"
                f"?format={adapter_format}"
            ),
            400,
        )
    link = http.get(f"{checkpoints}/sampler_weights/lora/archive").json()["url"]
    assert "signature" in error(httpx.get(link.replace("signature=", "signature=0")), 403)
    assert "signature" in error(httpx.get(link.replace("/checkpoint.tar", "/merged.tar")), 403)

    # A run directory planted as a symlink out of the storage dir is refused, never followed.
    outside = tmp_path / "outside"
    (outside / "sampler_weights" / "lora").mkdir(parents=True)
    os.symlink(outside, server.storage_dir / "runs" / "escape")
    assert "outside the storage directory" in error(
        http.get("/api/v1/training_runs/escape/checkpoints/sampler_weights/lora/archive"), 400
    )
    http.close()


def test_unsafe_archive_entries_are_refused(tmp_path: Path) -> None:
    archive = tmp_path / "evil.tar"
    with tarfile.open(archive, "w") as tar:
        info = tarfile.TarInfo("../escaped.txt")
        info.size = 1
        tar.addfile(info, io.BytesIO(b"x"))
    (tmp_path / "out").mkdir()
    with pytest.raises(export_cli.ExportError, match="refusing archive entry"):
        export_cli._safe_extract(archive, tmp_path / "out")
    assert not (tmp_path / "escaped.txt").exists()


@pytest.mark.parametrize("rank", [4, 0])
def test_a_reward_model_exports_its_head_and_transformers_reproduces_its_scores(
    service: ServiceClient, server: LocalServer, tmp_path: Path, rank: int
) -> None:
    import torch
    import transformers
    from safetensors.torch import load_file

    tokenizer = service.get_tokenizer(ALIAS)
    client = service.create_lora_training_client(ALIAS, rank=rank, reward_head=True)
    pair = [text_datum(tokenizer, TEXTS[0]), text_datum(tokenizer, TEXTS[1])]
    sequences = [types.Datum(model_input=d.model_input, loss_fn_inputs={}) for d in pair]
    for _ in range(3):
        client.forward_backward(sequences, "bradley_terry")
        client.optim_step(ADAM)
    scores = [
        o[types.REWARD_SCORE_OUTPUT].data[0]
        for o in client.forward(sequences, "reward_score").result().loss_fn_outputs
    ]
    state = client.save_state(f"rm{rank}").result().path

    result = export_cli.export_checkpoint(
        state, tmp_path / "rm", merged=True, base_url=server.url, api_key=API_KEY
    )
    assert result.reward_head == tmp_path / "rm" / export_cli.REWARD_HEAD_FILE
    head = load_file(str(result.reward_head))["reward_head.weight"]
    model = transformers.AutoModelForCausalLM.from_pretrained(result.directory)
    with torch.no_grad():
        exported = [
            float(
                model(torch.tensor([s.model_input.to_ints()]), output_hidden_states=True).hidden_states[-1][
                    0, -1
                ]
                @ head[0]
            )
            for s in sequences
        ]
    np.testing.assert_allclose(exported, scores, rtol=1e-4, atol=1e-5)
    if rank:
        adapter = export_cli.export_checkpoint(
            state, tmp_path / "adapter", base_url=server.url, api_key=API_KEY
        )
        assert adapter.format == "peft" and adapter.reward_head is not None
