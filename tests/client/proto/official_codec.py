"""Runs the official Tinker SDK's own protobuf converters, in a process where that SDK is importable.

The tests start it with the SDK version under test on `sys.path` (0.24.1 from the venv, 0.38.0 from
a `pip --target` directory), send every command at once on stdin as JSON `{key: command}`, and read
`{"version": ..., key: answer}` on stdout (one process per version: importing the SDK is slow).
Bytes travel as base64. Commands:
  encode_request  a request described in JSON -> the SDK's ForwardBackwardRequest bytes
  same_request    our bytes parsed by the SDK's schema, equal to the SDK's own message for the request?
  decode_output   ForwardBackwardOutput bytes -> what the SDK's decoder makes of them
  decode_sample   SampleResponse bytes -> what the SDK's decoder makes of them
  build_output    a ForwardBackwardOutput built with the SDK's schema classes (bfloat16, int32,
                  two records) -> its bytes and what the SDK's decoder makes of them
"""

from __future__ import annotations

import base64
import json
import sys
from typing import Any

import numpy as np
import tinker
from tinker import types
from tinker.proto import request_conv, response_conv
from tinker.proto import tinker_public_pb2 as pb


def _tensor(spec: dict[str, Any]) -> types.TensorData:
    return types.TensorData(
        data=spec["data"],
        dtype=spec["dtype"],
        shape=spec.get("shape"),
        sparse_crow_indices=spec.get("sparse_crow_indices"),
        sparse_col_indices=spec.get("sparse_col_indices"),
    )


def _request(spec: dict[str, Any]) -> Any:
    data = [
        types.Datum(
            model_input=types.ModelInput(chunks=[types.EncodedTextChunk(tokens=c) for c in datum["chunks"]]),
            loss_fn_inputs={key: _tensor(t) for key, t in datum["loss_fn_inputs"].items()},
        )
        for datum in spec["data"]
    ]
    fwd = types.ForwardBackwardInput(
        data=data, loss_fn=spec["loss_fn"], loss_fn_config=spec.get("loss_fn_config")
    )
    request = types.ForwardBackwardRequest(
        forward_backward_input=fwd, model_id=spec["model_id"], seq_id=spec["seq_id"]
    )
    message = request_conv.forward_backward_request_to_proto(request)
    message.forward_only = spec.get("forward_only", False)
    return message


def _tensor_json(tensor: Any) -> dict[str, Any]:
    return {
        "data": np.asarray(tensor.to_numpy()).reshape(-1).tolist(),
        "dtype": tensor.dtype,
        "shape": tensor.shape,
    }


def _output_json(output: Any) -> dict[str, Any]:
    return {
        "loss_fn_output_type": output.loss_fn_output_type,
        "loss_fn_outputs": [
            {k: _tensor_json(v) for k, v in datum.items()} for datum in output.loss_fn_outputs
        ],
        "metrics": output.metrics,
    }


def _sample_json(response: Any) -> dict[str, Any]:
    return {
        "sequences": [
            {"stop_reason": s.stop_reason, "tokens": list(s.tokens), "logprobs": s.logprobs}
            for s in response.sequences
        ],
        "prompt_logprobs": response.prompt_logprobs,
        "topk_prompt_logprobs": response.topk_prompt_logprobs,
        "prompt_cache_hit_tokens": response.prompt_cache_hit_tokens,
    }


def _built_output() -> bytes:
    message = pb.ForwardBackwardOutput(loss_fn_output_type="ArrayRecord", metrics={"loss:sum": 2.5})
    bf16 = np.array([1.0, -2.5, 0.15625, 3.0, -0.5], dtype=np.float32).view(np.uint32) >> 16
    first = message.loss_fn_outputs.add(type_tag="ArrayRecord", num_datums=2)
    first.fields["logprobs"].CopyFrom(
        pb.BatchedTensor(
            data=bf16.astype(np.uint16).tobytes(),
            offsets=np.array([0, 4, 10], dtype=np.int64).tobytes(),
            dtype=pb.DTYPE_BFLOAT16,
        )
    )
    first.fields["ids"].CopyFrom(
        pb.BatchedTensor(
            data=np.array([7, 8, 9, 10, 11, 12], dtype=np.int32).tobytes(),
            offsets=np.array([0, 8, 24], dtype=np.int64).tobytes(),
            dtype=pb.DTYPE_INT32,
            trailing_shape=[2],
        )
    )
    second = message.loss_fn_outputs.add(type_tag="ArrayRecord", num_datums=1)
    second.fields["logprobs"].CopyFrom(
        pb.BatchedTensor(
            data=np.array([-0.25, -0.75], dtype=np.float32).tobytes(),
            offsets=np.array([0, 8], dtype=np.int64).tobytes(),
            dtype=pb.DTYPE_FLOAT32,
        )
    )
    second.fields["ids"].CopyFrom(
        pb.BatchedTensor(
            data=np.array([1, 2], dtype=np.int64).tobytes(),
            offsets=np.array([0, 16], dtype=np.int64).tobytes(),
            dtype=pb.DTYPE_INT64,
            trailing_shape=[2],
        )
    )
    return message.SerializeToString()


def answer(command: dict[str, Any]) -> dict[str, Any]:
    kind = command["command"]
    if kind == "encode_request":
        return {"bytes": base64.b64encode(_request(command["request"]).SerializeToString()).decode()}
    if kind == "same_request":
        ours = pb.ForwardBackwardRequest.FromString(base64.b64decode(command["bytes"]))
        ours.DiscardUnknownFields()  # fields this SDK version does not know (0.24.1: loss_fn_config_v2)
        return {"same": ours == _request(command["request"])}
    if kind == "decode_output":
        raw = base64.b64decode(command["bytes"])
        return {"output": _output_json(response_conv.deserialize_forward_backward_output(raw))}
    if kind == "decode_sample":
        raw = base64.b64decode(command["bytes"])
        return {"sample": _sample_json(response_conv.deserialize_sample_response(raw))}
    if kind == "build_output":
        raw = _built_output()
        output = _output_json(response_conv.deserialize_forward_backward_output(raw))
        return {"bytes": base64.b64encode(raw).decode(), "output": output}
    raise SystemExit(f"unknown command {kind!r}")


def main() -> None:
    commands: dict[str, dict[str, Any]] = json.loads(sys.stdin.read())
    answers = {"version": tinker.__version__, **{key: answer(command) for key, command in commands.items()}}
    sys.stdout.write(json.dumps(answers, default=lambda value: np.asarray(value).tolist()))


if __name__ == "__main__":
    main()
