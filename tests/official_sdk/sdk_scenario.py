"""One training-and-sampling scenario, run unchanged by the official `tinker` SDK and by our own client.

Run as a script by an official SDK's interpreter (`python sdk_scenario.py --base-url ... --out
report.json`), it imports only `tinker` and the standard library, so it runs in a virtual
environment that holds nothing of this project. Imported by the tests, `run_scenario` drives our
own client through the same calls, so the two reports can be compared number by number.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from types import ModuleType
from typing import Any

BASE_MODEL = "tiny-llama"
LORA_RANK = 8
LORA_SEED = 0
SAMPLE_SEED = 123
LEARNING_RATE = 1e-2
STATE_NAME = "after-step-1"
# Two sequences of different lengths; the second has a loss mask and a fractional weight.
SEQUENCES = [
    ([5, 17, 42, 99, 7, 250, 3, 64, 128, 11, 200, 31], [1.0] * 11),
    ([9, 8, 77, 6, 5, 140, 33, 2], [0.0, 0.0, 1.0, 1.0, 1.0, 0.5, 1.0]),
]
PROMPT = [5, 17, 42, 99]
SCORED = [5, 17, 42, 99, 7]  # compute_logprobs input


def ready(client_or_future: Any) -> Any:
    """tinker 0.38 hands back a future of the new client; 0.24 and our client hand back the client."""
    if hasattr(client_or_future, "result"):
        return client_or_future.result()
    return client_or_future


def make_data(types: ModuleType) -> list[Any]:
    return [
        types.Datum(
            model_input=types.ModelInput.from_ints(tokens[:-1]),
            loss_fn_inputs={"target_tokens": tokens[1:], "weights": weights},
        )
        for tokens, weights in SEQUENCES
    ]


def outcome(output: Any) -> dict[str, Any]:
    """The numbers a ForwardBackwardOutput carries: the summed loss and each datum's target logprobs."""
    return {
        "loss": output.metrics["loss:sum"],
        "logprobs": [record["logprobs"].tolist() for record in output.loss_fn_outputs],
    }


def one_step_then_forward(training: Any, types: ModuleType, data: list[Any]) -> dict[str, Any]:
    """forward_backward, optim_step, forward: the step's outcome and the outcome after it."""
    step = training.forward_backward(data, "cross_entropy")
    optim = training.optim_step(types.AdamParams(learning_rate=LEARNING_RATE))
    after = training.forward(data, "cross_entropy")
    stepped = outcome(step.result())
    optim.result()
    return {"step": stepped, "after": outcome(after.result())}


def run_scenario(service: Any, types: ModuleType) -> dict[str, Any]:
    """Train two pipelined steps, save and resume (with and without Adam state), sample and score."""
    report: dict[str, Any] = {
        "models": [model.model_name for model in service.get_server_capabilities().supported_models]
    }
    data = make_data(types)
    training = ready(
        service.create_lora_training_client(base_model=BASE_MODEL, rank=LORA_RANK, seed=LORA_SEED)
    )
    report["model_id"] = training.model_id
    report["forward"] = outcome(training.forward(data, "cross_entropy").result())

    # Pipelined: every call below is submitted before the first result is read.
    adam = types.AdamParams(learning_rate=LEARNING_RATE)
    submitted = [
        training.forward_backward(data, "cross_entropy"),
        training.optim_step(adam),
        training.save_state(STATE_NAME),
        training.forward_backward(data, "cross_entropy"),
        training.optim_step(adam),
        training.forward(data, "cross_entropy"),
    ]
    first, _, saved, second, _, after = (future.result() for future in submitted)
    report["steps"] = [outcome(first), outcome(second)]
    report["after_steps"] = outcome(after)
    report["state_path"] = saved.path

    report["resumed_with_optimizer"] = one_step_then_forward(
        ready(service.create_training_client_from_state_with_optimizer(saved.path)), types, data
    )
    report["resumed_without_optimizer"] = one_step_then_forward(
        ready(service.create_training_client_from_state(saved.path)), types, data
    )

    sampler = ready(training.save_weights_and_get_sampling_client())
    params = types.SamplingParams(max_tokens=6, temperature=1.0, seed=SAMPLE_SEED)
    prompt = types.ModelInput.from_ints(PROMPT)
    report["samples"] = [
        [
            {"tokens": list(s.tokens), "logprobs": list(s.logprobs), "stop_reason": str(s.stop_reason)}
            for s in sampler.sample(prompt=prompt, num_samples=3, sampling_params=params).result().sequences
        ]
        for _ in range(2)
    ]
    report["prompt_logprobs"] = sampler.compute_logprobs(types.ModelInput.from_ints(SCORED)).result()
    return report


def close_official(service: Any) -> dict[str, Any]:
    """End the official client's session: 0.38 finishes it on the server, 0.24 has only a local close."""
    if hasattr(service, "close"):
        # The SDK keeps its session id private; the test needs it to ask the server about the session.
        session_id = service._session_holder.get_session_id()
        service.close("success").result()
        return {"how": "finished", "session_id": session_id}
    service.holder.close()
    return {"how": "closed locally", "session_id": service.holder.get_session_id()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--base-url", required=True)
    parser.add_argument("--api-key", required=True)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()

    import tinker

    service = tinker.ServiceClient(base_url=args.base_url, api_key=args.api_key)
    report = run_scenario(service, tinker.types)
    report["sdk_version"] = tinker.__version__
    report["training_run_id"] = (
        service.create_rest_client().get_training_run(report["model_id"]).result().training_run_id
    )
    report["close"] = close_official(service)
    args.out.write_text(json.dumps(report))


if __name__ == "__main__":
    main()
