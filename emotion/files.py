"""Atomic writes: a crash leaves the old file or folder or none, never a half-written one."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

T = TypeVar("T")


def write_folder_atomically(folder: str | Path, fill: Callable[[Path], T]) -> T:
    """Call `fill(tmp)` on an empty temp folder beside `folder`, then swap it into place.

    The temp folder sits in the same parent so the final rename stays on one filesystem.
    Returns what `fill` returns.
    """
    folder = Path(folder)
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{folder.name}-", dir=folder.parent))
    try:
        result = fill(tmp)
        if folder.exists():
            old = folder.with_name(f".{folder.name}-old")
            shutil.rmtree(old, ignore_errors=True)
            os.replace(folder, old)
            os.replace(tmp, folder)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, folder)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return result


def write_file_atomically(path: str | Path, data: bytes, *, fsync: bool = False) -> None:
    """Write `data` to a temp name beside `path`, then rename it into place. With `fsync`, the
    bytes reach the disk before the rename (for files a restart must find whole)."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "wb") as f:
        f.write(data)
        if fsync:
            f.flush()
            os.fsync(f.fileno())
    os.replace(tmp, path)
