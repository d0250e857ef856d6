"""`python -m training.label POOL --out DATASET [--host H] [--port P]`: sort faces by hand.

A Gradio page that shows the faces of a pool (the output of `training/extract.py`, or any
folder of PNG/JPEG faces) one at a time, large, with the next few beside it; a click or a key
(1-5 for the emotions, 0 or s to skip, u or Backspace to undo) sorts the face and shows the next.

Every decision is appended to DATASET/labels.jsonl (flushed and fsynced) before anything else
happens, and the session state is only ever rebuilt by replaying that log: closing the page,
killing the server or a power cut loses at most the click that was in flight, and a restart
carries on at the first unsorted face. The ImageFolder tree DATASET/<emotion>/<name>.png that
`training/data.py` reads is derived from the log and repaired from it at every start.

Pool order: POOL/manifest.jsonl (lines with a "file" key relative to POOL) if it exists,
otherwise every image under POOL sorted by relative path. Faces added to the pool while the page
runs are picked up at the next start.

For scripts (gradio_client), the page has three JSON endpoints: `/label` (label: an emotion or
"skip") sorts the current face, `/undo` takes back the last decision, `/status` says where the
session stands. Each returns {"current", "done", "total", "skipped", "counts"} (+ what it did).
"""

from __future__ import annotations

import argparse
import io
import json
import logging
import os
import sys
import threading
from dataclasses import dataclass
from datetime import datetime, timezone
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from PIL import Image

from emotion.errors import EmotionLensError
from emotion.faces import load_image
from emotion.files import write_file_atomically
from emotion.labels import EMOTIONS

try:  # POSIX only; without it two servers on one dataset are simply not prevented.
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None

if TYPE_CHECKING:  # gradio is imported only where the page is built: the core runs without it
    import gradio as gr

log = logging.getLogger("training.label")  # not __name__: that is "__main__" under `python -m`

SKIP = "skip"
LABELS: tuple[str, ...] = (*EMOTIONS, SKIP)  # what a log line's "label" may hold
IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg"})
MANIFEST = "manifest.jsonl"
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
    files: list[str] = []
    lines = manifest.read_text(encoding="utf-8").splitlines()
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            entry = json.loads(line)
            rel = Path(entry["file"])
        except (json.JSONDecodeError, KeyError, TypeError) as err:
            # The extractor may have been killed mid-line; one bad line must not block labelling.
            log.warning(
                "%s line %d is not a JSON object with a 'file' key (%s); ignored.", manifest, number, err
            )
            continue
        if rel.is_absolute() or ".." in rel.parts:
            log.warning("%s line %d names %s, outside the pool; ignored.", manifest, number, rel)
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
        if path.suffix.lower() not in IMAGE_SUFFIXES or _is_hidden(rel) or not path.is_file():
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
    """Sorting one pool of faces into DATASET; the log DATASET/labels.jsonl is the only state.

    No Gradio here: the page (`build_page`) and tests drive this class. Safe to call from the
    several threads a Gradio server uses. Use as a context manager, or call `close()`, to
    release the lock on the log before another session opens the same DATASET.
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

        self.out.mkdir(parents=True, exist_ok=True)
        self.log_path = self.out / LOG_NAME
        self._log = open(self.log_path, "ab+")  # noqa: SIM115 - held for the session, closed in close()
        try:
            self._hold_lock()
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

    def _hold_lock(self) -> None:
        if fcntl is None:
            return
        try:
            fcntl.flock(self._log.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise LabelError(
                f"{self.log_path} is in use by another labelling session (a second "
                "`python -m training.label` with the same --out?). Close that one first."
            ) from None

    def _replay(self) -> None:
        self._log.seek(0)
        data = self._log.read()
        lines = data.split(b"\n")  # the last item is b"" when the log ends with a newline
        last = max((i for i, raw in enumerate(lines) if raw.strip()), default=-1)
        offset = 0
        for i, raw in enumerate(lines):
            start, offset = offset, offset + len(raw) + 1
            if not raw.strip():
                continue
            try:
                entry = json.loads(raw)
                if not isinstance(entry, dict):
                    raise TypeError(f"a JSON {type(entry).__name__}, not an object")
                self._apply(entry)
            except (json.JSONDecodeError, UnicodeDecodeError, KeyError, TypeError, ValueError) as err:
                if i < last:
                    raise LabelError(
                        f"{self.log_path} line {i + 1} is not a valid entry ({err}): {raw[:200]!r}. "
                        "Fix or delete that line by hand, then start again."
                    ) from err
                # The last line: a write cut short by a crash. That click never finished, so it is
                # dropped, and cut off so the next entry does not land on the same line.
                self._drop_tail(start, raw, err)
                return
        if data and not data.endswith(b"\n"):
            self._append_raw(b"\n")  # a valid last line without its newline (edited by hand)

    def _drop_tail(self, start: int, raw: bytes, err: Exception) -> None:
        log.warning(
            "The last line of %s is not a valid entry (%s), most likely a write cut short by a "
            "crash; it is ignored and removed: %r",
            self.log_path, err, raw[:200],
        )  # fmt: skip
        self._log.truncate(start)
        self._log.flush()
        os.fsync(self._log.fileno())

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
        # On disk before the tree changes, so the tree can always be rebuilt from the log.
        self._append_raw(json.dumps(entry, ensure_ascii=False).encode() + b"\n")

    def _append_raw(self, data: bytes) -> None:
        self._log.write(data)  # one write per line: a crash cuts at most the last line
        self._log.flush()
        os.fsync(self._log.fileno())

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


# == the page: wiring only ==================================================================


@dataclass(frozen=True)
class PageConfig:
    host: str = "127.0.0.1"
    port: int = 7861
    zoom_px: int = 300  # the current face is upscaled (nearest) to about this size
    strip: int = 8  # how many upcoming faces the strip shows


KEYS = {
    **{str(i): e for i, e in enumerate(EMOTIONS, 1)},
    "0": SKIP,
    "s": SKIP,
    "u": "undo",
    "Backspace": "undo",
}


def button_id(action: str) -> str:
    return f"label-{action}"


# Keys click the buttons (so keyboard and mouse take the same path). Keys typed into a field are
# left alone; held keys do not repeat, so one press is one decision.
KEYS_JS = """
() => {
  const keys = __KEYS__;
  document.addEventListener("keydown", (event) => {
    if (event.ctrlKey || event.metaKey || event.altKey || event.repeat) return;
    const target = event.target;
    const typing = ["INPUT", "TEXTAREA", "SELECT"];
    if (target && (target.isContentEditable || typing.includes(target.tagName))) return;
    const id = keys[event.key] || keys[event.key.toLowerCase()];
    if (!id) return;
    const button = document.getElementById(id);
    if (!button || button.disabled) return;
    event.preventDefault();  // Backspace must not navigate away
    button.click();
  });
}
""".replace("__KEYS__", json.dumps({key: button_id(action) for key, action in KEYS.items()}))

CSS = """
#label-face img { image-rendering: pixelated; }
#label-strip img { image-rendering: pixelated; }
"""


def zoom(face: np.ndarray, size: int) -> np.ndarray:
    """Upscale by a whole factor with nearest neighbour: every pixel the model will see, none invented."""
    factor = max(1, round(size / max(face.shape[:2])))
    return np.repeat(np.repeat(face, factor, axis=0), factor, axis=1)


def status(session: LabelSession) -> dict[str, Any]:
    """A JSON-able picture of the session, returned by the API endpoints."""
    p = session.progress()
    return {
        "current": session.current(),
        "done": p.done,
        "total": p.total,
        "skipped": p.skipped,
        "counts": session.counts(),
    }


def _progress_text(p: Progress) -> str:
    if p.remaining == 0:
        return f"### All done: {p.total} of {p.total} faces sorted ({p.skipped} skipped)."
    return (
        f"**{p.done} / {p.total}** faces sorted ({100 * p.fraction:.1f} %) · "
        f"{p.skipped} skipped · {p.remaining} to go"
    )


def _counts_text(counts: dict[str, int]) -> str:
    head = " | ".join(EMOTIONS)
    row = " | ".join(str(counts[e]) for e in EMOTIONS)
    return f"| {head} | skipped |\n|{'---|' * (len(EMOTIONS) + 1)}\n| {row} | {counts[SKIP]} |"


def page_values(session: LabelSession, config: PageConfig, note: str = "") -> tuple:
    """Everything the page shows, in the order of `build_page`'s outputs."""
    import gradio as gr

    current = session.current()
    p = session.progress()
    if current is None:
        face, where = (
            None,
            (
                f"## All done\nEvery face of the pool is sorted; the dataset is in `{session.out}`. "
                "Press **undo** (u) to change the last decision, or add faces to the pool and start again."
            ),
        )
    else:
        where = f"Face **{session.position(current) + 1}** of {p.total}: `{current}`"
        try:
            face = zoom(load_image(session.pool / current), config.zoom_px)
        except EmotionLensError as err:
            face, where = None, f"{where}\n\n⚠️ {err} Press **skip** (0 or s)."
    strip = [(str(session.pool / f), f"+{i}") for i, f in enumerate(session.upcoming(config.strip), 1)]
    buttons = [gr.Button(interactive=current is not None) for _ in LABELS]
    return (
        gr.update(value=face, visible=current is not None),  # no empty frame once all are done
        where,
        gr.update(value=strip, visible=bool(strip)),
        _progress_text(p),
        gr.Slider(value=p.done, maximum=p.total),
        _counts_text(session.counts()),
        note,
        current,
        *buttons,
    )


def build_page(session: LabelSession, config: PageConfig = PageConfig()) -> gr.Blocks:
    """The labelling page for `session`; launch it with `js=KEYS_JS, css=CSS` for the keys to work."""
    import gradio as gr

    def act(label: str, shown: str | None):
        if shown is None:  # no face on this page yet (still loading, or all done): nothing was seen
            return page_values(session, config)
        try:
            done = session.assign(label, file=shown)
        except StaleFaceError as err:
            gr.Warning(str(err))  # not an error: the page simply catches up
            return page_values(session, config)
        except LabelError as err:
            raise gr.Error(str(err)) from err
        word = "skipped" if done.label == SKIP else f"→ **{done.label}**"
        return page_values(session, config, f"`{done.file}` {word}")

    def take_back():
        try:
            undone = session.undo()
        except LabelError as err:
            raise gr.Error(str(err)) from err
        return page_values(session, config, f"↩ undid `{undone.file}` (was {undone.label})")

    def api_label(label: str) -> dict:
        """Sort the current face as `label` (an emotion or "skip"); returns it and the new status."""
        try:
            done = session.assign(label)
        except LabelError as err:
            raise gr.Error(str(err)) from err
        return {"file": done.file, "label": done.label, **status(session)}

    def api_undo() -> dict:
        """Take back the last decision; returns it and the new status."""
        try:
            undone = session.undo()
        except LabelError as err:
            raise gr.Error(str(err)) from err
        return {"undone": undone.file, "label": undone.label, **status(session)}

    def api_status() -> dict:
        """Where the session stands: current face, progress and counts per emotion."""
        return status(session)

    total = len(session.files)
    with gr.Blocks(title="Emotion Lens · label faces", delete_cache=(3600, 3600)) as page:
        # delete_cache: every shown face is written to Gradio's cache; 30k faces would fill /tmp.
        gr.Markdown(
            f"# Sort faces into emotions\nPool `{session.pool}` → dataset `{session.out}`. "
            "Click or press the key on a button. Every decision is saved at once: stop any time, "
            "start again with the same folders to carry on."
        )
        with gr.Row():
            with gr.Column(scale=0, min_width=340):
                face = gr.Image(
                    label="Current face",
                    elem_id="label-face",
                    interactive=False,
                    height=config.zoom_px + 40,
                    width=config.zoom_px + 20,
                    buttons=[],
                    format="png",  # lossless: the exact pixels that go into the dataset
                )
                where = gr.Markdown()
            with gr.Column(scale=1):
                with gr.Row():
                    buttons = [
                        gr.Button(f"{i} · {e}", elem_id=button_id(e), variant="primary", min_width=90)
                        for i, e in enumerate(EMOTIONS, 1)
                    ]
                with gr.Row():
                    skip = gr.Button("0 / s · skip", elem_id=button_id(SKIP), variant="secondary")
                    undo = gr.Button("u / ⌫ · undo", elem_id=button_id("undo"), variant="stop")
                note = gr.Markdown()
                progress_md = gr.Markdown()
                bar = gr.Slider(0, total, value=0, step=1, label="Sorted", interactive=False, buttons=[])
                counts = gr.Markdown()
        strip = gr.Gallery(
            label=f"Next {config.strip}",
            elem_id="label-strip",
            columns=config.strip,
            rows=1,
            height=200,  # one row of thumbnails; "auto" leaves a tall empty box
            object_fit="contain",
            allow_preview=False,
            interactive=False,
            buttons=[],
        )
        shown = gr.State(None)  # the face this tab shows, so a stale tab cannot label another one

        outputs = [face, where, strip, progress_md, bar, counts, note, shown, *buttons, skip]
        for label, button in zip(LABELS, [*buttons, skip], strict=True):
            button.click(partial(act, label), [shown], outputs, api_visibility="private")
        undo.click(take_back, None, outputs, api_visibility="private")
        page.load(partial(page_values, session, config), None, outputs, api_visibility="private")
        # For scripts and tests (gradio_client): JSON in, JSON out, no images.
        gr.api(api_label, api_name="label")
        gr.api(api_undo, api_name="undo")
        gr.api(api_status, api_name="status")
    return page


# == CLI ====================================================================================


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m training.label",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "pool", type=Path, help="folder of face images (with manifest.jsonl if the extractor wrote one)"
    )
    parser.add_argument(
        "--out", type=Path, required=True, help="dataset folder: labels.jsonl + <emotion>/ folders"
    )
    parser.add_argument("--host", default=PageConfig.host)
    parser.add_argument("--port", type=int, default=PageConfig.port)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)  # Gradio's own start-up requests
    args = parse_args(argv)
    config = PageConfig(host=args.host, port=args.port)
    try:
        session = LabelSession(args.pool, args.out)
    except LabelError as err:
        log.error("%s", err)
        return 2
    with session:
        page = build_page(session, config)
        page.queue().launch(
            server_name=config.host,
            server_port=config.port,
            show_error=True,
            allowed_paths=[str(session.pool.resolve())],  # the strip shows pool files as they are
            js=KEYS_JS,
            css=CSS,
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
