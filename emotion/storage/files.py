"""Files a crash cannot leave half-written.

Atomic writes: a crash leaves the old file or folder or none, never a half-written one.

The journal: an append-only JSONL file, one JSON object a line, each append fsynced. A crash can
cut at most the line being appended; the next open drops that torn line (with a warning) and keeps
every whole one. Extraction (the face pool's manifest and done list) and labelling (the labels
log) keep their state in journals.
"""

from __future__ import annotations

import io
import json
import logging
import math
import os
import shutil
import tempfile
import uuid
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, TypeVar

import numpy as np

from emotion.errors import EmotionLensError

try:  # POSIX only; on Windows an exclusive journal is simply not locked.
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None

T = TypeVar("T")
log = logging.getLogger(__name__)


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
    """Write `data` to a temp file beside `path`, then rename it into place. The temp file's name
    is its writer's own (`.NAME.<random>.tmp`), so two threads writing one path never share it;
    it is removed if the write fails. With `fsync`, the bytes reach the disk before the rename
    (for files a restart must find whole)."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:12]}.tmp")
    try:
        with open(tmp, "xb") as f:
            f.write(data)
            if fsync:
                f.flush()
                os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def rounded_for_json(value: Any, digits: int = 4) -> Any:
    """`value` with every float rounded to `digits`, through dicts, lists and tuples; nan (a
    figure with no value, such as the share of an all-zero map) becomes None, since NaN is not
    JSON."""
    if isinstance(value, float | np.floating):
        return None if math.isnan(value) else round(float(value), digits)
    if isinstance(value, dict):
        return {k: rounded_for_json(v, digits) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [rounded_for_json(v, digits) for v in value]
    return value


def pyplot():
    """matplotlib.pyplot on the Agg backend: figures are drawn to files, never to a screen (a
    server or CI has none)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save_figure(fig, path: str | Path, **savefig_options) -> Path:
    """A matplotlib figure saved as PNG by `write_file_atomically` (a crash mid-save leaves the
    previous picture, not half of one), then closed."""
    import matplotlib.pyplot as plt

    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", **savefig_options)
    plt.close(fig)
    path = Path(path)
    write_file_atomically(path, buffer.getvalue())
    return path


# ---------------------------------------------------------------------------------------------
# The journal


class JournalError(EmotionLensError):
    """A journal line before the last is not a JSON object: damaged by hand or by the disk, not by
    a crash mid-append, so nothing is guessed away."""


class JournalBusyError(JournalError):
    """Another process holds the journal open for writing."""


def _fsync_directory(folder: Path) -> None:
    # A new file's name lives in its folder: without this, a power cut can lose a fsynced file.
    if os.name == "nt":  # pragma: no cover - Windows cannot open a folder; NTFS journals names
        return
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _parse_line(raw: bytes) -> dict[str, Any]:
    entry = json.loads(raw)  # ValueError for bad JSON or a UTF-8 sequence cut in half
    if not isinstance(entry, dict):
        raise ValueError(f"a JSON {type(entry).__name__}, not an object")
    return entry


def _last_line_start(data: bytes) -> int:
    """Where the last non-blank line of `data` starts (0 for none)."""
    end = len(data.rstrip())
    return data.rfind(b"\n", 0, end) + 1


def _is_whole(raw: bytes) -> bool:
    try:
        _parse_line(raw)
    except ValueError:
        return False
    return True


def _parse(path: Path, data: bytes) -> tuple[list[dict[str, Any]], int | None]:
    """The whole entries of a journal's bytes, and where a torn last line starts (None if none).

    Only the last non-blank line may be torn: an append is one write at the end of the file.
    """
    lines = data.split(b"\n")
    last = max((i for i, raw in enumerate(lines) if raw.strip()), default=-1)
    entries, offset = [], 0
    for i, raw in enumerate(lines):
        start, offset = offset, offset + len(raw) + 1
        if not raw.strip():
            continue
        try:
            entries.append(_parse_line(raw))
        except ValueError as err:
            if i == last:
                return entries, start
            raise JournalError(
                f"{path} line {i + 1} is not a JSON object ({err}): {raw[:200]!r}. Only the last line "
                "can be cut short by a crash, so this one was damaged otherwise: fix or delete that "
                "line by hand, then run again."
            ) from err
    return entries, None


def _warn_torn(path: Path, tail: bytes, action: str) -> None:
    log.warning(
        "The last line of %s is not a whole JSON object, most likely an append cut short by a crash; "
        "it is %s: %r",
        path, action, tail[:200],
    )  # fmt: skip


def read_journal(path: str | Path) -> list[dict[str, Any]]:
    """Every whole entry of the journal at `path`, oldest first, without changing the file.

    For readers beside a writer (the labelling page reads the pool's manifest while an extraction
    may still append to it): a torn last line is left out with a warning, not cut off. A missing
    file is an empty journal. JournalError names a damaged line before the last.
    """
    path = Path(path)
    if not path.is_file():
        return []
    data = path.read_bytes()
    entries, torn_at = _parse(path, data)
    if torn_at is not None:
        _warn_torn(path, data[torn_at:], "ignored")
    return entries


class Journal:
    """An append-only JSONL file that the writing process holds open.

    Opening it (created with its folder if missing) repairs its end: a torn last line is cut off
    with a warning, and a whole last line that lacks its newline gets one, so the next append
    starts a line of its own. `append` writes a line in one write and fsyncs it, so once it
    returns the entry survives a crash. With `exclusive`, opening takes an OS lock that the
    kernel drops when the process dies, and a second writer gets JournalBusyError.

        with Journal(path) as journal:
            for entry in journal.entries(): ...
            journal.append({"file": "a.png", "label": "happy"})

    One thread at a time: callers that append from several threads hold their own lock.
    """

    def __init__(self, path: str | Path, *, exclusive: bool = False) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        created = not self.path.exists()
        self._file = open(self.path, "ab+")  # noqa: SIM115 - held until close()
        try:
            if created:
                _fsync_directory(self.path.parent)
            if exclusive:
                self._lock()
            self._repair_end()
        except BaseException:
            self._file.close()
            raise

    def _lock(self) -> None:
        if fcntl is None:  # pragma: no cover
            return
        try:
            fcntl.flock(self._file.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise JournalBusyError(
                f"{self.path} is held by another process: wait for it to finish or stop it."
            ) from None

    def _read(self) -> bytes:
        self._file.seek(0)  # reads start anywhere; appends still go to the end (O_APPEND)
        return self._file.read()

    def _repair_end(self) -> None:
        # Only the last line is looked at: a damaged line before it is reported by entries().
        data = self._read()
        start = _last_line_start(data)
        tail = data[start:]
        if tail.strip() and not _is_whole(tail):
            _warn_torn(self.path, tail, "removed")
            self._file.truncate(start)
            self.sync()
        elif data and not data.endswith(b"\n"):  # a whole last line without its newline
            self._write(b"\n", sync=True)

    def entries(self) -> list[dict[str, Any]]:
        """Every entry on disk, oldest first (read now: nothing is kept in memory between calls).

        JournalError names a damaged line before the last.
        """
        data = self._read()
        entries, torn_at = _parse(self.path, data)
        if torn_at is not None:  # only if a second writer ignored the lock: leave its line alone
            _warn_torn(self.path, data[torn_at:], "ignored")
        return entries

    def append(self, entry: Mapping[str, Any], *, sync: bool = True) -> None:
        """Add `entry` (a JSON-able mapping) as the last line.

        `sync=False` leaves the fsync to a later `sync()`, for a batch of lines whose order on
        disk matters only against a later synced line; a crash may then lose the unsynced ones.
        """
        if not isinstance(entry, Mapping):
            raise TypeError(f"A journal entry is a mapping (a JSON object), got {type(entry).__name__}.")
        line = json.dumps(dict(entry), ensure_ascii=False)
        self._write(line.encode("utf-8") + b"\n", sync=sync)

    def _write(self, data: bytes, *, sync: bool) -> None:
        self._file.write(data)  # one write per line: a crash cuts at most the last line
        self._file.flush()
        if sync:
            self.sync()

    def sync(self) -> None:
        """Make every line appended so far reach the disk."""
        self._file.flush()
        os.fsync(self._file.fileno())

    def close(self) -> None:
        """Release the file (and its lock); the journal cannot be appended to after."""
        self._file.close()

    def __enter__(self) -> Journal:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
