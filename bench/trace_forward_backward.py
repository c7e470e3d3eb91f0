"""Which product files and functions one `forward_backward` crosses, from the recipe's call to the loss.

Runs the real server in this process (uvicorn in a thread, the built-in tiny model) and a client
against it over loopback HTTP, then profiles every thread while one
`tc.forward_backward(data, "cross_entropy").result()` runs. A call is the start of a function
(or coroutine, or lambda) defined in a file under `cookbook/` or `server_stub/`; a coroutine
resumed after an await is not a new call, and comprehensions are not calls. Two windows are
counted: from the recipe's call to the first call into the server's loss module (the path to the
loss), and to the moment `.result()` returns (the round trip). The measured call runs a few times
and the quietest run is reported, so a stray heartbeat does not count.

    python -m bench.trace_forward_backward            # counts and the files of the path to the loss
    python -m bench.trace_forward_backward --calls    # ... and every call, in order, with its thread
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from types import CodeType, FrameType
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
PRODUCT_DIRS = tuple(str(ROOT / name) + "/" for name in ("cookbook", "server_stub"))
LOSS_MODULE = str(ROOT / "server_stub" / "training" / "losses.py")
_RESUMABLE = 0x20 | 0x80 | 0x200  # CO_GENERATOR | CO_COROUTINE | CO_ASYNC_GENERATOR
# Expressions that Python 3.11 runs as frames of their own; a reader does not see them as calls.
_COMPREHENSIONS = frozenset({"<listcomp>", "<dictcomp>", "<setcomp>", "<genexpr>"})


@dataclass(frozen=True)
class Call:
    thread: str
    path: str  # relative to the repository root
    function: str


class CallRecorder:
    """A profile function for every thread that records product-code calls while armed."""

    def __init__(self) -> None:
        self.armed = False
        self.calls: list[Call] = []
        self._product: dict[CodeType, str | None] = {}
        self._started_frames: set[int] = set()
        self._frames_alive: list[FrameType] = []  # keeps ids unique while armed

    def __call__(self, frame: FrameType, event: str, arg: Any) -> None:
        if not self.armed or event != "call":
            return
        code = frame.f_code
        path = self._product.get(code, "")
        if path == "":
            path = self._product[code] = self._relative(code.co_filename)
        if path is None or code.co_name in _COMPREHENSIONS:
            return
        if code.co_flags & _RESUMABLE:
            if id(frame) in self._started_frames:
                return
            self._started_frames.add(id(frame))
            self._frames_alive.append(frame)
        self.calls.append(Call(threading.current_thread().name, path, code.co_qualname))

    @staticmethod
    def _relative(filename: str) -> str | None:
        if not filename.startswith(PRODUCT_DIRS):
            return None
        return str(Path(filename).relative_to(ROOT))

    def record(self) -> None:
        self.calls, self._started_frames, self._frames_alive = [], set(), []
        self.armed = True

    def stop(self) -> list[Call]:
        self.armed = False
        self._frames_alive = []
        return self.calls


def start_server(storage: Path) -> tuple[str, Any, threading.Thread]:
    """The real app (tiny model, CPU) served by uvicorn on a free loopback port, in a thread."""
    import uvicorn

    from cookbook.client.local_server import free_port
    from server_stub.app import create_app
    from server_stub.build import build_engine
    from server_stub.config import ServerConfig

    config = ServerConfig(port=free_port(), storage_dir=storage, device="cpu", log_level="warning")
    app = create_app(build_engine(config), config)
    server = uvicorn.Server(
        uvicorn.Config(app, host=config.host, port=config.port, log_level="warning", access_log=False)
    )
    thread = threading.Thread(target=server.run, name="server-loop", daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.05)
    return f"http://{config.host}:{config.port}", server, thread


def measure(recorder: CallRecorder, base_url: str, repeats: int) -> list[Call]:
    """The quietest of `repeats` recorded forward_backward calls (the recipe's view: one line)."""
    from cookbook.client import connect, types

    service = connect(base_url)
    tc = service.create_lora_training_client("tiny-llama", rank=8)
    tokens = list(range(1, 33))
    data = [
        types.Datum(
            model_input=types.ModelInput.from_ints(tokens[:-1]),
            loss_fn_inputs={"target_tokens": tokens[1:], "weights": [1.0] * 31},
        )
    ]
    for _ in range(2):  # warm up: imports, caches, connections
        tc.forward_backward(data, "cross_entropy").result()
    runs = []
    for _ in range(repeats):
        recorder.record()
        tc.forward_backward(data, "cross_entropy").result()
        runs.append(recorder.stop())
        time.sleep(0.2)
    service.close()
    return min(runs, key=lambda calls: (len({c.path for c in calls}), len(calls)))


def to_loss(calls: Sequence[Call]) -> list[Call]:
    """The calls up to and including the first call into the loss module."""
    for index, call in enumerate(calls):
        if str(ROOT / call.path) == LOSS_MODULE:
            return list(calls[: index + 1])
    raise RuntimeError("the loss module was never called: is the traced call a forward_backward?")


def report(calls: Sequence[Call], show_calls: bool) -> str:
    path = to_loss(calls)
    per_file = Counter(c.path for c in path)
    server_files = sum(name.startswith("server_stub/") for name in per_file)
    lines = [
        f"path to the loss: {len(per_file)} files ({len(per_file) - server_files} under cookbook/, "
        f"{server_files} under server_stub/), {len(path)} calls "
        f"({len({(c.path, c.function) for c in path})} distinct functions)",
        f"round trip (to .result()): {len({c.path for c in calls})} files, {len(calls)} calls",
        "",
        "files of the path to the loss (calls in each):",
    ]
    lines += [f"  {n:4d}  {name}" for name, n in sorted(per_file.items())]
    if show_calls:
        lines += ["", "every call of the round trip, in order:"]
        lines += [f"  {c.thread:24.24s} {c.path}:{c.function}" for c in calls]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--calls", action="store_true", help="also list every call, in order")
    parser.add_argument("--repeats", type=int, default=5, help="measured calls; the quietest is reported")
    args = parser.parse_args(argv)
    recorder = CallRecorder()
    threading.setprofile(recorder)  # threads started from now on: the server's, the client's
    sys.setprofile(recorder)
    with tempfile.TemporaryDirectory(prefix="trace-fb-") as storage:
        base_url, server, thread = start_server(Path(storage))
        calls = measure(recorder, base_url, args.repeats)
        server.should_exit = True
        thread.join(timeout=10)
    sys.setprofile(None)
    threading.setprofile(None)  # type: ignore[arg-type]
    print(report(calls, args.calls))
    return 0


if __name__ == "__main__":
    sys.exit(main())
