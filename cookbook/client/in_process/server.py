"""The server's compute side in this process: its engine and scheduler, shared by every in-process client.

`connect("inprocess://")` gives a service client whose calls go straight to the objects
`python -m server_stub` serves: the same engine, built from the same `ServerConfig`, behind the same
scheduler (so a training model's calls run in seq_id order and concurrent sample requests are batched
exactly as on the server), without HTTP, JSON or polling. Requests are checked by the server's own
validation before they are queued, and a refusal raises the typed error the HTTP client raises for the
server's 4xx answer; a failed operation resolves its future with `RequestFailedError`, as over HTTP.

A URL's query holds server flags without their dashes (`inprocess://?storage=/tmp/ckpts&sample-batch-rows=64`);
the environment supplies the rest, as for the server's command line. One server is kept per distinct set
of flags and stopped when the interpreter exits.
"""

from __future__ import annotations

import asyncio
import atexit
import concurrent.futures
import contextlib
import threading
import urllib.parse
from collections.abc import Callable, Hashable, Iterator
from typing import Any, TypeVar

from cookbook.client import errors, types
from cookbook.client.connection import IN_PROCESS_PREFIX
from cookbook.client.http.tokenizers import tokenizer_from_response
from cookbook.tokenizer_utils import Tokenizer
from server_stub.build import build_engine, build_scheduler
from server_stub.compute_time import ComputeClock
from server_stub.config import ConfigError, ServerConfig, config_from_args
from server_stub.engine import SampleJob, UserError
from server_stub.futures_store import Finisher, failure_of
from server_stub.request_limits import check_sample_tokens
from server_stub.scheduler import Task
from server_stub.sessions import SessionCounter
from server_stub.validation import check_sample_request

SCHEME = IN_PROCESS_PREFIX.removesuffix("://")
T = TypeVar("T")


@contextlib.contextmanager
def client_errors() -> Iterator[None]:
    """A request the server's checks refuse raises the client's typed error for that status (400, 404, ...)."""
    try:
        yield
    except UserError as exc:
        message = exc.message
        if exc.field and exc.field not in message:
            message += f" (field: {exc.field})"
        raise errors.status_error(exc.status_code, message, field=exc.field) from None


def _failed(exc: BaseException) -> errors.RequestFailedError:
    failed = failure_of(exc)
    return errors.RequestFailedError(failed.error, category=failed.category)


def finisher(future: concurrent.futures.Future[Any]) -> Finisher:
    """Where the compute thread puts an accepted request's outcome: a failure reads as over HTTP."""

    def finish(result: Any, exc: BaseException | None) -> None:
        if exc is None:
            future.set_result(result)
        else:
            future.set_exception(_failed(exc))

    return finish


def refused(exc: BaseException) -> concurrent.futures.Future[Any]:
    """The future of a call refused before it was queued (the HTTP client's futures fail the same way)."""
    future: concurrent.futures.Future[Any] = concurrent.futures.Future()
    future.set_exception(exc)
    return future


class InProcessServer:
    """An engine and its scheduler (compute thread running), with the bookkeeping the web layer keeps."""

    def __init__(self, config: ServerConfig) -> None:
        self.config = config
        self.engine = build_engine(config)
        self.scheduler = build_scheduler(self.engine, config)
        self._reward_heads: set[str] = set()
        self._samplers = SessionCounter("max_samplers_per_session", config.max_samplers_per_session)
        self._tokenizers: dict[str, Tokenizer] = {}
        self.scheduler.start()

    @property
    def compute_time(self) -> ComputeClock:
        """The compute and sampling threads' busy seconds per kind (what GET /compute_time answers over HTTP)."""
        return self.scheduler.compute_time

    def close(self) -> None:
        self.scheduler.stop(timeout=10)
        close = getattr(self.engine, "close", None)  # a multi-rank engine stops its ranks
        if close is not None:
            close()

    # -- models --------------------------------------------------------------------------------

    def has_reward_head(self, model_id: str) -> bool:
        return model_id in self._reward_heads

    def open_model(
        self, model_id: str, base_model: str, reward_head: bool, create: Callable[[], Any]
    ) -> concurrent.futures.Future[Any]:
        """A new model's lane, whose first call creates it (the client's calls wait behind it)."""
        future: concurrent.futures.Future[Any] = concurrent.futures.Future()
        if reward_head:
            self._reward_heads.add(model_id)
        self.scheduler.open_model(model_id, base_model, Task(create, finisher(future), "create_model"))
        return future

    def submit_ordered(
        self, model_id: str, seq_id: int, run: Callable[[], Any], label: str
    ) -> concurrent.futures.Future[Any]:
        """A training call, run once every lower seq id of its model has run."""
        future: concurrent.futures.Future[Any] = concurrent.futures.Future()
        request_id = f"{model_id}:{seq_id}"
        self.scheduler.submit_ordered(model_id, seq_id, b"", request_id, Task(run, finisher(future), label))
        return future

    async def call(self, fn: Callable[[], T], label: str) -> T:
        """Run other heavy work (creating a sampler, ...) on the compute thread; a refusal raises as a 4xx."""
        with client_errors():
            return await asyncio.wrap_future(self.scheduler.call(fn, label))

    # -- sampling ------------------------------------------------------------------------------

    def sample(
        self, requests: list[types.SampleRequest]
    ) -> list[concurrent.futures.Future[types.SampleResponse]]:
        """Check sample requests as the server does and queue those that pass for the next sampling
        batch, several as one whole burst, as asample_batch does; a refused one's future holds its error."""
        futures: list[concurrent.futures.Future[types.SampleResponse]] = []
        jobs = []
        for request in requests:
            sampler_id = request.sampling_session_id or ""
            try:
                with client_errors():
                    limits = self.engine.model_limits(self.engine.sampler_base_model(sampler_id))
                    check_sample_request(request, limits, self.config.max_num_samples)
                    check_sample_tokens(request, limits, self.config)
            except errors.APIStatusError as exc:
                futures.append(refused(exc))
                continue
            future: concurrent.futures.Future[types.SampleResponse] = concurrent.futures.Future()
            jobs.append((SampleJob(sampler_id, request), finisher(future)))
            futures.append(future)
        if jobs:
            with client_errors():
                self.scheduler.submit_samples(jobs, whole=len(requests) > 1)
        return futures

    def remember_sampler(self, session: Hashable, sampler_id: str) -> None:
        """Count a session's sampler; past the server's limit the oldest are released (an RL loop makes one per step)."""
        for oldest in self._samplers.add(session, sampler_id):
            self.scheduler.submit(
                Task(lambda old=oldest: self.engine.release_sampler(old), _ignore, "release_sampler")
            )

    # -- metadata ------------------------------------------------------------------------------

    async def tokenizer(self, base_model: str) -> Tokenizer:
        cached = self._tokenizers.get(base_model)
        if cached is None:
            with client_errors():
                answer = await asyncio.to_thread(self.engine.tokenizer, base_model)
            cached = self._tokenizers[base_model] = tokenizer_from_response(answer)
        return cached


def _ignore(_: Any, exc: BaseException | None) -> None:
    """Housekeeping whose outcome nobody waits for."""


def server_args(url: str) -> tuple[str, ...]:
    """The server flags an `inprocess://?flag=value&...` URL asks for."""
    parts = urllib.parse.urlsplit(url.strip())
    if parts.scheme != SCHEME or parts.netloc or parts.path.strip("/") or parts.fragment:
        raise ValueError(f"an in-process URL is {SCHEME}:// with server flags as its query, got {url!r}")
    args: list[str] = []
    for key, value in urllib.parse.parse_qsl(parts.query, keep_blank_values=True):
        args += ["--" + key.lstrip("-").replace("_", "-"), value]
    return tuple(args)


_servers: dict[tuple[str, ...], InProcessServer] = {}
_servers_lock = threading.Lock()


def shared_in_process_server(url: str = IN_PROCESS_PREFIX) -> InProcessServer:
    """This process's server for the flags `url` names, built on first use and reused afterwards."""
    args = server_args(url)
    with _servers_lock:
        server = _servers.get(args)
        if server is None:
            try:
                config = config_from_args(args)
            except (ConfigError, SystemExit) as exc:  # argparse exits on a bad flag
                raise ValueError(f"{url!r}: the server refuses these settings ({exc})") from None
            server = _servers[args] = InProcessServer(config)
        return server


@atexit.register
def _close_all() -> None:
    with _servers_lock:
        servers = list(_servers.values())
        _servers.clear()
    for server in servers:
        server.close()
