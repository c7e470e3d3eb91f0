"""FuturesStore: long-poll waits, cross-thread completion, retention and memory bounds."""

from __future__ import annotations

import asyncio
import threading

import pytest

from cookbook.client import types
from server_stub.engine import NotFoundError
from server_stub.futures_store import Failed, FuturesStore, Succeeded, UnknownRequestError, outcome_of


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def make_store(clock: Clock, **limits: float) -> FuturesStore:
    settings = {
        "grace_seconds": 10.0,
        "ttl_seconds": 100.0,
        "max_entries": 100,
        "max_bytes": 1 << 20,
        **limits,
    }
    return FuturesStore(clock=clock, sweep_interval=0.0, **settings)  # type: ignore[arg-type]


def test_wait_times_out_then_sees_a_result_finished_on_another_thread() -> None:
    async def scenario() -> None:
        store = make_store(Clock())
        store.attach(asyncio.get_running_loop())
        request_id = store.open("run-1")
        assert await store.wait(request_id, 0.01) is None
        finish = store.finisher(request_id)
        worker = threading.Thread(target=finish, args=(types.OptimStepResponse(metrics={"a": 1.0}), None))
        waiter = asyncio.create_task(store.wait(request_id, 30))
        worker.start()
        outcome = await waiter
        worker.join()
        assert outcome == Succeeded(b'{"metrics":{"a":1.0}}')
        assert store.pending_count() == 0

    asyncio.run(scenario())


def test_results_are_kept_for_a_grace_period_after_fetching() -> None:
    async def scenario() -> None:
        clock = Clock()
        store = make_store(clock)
        request_id = store.open()
        store.complete(request_id, Failed("boom", types.RequestErrorCategory.User))
        assert await store.wait(request_id, 0) == Failed("boom", types.RequestErrorCategory.User)
        clock.now += 9
        store.sweep()
        assert await store.wait(request_id, 0) is not None  # a re-poll within the grace period
        clock.now += 2
        store.sweep()
        with pytest.raises(UnknownRequestError) as excinfo:
            await store.wait(request_id, 0)
        assert excinfo.value.expired and "no longer kept" in str(excinfo.value)
        with pytest.raises(UnknownRequestError) as unknown:
            await store.wait("req-never", 0)
        assert not unknown.value.expired

    asyncio.run(scenario())


def test_unfetched_results_expire_after_the_ttl_and_pending_ones_never() -> None:
    clock = Clock()
    store = make_store(clock)
    done, pending = store.open(), store.open()
    store.complete(done, Succeeded(b"{}"))
    clock.now += 99
    store.sweep()
    assert done in store
    clock.now += 1000
    store.sweep()
    assert done not in store and pending in store


def test_caps_drop_fetched_results_first_then_the_oldest_down_to_the_low_water_mark() -> None:
    async def scenario() -> None:
        store = make_store(Clock(), max_entries=10)
        ids = [store.open() for _ in range(13)]
        for request_id in ids[:10]:
            store.complete(request_id, Succeeded(b"x"))
        await store.wait(ids[5], 0)  # fetched: the first to go
        await store.wait(ids[7], 0)
        assert all(i in store for i in ids[:10])  # at the cap, not over it
        store.complete(ids[10], Succeeded(b"x"))  # over: shed to 9 (LOW_WATER), fetched ones first
        assert [i for i in ids if i not in store] == [ids[5], ids[7]]
        store.complete(ids[11], Succeeded(b"x"))  # back at 10: the headroom absorbs it
        assert len([i for i in ids if i not in store]) == 2
        store.complete(ids[12], Succeeded(b"x"))  # over again, nothing fetched left: the oldest go
        assert [i for i in ids if i not in store] == [ids[0], ids[1], ids[5], ids[7]]

    asyncio.run(scenario())


def test_byte_cap_bounds_memory() -> None:
    store = make_store(Clock(), max_bytes=250)
    ids = [store.open() for _ in range(3)]
    for request_id in ids:
        store.complete(request_id, Succeeded(b"x" * 100))
    assert [i in store for i in ids] == [False, True, True]


def test_discard_forgets_a_request_that_was_never_queued() -> None:
    store = make_store(Clock())
    request_id = store.open()
    store.discard(request_id)
    assert request_id not in store and len(store) == 0


def test_outcomes_carry_category_and_field() -> None:
    user = outcome_of(None, NotFoundError("no such thing", field="path"))
    assert user == Failed("path: no such thing", types.RequestErrorCategory.User)
    assert outcome_of(None, NotFoundError("path: already named", field="path")).error == "path: already named"
    server = outcome_of(None, ValueError("bad shape"))
    assert server == Failed("ValueError: bad shape", types.RequestErrorCategory.Server)
    assert outcome_of("not a wire type", None).category == types.RequestErrorCategory.Server
    body = Failed("x", types.RequestErrorCategory.User).body()
    assert types.RequestFailedResponse.model_validate_json(body).category == "user"
