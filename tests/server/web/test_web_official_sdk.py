"""The official tinker==0.24.1 SDK, unmodified, against a real server process (JSON wire compatibility)."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from .web_server_process import running_server

tinker = pytest.importorskip("tinker")


def test_official_sdk_trains_and_samples(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TINKER_TELEMETRY", "0")
    types = tinker.types
    # The server requires the key the SDK sends, so this also checks auth on a real process.
    with running_server(tmp_path / "storage", api_key="tml-local") as base_url:
        assert httpx.get(f"{base_url}/api/v1/healthz").status_code == 401
        assert httpx.get(f"{base_url}/api/v1/healthz", headers={"X-API-Key": "tml-other"}).status_code == 401
        service = tinker.ServiceClient(base_url=base_url, api_key="tml-local")
        models = service.get_server_capabilities().supported_models
        assert "tiny-llama" in [m.model_name for m in models]

        training = service.create_lora_training_client(base_model="tiny-llama", rank=8, seed=0)
        assert training.model_id.startswith("run-")
        tokens = [5, 17, 42, 99, 7, 250, 3, 64, 128, 11, 200, 31]
        datum = types.Datum(
            model_input=types.ModelInput.from_ints(tokens[:-1]),
            loss_fn_inputs={"target_tokens": tokens[1:], "weights": [1.0] * (len(tokens) - 1)},
        )
        # pipelined: step 2's forward_backward is submitted before step 1's results are read
        first = training.forward_backward([datum], "cross_entropy")
        step = training.optim_step(types.AdamParams(learning_rate=5e-2))
        second = training.forward_backward([datum], "cross_entropy")
        before, after = first.result(), second.result()
        assert step.result() is not None
        assert len(before.loss_fn_outputs[0]["logprobs"].tolist()) == len(tokens) - 1
        assert after.metrics["loss:sum"] < before.metrics["loss:sum"]

        sampler = training.save_weights_and_get_sampling_client()
        params = types.SamplingParams(max_tokens=6, temperature=1.0, seed=123)
        response = sampler.sample(
            prompt=types.ModelInput.from_ints(tokens[:4]), num_samples=3, sampling_params=params
        ).result()
        assert len(response.sequences) == 3
        for sequence in response.sequences:
            assert 1 <= len(sequence.tokens) <= 6 and sequence.stop_reason in ("stop", "length")
            assert len(sequence.logprobs) == len(sequence.tokens)
        again = sampler.sample(
            prompt=types.ModelInput.from_ints(tokens[:4]), num_samples=3, sampling_params=params
        ).result()
        assert [s.tokens for s in again.sequences] == [s.tokens for s in response.sequences]  # seeded
        prompt_logprobs = sampler.compute_logprobs(types.ModelInput.from_ints(tokens[:5])).result()
        assert prompt_logprobs[0] is None and len(prompt_logprobs) == 5

        saved = training.save_state("sdk-state").result()
        assert saved.path == f"tinker://{training.model_id}/weights/sdk-state"
        run = service.create_rest_client().get_training_run(training.model_id).result()
        assert run.training_run_id == training.model_id
