"""Sort the faces of a pool into emotions by hand, in a Gradio page.

    python -m training.label POOL --out DATASET [--host H] [--port P]

The page shows the faces of a pool (the output of `training/extract.py`, or any folder of
PNG/JPEG faces) one at a time, large, with the next few beside it; a click or a key (1-5 for the
emotions, 0 or s to skip, u or Backspace to undo) sorts the face and shows the next.

Every decision is appended to DATASET/labels.jsonl (fsynced) before anything else happens, and
the session is only ever rebuilt from that journal: closing the page, killing the server or a
power cut loses at most the click that was in flight, and a restart carries on at the first
unsorted face. DATASET/<emotion>/<name>.png is the ImageFolder tree that `training/data.py` reads.

For scripts (gradio_client), the page has three JSON endpoints: `/label` (label: an emotion or
"skip") sorts the current face, `/undo` takes back the last decision, `/status` says where the
session stands. Each returns {"current", "done", "total", "skipped", "counts"} (+ what it did).

This module is the page and the command; what they drive is `training.label.session.LabelSession`.
"""

from __future__ import annotations

import argparse
import json
import logging
import socket
import sys
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from emotion.cli import command, program_name
from emotion.errors import EmotionLensError
from emotion.labels import EMOTIONS
from emotion.photo.faces import load_image
from training.label.session import LABELS, SKIP, LabelError, LabelSession, Progress, StaleFaceError

if TYPE_CHECKING:  # Gradio is imported where the page is built, so this module imports without it
    import gradio as gr


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
        prog=program_name("training.label"),
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


@command
def main(argv: list[str] | None = None) -> int:
    """Open the session on POOL and DATASET, then serve its page until stopped (Ctrl-C)."""
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)  # Gradio's own start-up requests
    args = parse_args(argv)
    config = PageConfig(host=args.host, port=args.port)
    check_port(config)  # before the session opens: a taken port is then the one thing said
    with LabelSession(args.pool, args.out) as session:
        page = build_page(session, config)
        try:
            page.queue().launch(
                server_name=config.host,
                server_port=config.port,
                show_error=True,
                allowed_paths=[str(session.pool.resolve())],  # the strip shows pool files as they are
                js=KEYS_JS,
                css=CSS,
            )
        except OSError as err:  # taken between the check and the launch
            raise _port_error(config) from err
    return 0


def check_port(config: PageConfig) -> None:
    """LabelError if the page's address cannot be bound (another program holds the port)."""
    with socket.socket() as probe:
        # As the server will bind: a port left in TIME_WAIT by an earlier run is free to it.
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((config.host, config.port))
        except OSError as err:
            raise _port_error(config) from err


def _port_error(config: PageConfig) -> LabelError:
    return LabelError(
        f"Cannot serve the labelling page on {config.host}:{config.port}: another program holds "
        "that port, or the address is not this machine's. Pass --port with a free one (or --host)."
    )


if __name__ == "__main__":
    sys.exit(main())
