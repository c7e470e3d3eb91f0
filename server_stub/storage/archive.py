"""A directory as one uncompressed tar file: regular files only, named relative to the directory."""

from __future__ import annotations

import tarfile
from pathlib import Path


def write_tar(directory: Path, tar_path: Path) -> None:
    """Everything under `directory` except links and other special files (safetensors do not compress)."""
    with tarfile.open(tar_path, "w", format=tarfile.PAX_FORMAT) as tar:
        for path in sorted(directory.rglob("*")):
            if path.is_symlink() or not path.is_file():
                continue
            tar.add(path, arcname=path.relative_to(directory).as_posix(), recursive=False)
