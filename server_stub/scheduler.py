"""The request scheduler: the threads that run every heavy engine call, and in what order.

Three kinds of work wait here: the compute thread serves the first and the last in turn so none
starves, the sampling thread the second:

* training lanes, one per model: calls run strictly in `seq_id` order (create_model is seq 0,
  then the client's 1, 2, 3, ...). A missing seq id means "wait", which is what makes client-side
  pipelining correct; a seq id rejected at POST time is marked consumed so it never blocks. A
  retried POST with a seq id already seen gets the same request id back. Unload is a barrier
  that runs once every seq id seen so far has run. Lanes take turns round-robin.
* sampling: when its thread is free it takes every waiting sample request (up to a row cap) and
  runs them as one `engine.sample(jobs)` batch, so any number of clients share forward passes.
  Before a batch that is not full it waits while requests keep arriving: until none has come for
  a quiet gap (`sample_batch_window` seconds, or `sample_batch_wait_fraction` of the previous
  batch's run time if that is longer), and at most `sample_batch_max_wait` after the oldest
  arrived. A burst of concurrent requests (an RL step sends one per rollout) reaches the server
  over tens to hundreds of milliseconds; a fixed window counted from the first arrival splits
  such bursts, and the requests left out wait for a whole generation. Waiting for a quiet gap keeps a burst
  together and costs a lone request only the gap; scaling the gap with the run time covers the
  longer gaps of a loaded machine, where generations are slow too, at a bounded relative cost.
  Requests that came while a batch ran count the gap (and the cap) from its end, so the clients it
  answers rejoin them: starting them at once would split loops that sample one request at a time
  into two smaller batches that alternate from then on. A whole burst (`submit_samples(...,
  whole=True)`: an `asample_batch`, all that its client asked for at once) does not wait for a gap
  after itself, only for one after lone requests and after the last batch: nothing more of its
  client's is coming, and on an idle server it starts at once.
* other heavy calls (create_sampler, delete_checkpoint, ...) in arrival order.

Sampling batches run on a thread of their own, so the compute thread never waits for a whole
generation. The two share the engine through a handoff (`_holder`): a call on either thread holds
it, and a sampling batch that wants it goes before the compute thread's next call. A lean decode
(`compute_turns.decode_beside`: the Llama-family step that reads only its own weight copies and
cache) hands the engine back for its whole decoding loop, so training and other calls run at the
same time as it, on the cores its one decoding thread leaves (the compute thread's intra-op
threads drop by one meanwhile, and it rests `BESIDE_REST` of each call's time before the next, so
the decode keeps its share of the cores beside the web thread and the clients): neither kind waits
for the other's whole work, and each keeps most of its solo speed (bench/README.md, fairness).

A decode that keeps the engine (a model the lean step does not cover, or a distributed server,
whose ranks decode in lockstep) instead offers a turn after each decode step (`compute_turns`),
and waiting training calls run then, on the sampling thread, as long as training has not had more
of the compute than sampling since the batch began (a credit earned by sampling time at the rate
`TRAINING_SHARE` sets, capped at `TURN_CREDIT_CAP` either way, that training calls spend): with
both busy training gets about that share, and a training call waits about one decode step, not a
whole generation. A turn, once begun, runs waiting training calls until training owes
`TURN_OVERDRAW`, since each switch costs about a decode step. Training spends credit only on
compute that sampling wanted: all of a turn, but between batches only the part after the waiting
sample requests were ready to start, so time sampling would have left idle (its requests still
arriving) is free.

Submitting never blocks on compute: the web thread only takes a short lock. Results leave through
each task's `finish(result, exception)` callback, called on the thread that ran the call.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import itertools
import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, TypeVar

from server_stub.compute_time import ComputeClock
from server_stub.compute_turns import TurnSetup, beside_for, turns_for
from server_stub.engine import ConflictError, Engine, NotFoundError, SampleJob, UserError
from server_stub.errors import QueueFullError
from server_stub.futures_store import Finisher
from server_stub.intra_op_threads import intra_op_threads, threads_beside_a_decode

logger = logging.getLogger("server_stub.scheduler")

T = TypeVar("T")
_SKIP = object()  # marks a seq id consumed by a request that was rejected at POST time
_KEEP_SEEN = 4096  # how many finished seq ids per model still answer idempotent retries
TURN_CREDIT_CAP = 0.25  # seconds of sampling a burst of training calls may catch up on at once
# Seconds training may run past its credit within one turn: switching costs about a decode step, so
# a step's calls (forward_backward, then a short optim_step) share one turn instead of taking two.
TURN_OVERDRAW = 0.1
# Training's share of the compute while both kinds wait; lower, sampling keeps more of its solo rate
# and a training step waits longer. Under half, since training also has the time sampling leaves
# idle between batches for free (bench/README.md, fairness).
TRAINING_SHARE = 0.45
# Beside a decode, the compute thread rests this fraction of each call's time before its next one: the
# decode's thread, the web thread and the clients share the cores with it (bench/README.md, fairness).
BESIDE_REST = 0.5


@dataclass
class Task:
    """One engine call and where its outcome goes."""

    run: Callable[[], Any]
    finish: Finisher
    label: str = ""


@dataclass
class _SampleTask:
    job: SampleJob
    finish: Finisher
    arrived: float

    @property
    def rows(self) -> int:
        return self.job.request.num_samples


@dataclass
class _Seen:
    digest: bytes
    request_id: str | None
    error: Exception | None = None


@dataclass
class _Lane:
    """One training model's ordered stream of calls."""

    model_id: str
    base_model: str | None
    next_seq: int
    pending: dict[int, Any] = field(default_factory=dict)  # seq -> Task or _SKIP
    seen: dict[int, _Seen] = field(default_factory=dict)
    closing: Task | None = None
    closed: bool = False


def _call(fn: Callable[[], Any]) -> tuple[Any, BaseException | None]:
    try:
        return fn(), None
    except Exception as exc:
        return None, exc


def _finish(finish: Finisher, result: Any, exc: BaseException | None) -> None:
    try:
        finish(result, exc)
    except Exception:
        logger.exception("delivering a result failed")


class Scheduler:
    """Orders, batches and runs engine calls on one compute thread."""

    def __init__(
        self,
        engine: Engine,
        *,
        sample_batch_rows: int = 256,
        sample_batch_window: float = 0.0,
        sample_batch_max_wait: float | None = None,
        sample_batch_wait_fraction: float = 0.0,
        max_pending_samples: int = 10_000,
        max_seq_ahead: int = 100_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        """`sample_batch_max_wait` None: ten quiet windows."""
        self._engine = engine
        self._batch_rows = sample_batch_rows
        self._batch_window = sample_batch_window
        self._batch_max_wait = (
            10 * sample_batch_window if sample_batch_max_wait is None else sample_batch_max_wait
        )
        self._batch_wait_fraction = sample_batch_wait_fraction
        self._last_lone_arrival = float("-inf")  # the last sample request that came alone, not in a burst
        self._last_batch_end = float("-inf")
        self._last_sample_run = 0.0  # seconds the previous engine.sample call took
        self._max_pending_samples = max_pending_samples
        self._max_seq_ahead = max_seq_ahead
        self._clock = clock
        self._cond = threading.Condition()  # both threads wait on it: always notify_all
        self._lanes: dict[str, _Lane] = {}
        self._lane_cursor = 0
        self._samples: deque[_SampleTask] = deque()
        self._sample_rows = 0
        self._misc: deque[Task] = deque()
        self._kind_turn = 0
        self._threads: list[threading.Thread] = []
        self._stopping = False
        self._holder: Literal["compute", "sampling"] | None = None  # the thread whose call has the engine
        self._sampler_waits = False  # the sampling thread waits for the engine: compute starts nothing
        self._next_batch: list[_SampleTask] | None = None  # handed to the sampling thread, not yet started
        self._sampling_busy = False  # a batch is handed over or running
        self._decoding_beside = False  # a lean decode runs without the engine: calls run beside it
        self._rest_until = float("-inf")  # beside a decode, the compute thread starts nothing before this
        self._turn_credit = 0.0  # sampling seconds not yet matched by training time (negative: training owes)
        self._last_turn = 0.0
        self._turns_seconds = 0.0  # spent on training turns within the current sampling batch
        self._in_turn = False  # training calls are running in a sampling batch's turn
        # Sizes (jobs per engine.sample call) of recent batches: observability and tests.
        self.sample_batch_sizes: deque[int] = deque(maxlen=1000)
        self.compute_time = ComputeClock()  # busy seconds per kind of work, over both threads

    # -- lifecycle ---------------------------------------------------------------------------

    def start(self) -> None:
        with self._cond:
            if self._threads:
                return
            self._stopping = False
            self._threads = [
                threading.Thread(target=self._serve, name="server_stub-compute", daemon=True),
                threading.Thread(target=self._serve_samples, name="server_stub-sampling", daemon=True),
            ]
            for thread in self._threads:
                thread.start()

    def stop(self, timeout: float = 30.0) -> None:
        """Stop after the calls in progress; queued work is abandoned."""
        with self._cond:
            self._stopping = True
            self._cond.notify_all()
            threads, self._threads = self._threads, []
        for thread in threads:
            thread.join(timeout)

    # -- training lanes ----------------------------------------------------------------------

    def open_model(self, model_id: str, base_model: str, create: Task) -> None:
        """A new model's lane, whose first call (seq 0) creates it; seq 1.. wait behind it."""
        with self._cond:
            if model_id in self._lanes:
                raise ConflictError(f"model {model_id!r} exists already", field="model_id")
            self._lanes[model_id] = _Lane(model_id, base_model, next_seq=0, pending={0: create})
            self._cond.notify_all()

    def lane_base_model(self, model_id: str) -> str | None:
        """The base model of a model this scheduler created (possibly still being created)."""
        with self._cond:
            lane = self._lanes.get(model_id)
            return lane.base_model if lane is not None and not lane.closed else None

    def find_ordered(self, model_id: str, seq_id: int, digest: bytes) -> str | None:
        """The request id of an identical earlier POST of this seq id, or None if it is new.

        Raises the stored error when that earlier POST was rejected, ConflictError when the seq id
        was used by a different body or is long past, and UserError when it is absurdly far ahead.
        """
        with self._cond:
            lane = self._lanes.get(model_id)
            if lane is None:
                return None
            seen = lane.seen.get(seq_id)
            if seen is not None:
                if seen.digest != digest:
                    raise ConflictError(
                        f"seq_id {seq_id} of model {model_id!r} was already used by a different request",
                        field="seq_id",
                    )
                if seen.error is not None:
                    raise seen.error
                return seen.request_id
            self._check_new_seq(lane, seq_id)
            return None

    def submit_ordered(self, model_id: str, seq_id: int, digest: bytes, request_id: str, task: Task) -> None:
        """Queue a training call; it runs once every lower seq id of its model has run."""
        with self._cond:
            lane = self._lane_for(model_id)
            self._check_new_seq(lane, seq_id)
            lane.seen[seq_id] = _Seen(digest, request_id)
            lane.pending[seq_id] = task
            self._cond.notify_all()

    def reject_ordered(self, model_id: str, seq_id: int, digest: bytes, error: Exception) -> None:
        """Mark a seq id consumed by a request refused at POST time, so later calls do not wait.

        A retry of the same body gets `error` again."""
        with self._cond:
            lane = self._lane_for(model_id)
            if seq_id in lane.seen or seq_id < lane.next_seq or lane.closed:
                return
            if seq_id > lane.next_seq + self._max_seq_ahead:
                return
            lane.seen[seq_id] = _Seen(digest, None, error)
            lane.pending[seq_id] = _SKIP
            self._cond.notify_all()

    def close_model(self, model_id: str, task: Task) -> None:
        """Queue the model's unload after every call seen so far; later calls are refused."""
        with self._cond:
            lane = self._lane_for(model_id)
            if lane.closed:
                raise NotFoundError(f"model {model_id!r} is already being unloaded", field="model_id")
            lane.closed = True
            lane.closing = task
            self._cond.notify_all()

    def _lane_for(self, model_id: str) -> _Lane:
        lane = self._lanes.get(model_id)
        if lane is None:  # a model the engine knows but this scheduler did not create
            lane = self._lanes[model_id] = _Lane(model_id, None, next_seq=1)
        return lane

    def _check_new_seq(self, lane: _Lane, seq_id: int) -> None:
        if lane.closed:
            raise NotFoundError(f"model {lane.model_id!r} is being unloaded", field="model_id")
        if seq_id < lane.next_seq:
            raise ConflictError(
                f"seq_id {seq_id} of model {lane.model_id!r} is already past "
                f"(the next one to run is {lane.next_seq})",
                field="seq_id",
            )
        if seq_id > lane.next_seq + self._max_seq_ahead:
            raise UserError(
                f"seq_id {seq_id} is more than {self._max_seq_ahead} ahead of the next one "
                f"to run ({lane.next_seq}) for model {lane.model_id!r}",
                field="seq_id",
            )

    # -- sampling and other work -------------------------------------------------------------

    def submit_sample(self, job: SampleJob, finish: Finisher) -> None:
        """Queue a sample request; it joins the next batch the compute thread runs."""
        self.submit_samples([(job, finish)])

    def submit_samples(self, jobs: Sequence[tuple[SampleJob, Finisher]], whole: bool = False) -> None:
        """Queue several sample requests at once: all of them, or none when the queue has no room.
        `whole`: they are a whole burst, so the batch need not wait for more (the module's docstring)."""
        with self._cond:
            if len(self._samples) + len(jobs) > self._max_pending_samples:
                raise QueueFullError(
                    f"{len(self._samples)} sample requests are already waiting, no room for {len(jobs)} more; "
                    "retry later"
                )
            now = self._clock()
            for job, finish in jobs:
                self._samples.append(_SampleTask(job, finish, now))
                self._sample_rows += job.request.num_samples
            if not whole:
                self._last_lone_arrival = now
            self._cond.notify_all()

    def submit(self, task: Task) -> None:
        """Queue any other heavy call, in arrival order."""
        with self._cond:
            self._misc.append(task)
            self._cond.notify_all()

    def call(self, fn: Callable[[], T], label: str = "") -> concurrent.futures.Future[T]:
        """Run `fn` on the compute thread; the future holds its result or exception."""
        future: concurrent.futures.Future[T] = concurrent.futures.Future()

        def finish(result: Any, exc: BaseException | None) -> None:
            if exc is None:
                future.set_result(result)
            else:
                future.set_exception(exc)

        self.submit(Task(fn, finish, label))
        return future

    # -- the compute thread ------------------------------------------------------------------

    def _serve(self) -> None:
        threads_beside = threads_beside_a_decode()
        while True:
            with self._cond:
                while True:
                    if self._stopping:
                        return
                    work, wait = None, None
                    rest = self._rest_until - time.monotonic() if self._decoding_beside else 0.0
                    if rest > 0:
                        wait = rest
                    elif self._holder is None and not self._sampler_waits:
                        work, wait = self._pick(self._clock())
                    if work is not None:
                        break
                    self._cond.wait(timeout=wait)
                self._holder = "compute"
                beside = self._decoding_beside
            started = time.monotonic()
            try:
                # Beside a decode, leave its core to it.
                with intra_op_threads(threads_beside if beside else None):
                    work()
            except BaseException:  # the compute thread must survive anything
                logger.exception("compute thread: unexpected failure")
            finally:
                ended = time.monotonic()
                self._rest_until = ended + BESIDE_REST * (ended - started)
                self._hand_back()

    def _hand_back(self) -> None:
        with self._cond:
            self._holder = None
            self._cond.notify_all()

    def _pick(self, now: float) -> tuple[Callable[[], None] | None, float | None]:
        """The next unit of work (kinds take turns), or how long to wait before looking again. A sampling
        batch is handed to the sampling thread here, with the engine: the compute thread then waits."""
        wait: float | None = None
        pickers = (self._pick_training, self._pick_samples, self._pick_misc)
        first = 1 if self._turn_credit < 0 else self._kind_turn  # training owes sampling: samples first
        for offset in range(len(pickers)):
            kind = (first + offset) % len(pickers)
            work, hint = pickers[kind](now)
            if work is not None or self._holder is not None:
                self._kind_turn = (kind + 1) % len(pickers)
                return work, None
            if hint is not None:
                wait = hint if wait is None else min(wait, hint)
        return None, wait

    def _pick_training(
        self, now: float, within_sampling: bool = False
    ) -> tuple[Callable[[], None] | None, None]:
        names = list(self._lanes)
        for step in range(len(names)):
            index = (self._lane_cursor + step) % len(names)
            work = self._take_from_lane(self._lanes[names[index]], within_sampling)
            if work is not None:
                self._lane_cursor = index + 1
                return work, None
        return None, None

    def _take_from_lane(self, lane: _Lane, within_sampling: bool = False) -> Callable[[], None] | None:
        """The lane's next call; `within_sampling`: only calls that leave models in place (no create,
        no unload), since a sampling batch is paused around them."""
        while lane.pending.get(lane.next_seq) is _SKIP:
            del lane.pending[lane.next_seq]
            lane.next_seq += 1
        if within_sampling and (lane.next_seq == 0 or lane.next_seq not in lane.pending):
            return None
        task = lane.pending.pop(lane.next_seq, None)
        if task is not None:
            seq = lane.next_seq
            lane.next_seq += 1
            if len(lane.seen) > 2 * _KEEP_SEEN:
                for old in [s for s in lane.seen if s < seq - _KEEP_SEEN]:
                    del lane.seen[old]
            return lambda: self._run_ordered(lane, seq, task)
        if lane.closing is not None and not lane.pending:
            closing, lane.closing = lane.closing, None
            return lambda: self._run_close(lane, closing)
        return None

    def _run_ordered(self, lane: _Lane, seq: int, task: Task) -> None:
        started, beside = self._clock(), self._decoding_beside
        with self.compute_time.measure("training"):
            result, exc = _call(task.run)
        if not beside:  # beside a decode, training takes no compute that sampling is waiting for
            self._charge_training(started, self._clock())
        _finish(task.finish, result, exc)
        if seq == 0 and exc is not None:
            self._drop_lane(lane, exc)

    def _charge_training(self, started: float, ended: float) -> None:
        """Training pays for the compute it took while sampling wanted it: all of a turn within a batch;
        between batches, only the part after the waiting sample requests were ready to start."""
        if self._in_turn:
            contended = ended - started
        else:
            with self._cond:
                ready_at = self._samples_ready_at()
            contended = 0.0 if ready_at is None else max(0.0, ended - max(started, ready_at))
        self._turn_credit = max(self._turn_credit - contended, -TURN_CREDIT_CAP)

    def _run_close(self, lane: _Lane, task: Task) -> None:
        with self.compute_time.measure("training"):
            result, exc = _call(task.run)
        with self._cond:
            if exc is None:
                self._lanes.pop(lane.model_id, None)
            else:
                lane.closed = False
        _finish(task.finish, result, exc)

    def _drop_lane(self, lane: _Lane, cause: BaseException) -> None:
        """A model whose creation failed: its queued calls fail too instead of waiting forever."""
        with self._cond:
            self._lanes.pop(lane.model_id, None)
            orphans = [t for t in lane.pending.values() if isinstance(t, Task)]
            if lane.closing is not None:
                orphans.append(lane.closing)
            lane.pending.clear()
        error = NotFoundError(f"model {lane.model_id!r} could not be created: {cause}", field="model_id")
        for task in orphans:
            _finish(task.finish, None, error)

    def _samples_ready_at(self) -> float | None:
        """When the waiting sample requests may start a batch (None: none wait): at once if they fill
        one, else once no lone request has come for a quiet gap, and at most the longest wait after the
        oldest."""
        if not self._samples:
            return None
        if self._sample_rows >= self._batch_rows:
            return float("-inf")
        quiet = max(self._batch_window, self._batch_wait_fraction * self._last_sample_run)
        # Requests that came during the last batch wait for the clients it answered to come back.
        quiet_end = max(self._last_lone_arrival, self._last_batch_end) + quiet
        wait_end = max(self._samples[0].arrived, self._last_batch_end) + self._batch_max_wait
        return min(quiet_end, wait_end)

    # -- the sampling thread -----------------------------------------------------------------

    def _serve_samples(self) -> None:
        while True:
            with self._cond:
                while self._next_batch is None:
                    if self._stopping:
                        return
                    self._cond.wait()
                batch, self._next_batch = self._next_batch, None
            try:
                self._run_samples(batch)
            except BaseException:  # the sampling thread must survive anything
                logger.exception("sampling thread: unexpected failure")
            finally:
                with self._cond:
                    self._holder, self._sampling_busy = None, False
                    self._cond.notify_all()

    def _take_engine(self) -> None:
        """The sampling thread takes the engine back after the compute thread's call in progress (call under
        the condition; the compute thread starts nothing new meanwhile, and stops if the scheduler does)."""
        self._sampler_waits = True
        while self._holder is not None and not self._stopping:
            self._cond.wait()
        self._sampler_waits = False
        if not self._stopping:
            self._holder = "sampling"
        self._cond.notify_all()

    def _pick_samples(self, now: float) -> tuple[None, float | None]:
        """Hand the next sampling batch to the sampling thread (with the engine), or say how long to wait
        before one may start (None: none waits, or a batch is still running)."""
        if self._sampling_busy:
            return None, None
        ready_at = self._samples_ready_at()
        if ready_at is None:
            return None, None
        if now < ready_at:  # requests are still arriving: let them join
            return None, ready_at - now
        batch = [self._samples.popleft()]
        rows = batch[0].rows
        while self._samples and rows + self._samples[0].rows <= self._batch_rows:
            rows += self._samples[0].rows
            batch.append(self._samples.popleft())
        self._sample_rows -= rows
        self.sample_batch_sizes.append(len(batch))
        if logger.isEnabledFor(logging.DEBUG):
            gaps = [b.arrived - a.arrived for a, b in itertools.pairwise(batch)]
            logger.debug(
                "sampling batch: %d requests, %d rows, %d still waiting; arrivals spread over %.1f ms "
                "(largest gap %.1f ms), the first waited %.1f ms",
                len(batch),
                rows,
                len(self._samples),
                1e3 * (batch[-1].arrived - batch[0].arrived),
                1e3 * max(gaps, default=0.0),
                1e3 * (now - batch[0].arrived),
            )
        self._next_batch, self._sampling_busy, self._holder = batch, True, "sampling"
        self._cond.notify_all()
        return None, None

    @contextlib.contextmanager
    def _decode_beside(self) -> Iterator[bool]:
        """A lean decode's loop: the engine is handed back for it, and taken again after."""
        with self._cond:
            self._holder, self._decoding_beside = None, True
            self._cond.notify_all()
        try:
            yield True
        finally:
            with self._cond:
                self._decoding_beside = False
                self._take_engine()

    def _earn_credit(self, sampling_seconds: float) -> None:
        """Sampling time earns training its share of the compute (capped)."""
        earned = sampling_seconds * TRAINING_SHARE / (1 - TRAINING_SHARE)
        self._turn_credit = min(self._turn_credit + earned, TURN_CREDIT_CAP)

    def _between_sampling_steps(self, setup: TurnSetup) -> bool:
        """A turn offered by a sampling batch: run waiting training calls its credit covers (in `setup`)."""
        if self._decoding_beside:  # they run on the compute thread meanwhile, not here
            return False
        now = self._clock()
        self._earn_credit(now - self._last_turn)
        ran = False
        with contextlib.ExitStack() as turn:
            while self._turn_credit > (-TURN_OVERDRAW if ran else 0.0):
                with self._cond:
                    work = None if self._stopping else self._pick_training(now, within_sampling=True)[0]
                if work is None:
                    break
                started = self._clock()
                if not ran:
                    turn.enter_context(setup())
                self._in_turn = True
                try:
                    work()  # an ordered call: it charges its own time to the credit
                finally:
                    self._in_turn = False
                now = self._clock()
                self._turns_seconds += now - started
                ran = True
        self._last_turn = self._clock()
        return ran

    def _run_samples(self, batch: list[_SampleTask]) -> None:
        started = self._clock()
        self._last_turn, self._turns_seconds = started, 0.0

        def run() -> Any:
            with turns_for(self._between_sampling_steps), beside_for(self._decode_beside):
                return self._engine.sample([t.job for t in batch])

        with self.compute_time.measure("sampling"):
            results, exc = _call(run)
        ended = self._clock()
        with self._cond:
            self._last_batch_end = ended
        self._last_sample_run = ended - started - self._turns_seconds  # the batch's own time
        self._earn_credit(ended - self._last_turn)
        if exc is None and (not isinstance(results, list) or len(results) != len(batch)):
            exc = RuntimeError(f"engine.sample returned {type(results).__name__} for {len(batch)} jobs")
        for i, task in enumerate(batch):
            if exc is not None:
                _finish(task.finish, None, exc)
            elif isinstance(results[i], Exception):
                _finish(task.finish, None, results[i])
            else:
                _finish(task.finish, results[i], None)

    def _pick_misc(self, now: float) -> tuple[Callable[[], None] | None, None]:
        if not self._misc:
            return None, None
        task = self._misc.popleft()

        def run() -> None:
            with self.compute_time.measure("other"):
                result, exc = _call(task.run)
            _finish(task.finish, result, exc)

        return run, None
