"""An in-memory fake of the server's HTTP surface, for testing the client side of the wire.

It speaks the same routes and bodies as the real server but computes nothing real: results are
simple functions of the request (e.g. logprobs = -0.01 * token id), which is all the client
tests need to check ordering, polling, retries and error mapping. Real-server behaviour is
covered by the integration tests.

With `protobuf=True` it also speaks the binary wire as the real server does: its capabilities
list protobuf, it reads protobuf forward_backward bodies (recorded as their JSON equivalent), and
answers protobuf results to polls whose Accept asks for them.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import random
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from typing import Any, ClassVar

import httpx
import zstandard

from cookbook.client import proto, types

FAKE_TOKENIZER_JSON = json.dumps(
    {
        "version": "1.0",
        "truncation": None,
        "padding": None,
        "added_tokens": [
            {
                "id": 3,
                "content": "<eos>",
                "single_word": False,
                "lstrip": False,
                "rstrip": False,
                "normalized": False,
                "special": True,
            }
        ],
        "normalizer": None,
        "pre_tokenizer": {"type": "Whitespace"},
        "post_processor": None,
        "decoder": None,
        "model": {
            "type": "WordLevel",
            "vocab": {"hello": 0, "world": 1, "[UNK]": 2, "<eos>": 3},
            "unk_token": "[UNK]",
        },
    }
)


def fake_logprob(token: int) -> float:
    return -0.01 * (token + 1)


@dataclass
class Recorded:
    method: str
    path: str
    body: Any
    headers: httpx.Headers


@dataclass
class FakeServer:
    """Routes -> canned behaviour. Faults are injected per path, in order."""

    try_again: int = 0  # retrieve_future answers try_again this many times per request first
    submit_jitter_s: float = 0.0  # random delay before a submission is recorded
    requests: list[Recorded] = field(default_factory=list)
    faults: dict[str, list[int | Exception]] = field(default_factory=lambda: defaultdict(list))
    failures: dict[str, dict[str, Any]] = field(default_factory=dict)  # path -> failed-future body
    polls: Counter[str] = field(default_factory=Counter)
    results: dict[str, Any] = field(default_factory=dict)
    release_when_pending: int = 0  # hold sample results until this many asample are pending
    max_polls_per_request: int = 100_000
    answer_delay_s: float = 0.0  # every answer is held this long (a slow server)
    protobuf: bool = False  # speaks the binary wire too
    sample_batch: bool = False  # lists EXTENSION_SAMPLE_BATCH and answers /asample_batch
    failing_batch_items: set[int] = field(default_factory=set)  # these items of a batch fail
    client_config: dict[str, Any] = field(default_factory=lambda: {"sample_max_concurrent_requests": 2000})

    def __post_init__(self) -> None:
        self._ids = itertools.count(1)
        self._rng = random.Random(0)
        self.pending_samples: set[str] = set()
        self.samples_submitted = 0
        self.max_pending_samples = 0
        self.attempts: Counter[str] = Counter()
        self.hold_submissions: asyncio.Event | None = None  # set from the client's loop
        self.answers_held = 0  # requests being held by answer_delay_s right now
        self.result_types: dict[str, type[types.WireModel]] = {}
        self.protobuf_answers = 0

    def transport(self) -> httpx.MockTransport:
        return httpx.MockTransport(self.handle)

    def bodies(self, path: str) -> list[Any]:
        return [r.body for r in self.requests if r.path == path]

    # -- dispatch -----------------------------------------------------------------------------

    async def handle(self, request: httpx.Request) -> httpx.Response:
        if self.answer_delay_s:
            self.answers_held += 1
            try:
                await asyncio.sleep(self.answer_delay_s)
            finally:
                self.answers_held -= 1
        path = request.url.path.removeprefix("/api/v1")
        body = self._body(request)
        self.attempts[path] += 1
        if self.faults[path]:
            fault = self.faults[path].pop(0)
            if isinstance(fault, Exception):
                raise fault
            error = types.ErrorBody(error=f"injected {fault}", field="injected.field")
            return httpx.Response(fault, json=error.model_dump(mode="json"))
        if path in self._futures and self.submit_jitter_s:
            await asyncio.sleep(self._rng.random() * self.submit_jitter_s)
        if path in self._futures and self.hold_submissions is not None:
            await self.hold_submissions.wait()
        self.requests.append(Recorded(request.method, path, body, request.headers))
        if path == "/retrieve_future":
            return await self._retrieve(body["request_id"], request.headers.get("accept", ""))
        if path == "/forward_backward" and "forward_input" in body:  # a protobuf forward_only call
            return self._accept("/forward", body)
        if path in self._futures:
            return self._accept(path, body)
        handler = self._direct.get(path)
        if handler is not None:
            return httpx.Response(200, json=handler(self, body))
        if path.startswith("/samplers/"):
            return httpx.Response(200, json={"sampler_id": path.rsplit("/", 1)[1], "base_model": "fake-base"})
        return httpx.Response(404, json={"error": f"no route {path}", "category": "user"})

    def _body(self, request: httpx.Request) -> Any:
        """The request body as JSON values; a protobuf forward_backward as its JSON equivalent."""
        if not request.content:
            return None
        if request.headers.get("content-type") != proto.PROTOBUF_CONTENT_TYPE:
            return json.loads(request.content)
        raw = request.content
        if request.headers.get("content-encoding") == proto.ZSTD:
            raw = zstandard.ZstdDecompressor().decompress(raw)
        return proto.forward_backward_request_from_proto(raw).model_dump(mode="json", exclude_none=True)

    def _accept(self, path: str, body: Any) -> httpx.Response:
        request_id = f"req-{next(self._ids)}"
        self.result_types[request_id] = self._result_types.get(path, types.WireModel)
        if path in self.failures:
            self.results[request_id] = self.failures[path]
        else:
            self.results[request_id] = self._futures[path](self, body)
        if path == "/asample":
            self.pending_samples.add(request_id)
            self.samples_submitted += 1
            self.max_pending_samples = max(self.max_pending_samples, len(self.pending_samples))
        return httpx.Response(200, json={"request_id": request_id, "model_id": body.get("model_id")})

    async def _retrieve(self, request_id: str, accept: str) -> httpx.Response:
        if request_id not in self.results:
            return httpx.Response(404, json={"error": f"unknown request {request_id}", "category": "user"})
        self.polls[request_id] += 1
        held = request_id in self.pending_samples and self.samples_submitted < self.release_when_pending
        if self.polls[request_id] > self.max_polls_per_request:
            return httpx.Response(200, json={"error": "fake server gave up", "category": "server"})
        if held or self.polls[request_id] <= self.try_again:
            await asyncio.sleep(0.001)
            return httpx.Response(
                200, json={"type": "try_again", "request_id": request_id, "queue_state": "active"}
            )
        self.pending_samples.discard(request_id)
        result = self.results[request_id]
        codec = proto.RESULT_CODECS.get(self.result_types[request_id])
        if self.protobuf and codec and proto.PROTOBUF_CONTENT_TYPE in accept and "error" not in result:
            self.protobuf_answers += 1
            content = codec.encode(self.result_types[request_id].model_validate(result))
            return httpx.Response(200, content=content, headers={"Content-Type": proto.PROTOBUF_CONTENT_TYPE})
        return httpx.Response(200, json=result)

    # -- long operations (answer a request id, result later) ----------------------------------

    def _create_model(self, body: Any) -> Any:
        return {"model_id": f"model-{body['model_seq_id']}", "type": "create_model"}

    def _fwd(self, body: Any, key: str) -> Any:
        data = body[key]["data"]
        outputs = [
            {
                "logprobs": {
                    "data": [fake_logprob(t) for t in d["loss_fn_inputs"]["target_tokens"]["data"]],
                    "dtype": "float32",
                }
            }
            for d in data
        ]
        return {
            "loss_fn_output_type": "ArrayRecord",
            "loss_fn_outputs": outputs,
            "metrics": {"loss:sum": 1.5, "seq:unique": float(body["seq_id"])},
        }

    def _optim(self, body: Any) -> Any:
        return {"metrics": {"seq": float(body["seq_id"]), "lr": body["adam_params"]["learning_rate"]}}

    def _save(self, body: Any) -> Any:
        return {"path": f"tinker://{body['model_id']}/weights/{body['path']}"}

    def _save_sampler(self, body: Any) -> Any:
        if body.get("path"):
            return {"path": f"tinker://{body['model_id']}/sampler_weights/{body['path']}"}
        return {"sampling_session_id": f"snap-{body['model_id']}-{body['seq_id']}"}

    def _load(self, body: Any) -> Any:
        return {"path": body["path"], "model_id": body["model_id"]}

    def _sample(self, body: Any) -> Any:
        prompt = [t for c in body["prompt"]["chunks"] for t in c["tokens"]]
        n = body["sampling_params"].get("max_tokens") or 2
        seqs = [
            {
                "stop_reason": "length",
                "tokens": [(prompt[-1] + i + k) % 4 for k in range(n)],
                "logprobs": [-0.5] * n,
            }
            for i in range(body["num_samples"])
        ]
        answer: dict[str, Any] = {"sequences": seqs, "type": "sample", "seq_id_seen": body["seq_id"]}
        if body.get("prompt_logprobs"):
            answer["prompt_logprobs"] = [None] + [fake_logprob(t) for t in prompt[1:]]
        return answer

    def _sample_batch(self, body: Any) -> Any:
        results = [
            {"error": f"item {i} failed", "category": "user"}
            if i in self.failing_batch_items
            else {"response": self._sample(request)}
            for i, request in enumerate(body["requests"])
        ]
        return {"results": results, "type": "sample_batch"}

    _futures: ClassVar[dict[str, Any]] = {
        "/create_model": _create_model,
        "/forward": lambda self, b: self._fwd(b, "forward_input"),
        "/forward_backward": lambda self, b: self._fwd(b, "forward_backward_input"),
        "/optim_step": _optim,
        "/save_weights": _save,
        "/save_weights_for_sampler": _save_sampler,
        "/load_weights": _load,
        "/asample": _sample,
        "/asample_batch": _sample_batch,
    }

    _result_types: ClassVar[dict[str, type[types.WireModel]]] = {
        "/forward": types.ForwardBackwardOutput,
        "/forward_backward": types.ForwardBackwardOutput,
        "/asample": types.SampleResponse,
    }

    # -- direct answers -----------------------------------------------------------------------

    _direct: ClassVar[dict[str, Any]] = {
        "/client/config": lambda self, b: self.client_config,
        "/create_session": lambda self, b: {"session_id": "sess-1", "type": "create_session"},
        "/session_heartbeat": lambda self, b: {"type": "session_heartbeat"},
        "/get_server_capabilities": lambda self, b: {
            "supported_models": [{"model_name": "fake-base", "max_context_length": 64}],
            **({"wire_formats": ["json", "protobuf"]} if self.protobuf else {}),
            **({"extensions": [types.EXTENSION_SAMPLE_BATCH]} if self.sample_batch else {}),
        },
        "/get_info": lambda self, b: {
            "model_id": b["model_id"],
            "model_data": {"model_name": "fake-base"},
            "is_lora": False,
            "lora_rank": 0,
        },
        "/weights_info": lambda self, b: {"base_model": "fake-base", "is_lora": True, "lora_rank": 8},
        "/create_sampling_session": lambda self, b: {
            "sampling_session_id": f"sampler-{b['sampling_session_seq_id']}",
            "type": "create_sampling_session",
        },
        "/get_tokenizer": lambda self, b: {
            "model_name": b["model_name"],
            "tokenizer_json": FAKE_TOKENIZER_JSON,
            "eos_token": "<eos>",
        },
        "/healthz": lambda self, b: {"status": "ok"},
    }
