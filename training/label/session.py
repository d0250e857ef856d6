"""`python -m training.label POOL --out DATASET [--host H] [--port P]`: sort faces by hand.

This module is the labelling session, without Gradio: the pool's order, the decisions, their
journal and the dataset tree. The page and the command that starts it are in
`training/label/page.py`.

Every decision is appended to DATASET/labels.jsonl (an `emotion.storage.files.Journal`: fsynced, a torn
last line cut off at the next start) before anything else happens, and the session state is only
ever rebuilt by replaying that journal: closing the page, killing the server or a power cut loses
at most the click that was in flight, and a restart carries on at the first unsorted face. The
ImageFolder tree DATASET/<emotion>/<name>.png that `training/data.py` reads is derived from the
journal and repaired from it at every start.

Pool order: POOL/manifest.jsonl (lines with a "file" key relative to POOL) if it exists,
otherwise every image under POOL sorted by relative path. Faces added to the pool while the page
runs are picked up at the next start.
"""

from __future__ import annotations

import io
import logging
import os
import threading
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from PIL import Image

from emotion.errors import EmotionLensError
from emotion.labels import EMOTIONS
from emotion.photo.faces import load_image
from emotion.storage.files import Journal, JournalBusyError, read_journal, write_file_atomically
from emotion.storage.media import IMAGE_EXTENSIONS
from training.extract import MANIFEST

log = logging.getLogger("training.label")  # not __name__: that is "__main__" under `python -m`

SKIP = "skip"
LABELS: tuple[str, ...] = (*EMOTIONS, SKIP)  # what a log line's "label" may hold
LOG_NAME = "labels.jsonl"


class LabelError(EmotionLensError):
    """A labelling action that cannot be done as asked; the message says what to do."""


class StaleFaceError(LabelError):
    """The caller acted on a face that is no longer the current one (another tab or client moved on)."""


@dataclass(frozen=True)
class Decision:
    file: str  # path relative to the pool, with forward slashes
    label: str  # one of LABELS


@dataclass(frozen=True)
class Progress:
    done: int  # pool faces with a decision (labelled or skipped)
    total: int  # faces in the pool
    skipped: int

    @property
    def remaining(self) -> int:
        return self.total - self.done

    @property
    def fraction(self) -> float:
        return self.done / self.total if self.total else 1.0


def tree_name(file: str) -> str:
    """The face's file name in DATASET/<emotion>/: its pool path flattened, always .png.

    Flattening (`clip1/face_7.png` -> `clip1__face_7.png`) keeps the names unique when two
    folders of the pool hold the same file name, and keeps the way back to the source readable.
    A non-PNG source keeps its suffix in the name (`a.jpg` -> `a.jpg.png`) so that `a.jpg` and
    `a.png` side by side stay two files.
    """
    path = Path(file)
    flat = "__".join((*path.parent.parts, path.stem if path.suffix.lower() == ".png" else path.name))
    return f"{flat}.png"


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds")


def _is_hidden(rel: Path) -> bool:
    # Temp files (".x.tmp") and tool folders (".ipynb_checkpoints") are not faces.
    return any(part.startswith(".") for part in rel.parts)


def _read_manifest(manifest: Path) -> list[str]:
    # Read-only: the extractor may still be appending to its journal (a torn last line is skipped).
    files: list[str] = []
    for number, entry in enumerate(read_journal(manifest), 1):
        try:
            rel = Path(entry["file"])
        except (KeyError, TypeError) as err:
            log.warning("%s entry %d has no file name (%s); ignored.", manifest, number, err)
            continue
        if rel.is_absolute() or ".." in rel.parts:
            log.warning("%s entry %d names %s, outside the pool; ignored.", manifest, number, rel)
            continue
        files.append(rel.as_posix())
    return files


def _scan(pool: Path, out: Path) -> list[str]:
    # DATASET inside POOL: never offer our own copies as new faces.
    out_rel = (
        out.resolve().relative_to(pool.resolve()) if out.resolve().is_relative_to(pool.resolve()) else None
    )
    files = []
    for path in pool.rglob("*"):
        rel = path.relative_to(pool)
        if path.suffix.lower() not in IMAGE_EXTENSIONS or _is_hidden(rel) or not path.is_file():
            continue
        if out_rel is not None and rel.is_relative_to(out_rel):
            continue
        files.append(rel.as_posix())
    return sorted(files)


def list_pool(pool: Path, out: Path) -> list[str]:
    """The pool's faces in labelling order, relative to `pool`; duplicates and missing files left out."""
    manifest = pool / MANIFEST
    listed = _read_manifest(manifest) if manifest.is_file() else _scan(pool, out)
    files, seen, missing = [], set(), 0
    for rel in listed:
        if rel in seen:
            continue
        seen.add(rel)
        if not (pool / rel).is_file():
            missing += 1
            continue
        files.append(rel)
    if missing:
        log.warning("%d files listed in %s are missing on disk; they are left out.", missing, manifest)
    return files


class LabelSession:
    """Sorting one pool of faces into DATASET; the journal DATASET/labels.jsonl is the only state.

    No Gradio here: the page (`training.label.page.build_page`) and tests drive this class. Safe
    to call from the several threads a Gradio server uses. Use as a context manager, or call
    `close()`, to release the lock on the log before another session opens the same DATASET.
    """

    def __init__(self, pool: str | Path, out: str | Path) -> None:
        self.pool = Path(pool)
        self.out = Path(out)
        if not self.pool.is_dir():
            raise LabelError(
                f"The face pool {self.pool} is not a folder. Pass the folder of extracted faces."
            )
        if self.out.resolve() == self.pool.resolve():
            raise LabelError(f"--out must differ from the pool ({self.pool}): use e.g. {self.pool}-labelled.")
        self.files: tuple[str, ...] = tuple(list_pool(self.pool, self.out))
        if not self.files:
            raise LabelError(
                f"No faces to label in {self.pool}: it holds no PNG/JPEG images"
                + (f" listed in {MANIFEST}" if (self.pool / MANIFEST).is_file() else "")
                + ". Run the extractor into it first, or pass the folder that holds the faces."
            )
        self._names = self._check_names(self.files)
        self._index = {f: i for i, f in enumerate(self.files)}
        self._lock = threading.Lock()
        self._labels: dict[str, str] = {}  # file -> its current label, for every decided file
        self._history: list[str] = []  # decided files, oldest first: what undo walks back through
        self._seen: set[str] = set()  # every file the log names: the tree files this session owns
        self._next = 0  # no undecided pool face before this index

        self.log_path = self.out / LOG_NAME
        self._log = self._open_log()
        try:
            self._replay()
            self._repair_tree()
        except BaseException:
            self._log.close()
            raise
        self._advance()
        progress = self.progress()
        log.info(
            "Labelling %s into %s: %d of %d faces already sorted.",
            self.pool,
            self.out,
            progress.done,
            progress.total,
        )

    # -- the log ---------------------------------------------------------------------------

    def _open_log(self) -> Journal:
        try:
            return Journal(self.log_path, exclusive=True)  # held for the session, closed in close()
        except JournalBusyError:
            raise LabelError(
                f"{self.log_path} is in use by another labelling session (a second "
                "`python -m training.label` with the same --out?). Close that one first."
            ) from None

    def _replay(self) -> None:
        for number, entry in enumerate(self._log.entries(), 1):
            try:
                self._apply(entry)
            except (KeyError, TypeError, ValueError) as err:
                # Whole JSON that is not a decision this session could have written: edited by hand.
                raise LabelError(
                    f"Entry {number} of {self.log_path} is not a valid decision ({err}): "
                    f"{str(entry)[:200]}. Fix or delete that line by hand, then start again."
                ) from err

    def _apply(self, entry: dict[str, Any]) -> None:
        """Apply one log entry to the in-memory state; ValueError/KeyError/TypeError if it is not valid."""
        if "undo" in entry:
            file = entry["undo"]
            if file not in self._labels:
                raise ValueError(f"undo of {file!r}, which has no decision")
            self._history.remove(file)  # a file is in the history once: relabelling moves it
            del self._labels[file]
            self._seen.add(file)
            if file in self._index:
                self._next = min(self._next, self._index[file])
            return
        file, label = entry["file"], entry["label"]
        if not isinstance(file, str) or label not in LABELS:
            raise ValueError(f"label must be one of {', '.join(LABELS)}, got {label!r}")
        if file in self._labels:
            self._history.remove(file)
        self._labels[file] = label
        self._history.append(file)
        self._seen.add(file)

    def _append(self, entry: dict[str, Any]) -> None:
        # On disk (fsynced) before the tree changes, so the tree can always be rebuilt from the log.
        self._log.append(entry)

    # -- the ImageFolder tree --------------------------------------------------------------

    def tree_path(self, file: str, label: str) -> Path:
        return self.out / label / self._name(file)

    def _name(self, file: str) -> str:
        return self._names.get(file) or tree_name(file)

    @staticmethod
    def _check_names(files: tuple[str, ...]) -> dict[str, str]:
        names: dict[str, str] = {}
        owner: dict[str, str] = {}
        for file in files:
            name = tree_name(file)
            if name in owner:
                raise LabelError(
                    f"{owner[name]} and {file} would both be saved as {name} in the dataset. "
                    "Rename one of them in the pool, then start again."
                )
            owner[name], names[file] = file, name
        return names

    def _write_face(self, file: str, label: str, png: bytes) -> None:
        target = self.tree_path(file, label)
        target.parent.mkdir(parents=True, exist_ok=True)
        write_file_atomically(target, png, fsync=True)  # a reader never sees a half-written PNG

    def _encode(self, file: str) -> bytes:
        """The face as RGB PNG bytes; read before logging so an unreadable file changes nothing."""
        path = self.pool / file
        try:
            rgb = load_image(path)
        except EmotionLensError as err:
            raise LabelError(f"{err} Skip this face (key 0 or s).") from err
        buf = io.BytesIO()
        Image.fromarray(rgb).save(buf, format="PNG")
        return buf.getvalue()

    def _repair_tree(self) -> None:
        """Make the tree match the log for every file the log knows (a crash may have left it behind).

        Only names this log wrote are touched: images put in the tree by hand stay.
        """
        known = {self._name(f) for f in self._seen}
        fixed = 0
        for emotion in EMOTIONS:
            folder = self.out / emotion
            if not folder.is_dir():
                continue
            for name in os.listdir(folder):
                if name.startswith(".") and name.endswith(".tmp"):
                    (folder / name).unlink(missing_ok=True)  # a copy cut short by a crash
                    fixed += 1
        by_name = {self._name(f): f for f in self._labels}
        for emotion in EMOTIONS:
            folder = self.out / emotion
            present = set(os.listdir(folder)) & known if folder.is_dir() else set()
            for name in present:
                file = by_name.get(name)
                if file is None or self._labels[file] != emotion:
                    (folder / name).unlink()
                    fixed += 1
        for file, label in self._labels.items():
            if label != SKIP and not self.tree_path(file, label).is_file():
                if not (self.pool / file).is_file():
                    log.warning(
                        "%s is labelled %s but gone from the pool; it stays out of the tree.", file, label
                    )
                    continue
                self._write_face(file, label, self._encode(file))
                fixed += 1
        if fixed:
            log.warning("Repaired %d files of the tree in %s to match %s.", fixed, self.out, self.log_path)

    # -- queries ---------------------------------------------------------------------------

    def _advance(self) -> None:
        while self._next < len(self.files) and self.files[self._next] in self._labels:
            self._next += 1

    def current(self) -> str | None:
        """The face to sort now (path relative to the pool), or None when all are sorted."""
        with self._lock:
            return self.files[self._next] if self._next < len(self.files) else None

    def upcoming(self, n: int = 8) -> list[str]:
        """The next `n` faces after the current one, in order."""
        with self._lock:
            out: list[str] = []
            for i in range(self._next + 1, len(self.files)):
                if len(out) >= n:
                    break
                if self.files[i] not in self._labels:
                    out.append(self.files[i])
            return out

    def position(self, file: str) -> int:
        """The face's place in the pool order, from 0."""
        return self._index[file]

    def counts(self) -> dict[str, int]:
        """Faces per emotion in the dataset, plus "skip"; in EMOTIONS order."""
        with self._lock:
            counts = dict.fromkeys(LABELS, 0)
            for label in self._labels.values():
                counts[label] += 1
            return counts

    def progress(self) -> Progress:
        with self._lock:
            decided = [self._labels[f] for f in self.files if f in self._labels]
            return Progress(done=len(decided), total=len(self.files), skipped=decided.count(SKIP))

    def history(self) -> list[Decision]:
        """Every decision in force, oldest first."""
        with self._lock:
            return [Decision(f, self._labels[f]) for f in self._history]

    # -- actions ---------------------------------------------------------------------------

    def assign(self, label: str, *, file: str | None = None) -> Decision:
        """Sort the current face as `label` (an emotion, or "skip"); returns what was decided.

        `file`, when given, must be the current face: a page that shows an old face (another tab
        moved on) gets a StaleFaceError instead of labelling a face its user never saw.
        """
        if label not in LABELS:
            raise LabelError(f"Unknown label {label!r}: use one of {', '.join(LABELS)}.")
        with self._lock:
            if self._next >= len(self.files):
                raise LabelError("All faces are sorted. Press undo to change the last decision.")
            current = self.files[self._next]
            if file is not None and file != current:
                raise StaleFaceError(
                    f"{file} is not the current face any more (now {current}): it was sorted "
                    "elsewhere. Look at the face shown now."
                )
            png = self._encode(current) if label != SKIP else b""
            entry = {"file": current, "label": label, "time": _now()}
            self._append(entry)
            self._apply(entry)
            if label != SKIP:
                self._write_face(current, label, png)
            self._advance()
            log.debug("%s -> %s", current, label)
            return Decision(current, label)

    def skip(self, *, file: str | None = None) -> Decision:
        """Leave the current face out of the dataset (recorded, so it is not shown again)."""
        return self.assign(SKIP, file=file)

    def undo(self) -> Decision:
        """Take back the last decision; its face becomes the current one again. Returns it."""
        with self._lock:
            if not self._history:
                raise LabelError(
                    "Nothing to undo: no face is sorted yet. Sort one first (keys 1-5, 0 to skip)."
                )
            undone = Decision(self._history[-1], self._labels[self._history[-1]])
            self._append({"undo": undone.file, "time": _now()})
            self._apply({"undo": undone.file})
            if undone.label != SKIP:
                self.tree_path(undone.file, undone.label).unlink(missing_ok=True)
            log.debug("undo %s (was %s)", undone.file, undone.label)
            return undone

    # -- lifetime --------------------------------------------------------------------------

    def close(self) -> None:
        """Release the log (and its lock); the session cannot be used after."""
        self._log.close()

    def __enter__(self) -> LabelSession:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
