"""asample_batch: a client's burst of sample requests in one exchange, answered by one future.

Our client sends the sample requests its caller makes together as one `asample_batch`
(`cookbook/client/sample_bursts.py` says why) when the capabilities list `EXTENSION_SAMPLE_BATCH`. The
route checks every request before it queues any, and queues them as one whole burst (the scheduler
need not wait for more of it); this collector answers the one future once the last of them has
finished, each request with its own response or error.
"""

from __future__ import annotations

import threading
from typing import Any

from cookbook.client import types
from server_stub.futures_store import Finisher, failure_of


class BatchCollector:
    """Gathers the outcomes of `count` sample requests and hands them on as one SampleBatchResponse."""

    def __init__(self, count: int, finish: Finisher):
        self._items: list[types.SampleBatchItem | None] = [None] * count
        self._left = count
        self._finish = finish
        self._lock = threading.Lock()  # finishers run on the sampling thread, failures on others

    def finisher(self, index: int) -> Finisher:
        """What request `index` of the batch is finished with."""

        def finish(result: Any, exc: BaseException | None) -> None:
            item = _item(result, exc)
            with self._lock:
                if self._items[index] is not None:
                    return
                self._items[index] = item
                self._left -= 1
                done = self._left == 0
            if done:
                self._finish(
                    types.SampleBatchResponse(results=[i for i in self._items if i is not None]), None
                )

        return finish


def _item(result: Any, exc: BaseException | None) -> types.SampleBatchItem:
    """One request's outcome as the batch reports it: a failure reads as retrieve_future would say it."""
    if exc is None:
        if isinstance(result, types.SampleResponse):
            return types.SampleBatchItem(response=result)
        exc = TypeError(f"engine returned {type(result).__name__}, not a SampleResponse")
    failure = failure_of(exc)
    return types.SampleBatchItem(error=failure.error, category=failure.category)
