"""The page: wiring only. Every computation is a call into `emotion`."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import gradio as gr
import numpy as np

import app.gradio_cache  # noqa: F401  (atomic output images: see its docstring)
from app.memory import trimmed
from app.pending import ModelNotReadyError, PendingModel
from emotion import EMOTIONS, EmotionLensError, EmotionModel
from emotion.errors import FaceIndexError, TimeLimitError
from emotion.evaluation.shortcut_view import (
    model_report_markdown,
    no_report_text,
    pictures_html,
    report_folder_of,
)
from emotion.explainers.figures import DELETION_AUC, INSERTION_AUC, faithfulness_caption, figure_caption
from emotion.explainers.registry import Explainer, check_configs, resolve_methods, split_quick, title_of
from emotion.explainers.render import colour_scale_html, overlays
from emotion.photo.faces import Box, detect_faces, draw_boxes, load_image
from emotion.photo.pipeline import add_explanations, classify, explain
from emotion.photo.report import FaceResult, Report
from emotion.storage.model_folder import is_shipped_demo
from emotion.timing import Deadline
from emotion.video.live import LiveStream
from emotion.video.timeline import VideoLimits, analyze_video, timeline_csv, timeline_image

EXAMPLES_DIR = Path(__file__).parent / "examples"
PHOTO_TAB = "photo"
LIVE_TAB = "live"
TITLE = "Emotion Lens"
# Gradio's gallery keeps a 450-px minimum height and at least 100 px per column: one row of five
# maps then leaves half the gallery empty on a desktop and runs off the side of a phone. These
# galleries take the height of their rows and wrap (5 across on a desktop, 3 + 2 on a phone).
# Its max-height (a few px short of three rows on a phone) clipped the last row's captions.
# A map's caption is up to three lines (emotion and probability; its figures; faithfulness) that
# wrap under the map instead of being cut to "angry 41% · 1…" by Gradio's ellipsis.
CSS = """
.emotion-maps .grid-wrap { min-height: 0 !important; height: auto !important; max-height: none !important; }
.emotion-maps .grid-container { grid-template-columns: repeat(auto-fit, minmax(105px, 1fr)) !important; }
.emotion-maps .caption-label { white-space: pre-line !important; max-width: 100% !important; }
/* Below the map, not over its lower third: that is where the mouth, happy's evidence, is drawn. */
.emotion-maps .thumbnail-item {
  display: flex !important; flex-direction: column; height: auto !important; aspect-ratio: auto !important;
}
.emotion-maps .caption-label {
  position: static !important; border: none !important; background: none !important;
}
.colour-scale { max-width: 520px; margin: 4px 0 8px; }
.colour-scale-bar { height: 12px; border-radius: 3px; }
.colour-scale-ends { display: flex; justify-content: space-between; font-size: 0.8rem; gap: 8px; }
/* The report's table must fit a phone: compact cells, figures kept on one line. */
.model-report table { font-size: 0.8rem; }
.model-report th, .model-report td { padding: 4px 6px !important; }
.model-report th { word-break: keep-all !important; overflow-wrap: normal !important; }
.model-report td { white-space: nowrap; }
/* Six columns of figures do not fit 390 px: the table scrolls inside the page, not off it. */
.model-report table {
  display: block; width: fit-content; max-width: 100%; overflow-x: auto; border: none !important;
}
/* "What to do": the commands wrap, so every flag of them is read and copied, none cut off. */
.model-report pre, .model-report pre code { white-space: pre-wrap !important; overflow-wrap: anywhere; }
/* Each gallery's label (two lines on a phone) sits above its maps, not over the first one's
   corner, and its "Download all" button over its own strip, not over the last map's corner. */
.emotion-maps label[data-testid="block-label"] { position: static !important; }
.emotion-maps .grid-container { padding-top: 20px !important; }
/* The timeline plot's label and buttons sit above it, off its legend (top left). */
.timeline .image-container { padding-top: 34px; }
@media (max-width: 480px) {
  /* The three tab names fit a phone's width: Gradio would put the video tab behind "...". */
  .tab-container button { padding: 0 var(--size-2) !important; }
  /* The timeline plot (900 px) scrolls sideways at 600 px, where its labels can be read,
     instead of shrinking to a third. */
  .timeline .image-container { overflow-x: auto; }
  .timeline .image-container button { width: auto !important; justify-content: flex-start !important; }
  .timeline .image-frame img { min-width: 600px; max-width: none !important; }
}
"""
# Bounds for a public page on 2 CPU cores, each with its reason.
# Explanations run one at a time (two would only share the cores), about 1 s each there. The
# queue holds 32: a crowd of 20 visitors waiting for one answer each is served (`python -m
# bench.load`), the one at the back waits about half a minute, and the 34th request is refused at
# once with "queue is full" rather than left hanging.
QUEUE_MAX = 32
# Photos are decoded up to 50 MP (emotion.photo.faces.MAX_PIXELS), videos read for 30 s at up to 1920
# px on the longer side (VIDEO_LIMITS): 50 MB holds any camera's JPEG and a 30-s phone clip at 1080p (about
# 10 Mbit/s), and stops a 1 GB upload before it reaches the disk.
MAX_UPLOAD = "50mb"
# An explanation takes about 1 s on 2 cores, faithfulness and every method ticked about 20 s: a
# request still running after a minute has met a crowd or a pathological input, and holds the
# one photo lane. It stops at its next step with a message.
PHOTO_TIME_LIMIT_S = 60.0
# How long a session keeps the photo its upload decoded (up to 50 MP, 150 MB): long enough for
# the presses of Explain that follow, short enough that idle sessions do not pile photos up.
SEEN_PHOTO_TTL_S = 600
# Videos have a lane of their own (VIDEO_LANE), one at a time, so a long video never holds up a
# photo; each stops after 2 minutes of work with what it has read.
VIDEO_LIMITS = VideoLimits()
VIDEO_LANE = "video"
# A press of Explain runs in two lanes, one at a time in each: the first maps (face, probabilities,
# Grad-CAM: about a tenth of a second) and the slow methods (LIME), so the first maps are not
# queued behind the LIME of the visitors ahead. /explain (the whole result in one call) shares the
# slow lane.
FIRST_LANE = "first maps"
EXPLAIN_LANE = "explain"
# The live tab. Gradio keeps a stream in its lane for the whole stream, reading the newest
# frame the browser sent each time it is free (older ones are overwritten: the latest frame
# wins, none queue). A frame costs about 8 ms on 2 cores (`python -m bench.live`), but beside
# them photo and video requests slow with the frames a second of all streams together (`python
# -m bench.live_beside`: 1.26× with 2 streams of 10 frames a second, 1.7× with 4): 2 streams at
# once; a third visitor waits in the queue (the camera button says so). A stream stops after a
# minute, so a tab left open does not hold a place.
LIVE_LANE = "live"
LIVE_STREAMS = 2
LIVE_EVERY_S = 0.1
LIVE_TIME_LIMIT_S = 60
TOP_EMOTION = "top emotion"


def live_note(limit_s: float) -> str:
    return (
        "Press **Record**: each frame comes back with every face boxed, its top emotion, and the "
        "Grad-CAM of the emotion chosen above (the last stage's, from the same forward pass) over "
        f"the face. The stream stops after {limit_s:.0f} s; press Record again to go on. "
        "**Explain this frame** sends the latest frame to the photo tab for Grad-CAM and LIME of "
        "all five emotions."
    )


# A stream past its time: the camera's Stop pressed in the browser, so frames stop leaving
# (Gradio's own time_limit only sends a stream back to the queue while the browser records on).
# The mark starts the status line that says so. The webcam's button shows "stop recording" (or a
# spinner while it waits for a place) as long as the event is open, which Gradio's time_limit,
# set a little past ours (LIVE_LIMIT_MARGIN_S), keeps it.
STOPPED_MARK = "⏹"
LIVE_LIMIT_MARGIN_S = 2
STOP_CAMERA_JS = f"""
(status) => {{
  if (!status || !status.startsWith("{STOPPED_MARK}")) return;
  const camera = document.querySelector("#live-camera");
  const record = camera && camera.querySelector("button.capture-button");
  if (record && record.querySelector('[title="stop recording"], [title="spinner"]')) record.click();
}}
"""
# Browsers give a page no camera where there is none, or on plain http from another machine
# (no navigator.mediaDevices at all): said in a sentence instead of a dead webcam box.
NO_CAMERA_JS = """
async () => {
  const devices = navigator.mediaDevices ? await navigator.mediaDevices.enumerateDevices() : null;
  if (devices && devices.some((d) => d.kind === "videoinput")) return "";
  return "**This browser gives the page no camera**" + (devices ? " (none was found)." :
    " (it offers cameras only over https or on this machine's own address).") +
    " The live view needs one; the photo and video tabs work without.";
}
"""
# Gradio keeps every upload and output in its cache: delete those older than an hour, hourly.
DELETE_CACHE = (3600, 3600)
FAITHFULNESS_LABEL = (
    "Faithfulness figures: deletion ↓ / insertion ↑ AUC of the top emotion's maps "
    "(1-2 s more per method on 2 CPU cores)"
)
FIGURES_LEGEND = (
    "Under each map: the emotion's probability, then the share of the map that lies outside the "
    "face (an ellipse around the detected box, chin and jaw included: background) and, for LIME, "
    "the R² of its linear fit (low: the map explains "
    "little of how the model's answer moved). Faithfulness (on request): the area under the top "
    "emotion's probability as the map's pixels are deleted (lower is better) or inserted into a "
    "blurred face (higher is better)."
)


def model_banner(model: EmotionModel) -> str:
    """What the page says about the model; the demo model is named for what it is."""
    if model.is_demo:
        origin = (
            "It ships with Emotion Lens"
            if is_shipped_demo(model.folder)
            else "It was built on this machine (`python -m training.demo`)"
        )
        return (
            f"⚠️ **Demo model, trained on synthetic drawn faces.** {origin} and is served "
            "because no model was configured. It reads cartoon-like faces well and **will not read "
            "real photos well**: its probabilities on a real face are not meaningful. To use a real "
            "model, start the app with `python -m app --model PATH_OR_HUB_ID` (a model folder or a "
            "Hub id such as `user/name`) or set `EMOTION_MODEL`."
        )
    return f"Model: `{model.source}` ({model.architecture}, labels: {', '.join(model.labels)})."


def methods_note(model: EmotionModel, methods: Sequence[Explainer], configs: dict[str, Any]) -> str:
    """What each method's maps read for this model, one line per method (from the registry)."""
    return "\n".join(f"- **{e.title}**: {e.note(model, configs.get(e.name))}" for e in methods)


def banner_text(served: PendingModel) -> str:
    """The model banner, or while the model is being prepared, how long is left."""
    if served.ready:
        return model_banner(served.get())
    return (
        f"⏳ **{served.status()}** The page works meanwhile: upload a photo now, and press "
        "Explain once the model is ready (this line updates itself)."
    )


def notes_text(served: PendingModel, methods: Sequence[Explainer], configs: dict[str, Any]) -> str:
    """The figures' legend, then (once the model is there) what each method reads of it."""
    if not served.ready:
        return FIGURES_LEGEND
    return f"{FIGURES_LEGEND}\n\n{methods_note(served.get(), methods, configs)}"


def gallery_label(explainer: Explainer) -> str:
    return f"{explainer.title} per emotion"


def captioned_maps(result: FaceResult, method: str) -> list[tuple[np.ndarray, str]]:
    """(overlay, caption) per emotion: 'angry 41%', the map's figures, its faithfulness if
    measured, one line each."""
    figures = result.figures.get(method, {})
    return [
        (image, _lines(text, figure_caption(figures, label), faithfulness_caption(figures, label)))
        for (image, text), label in zip(overlays(result, method), result.maps[method], strict=True)
    ]


def _lines(*texts: str) -> str:
    return "\n".join(text for text in texts if text)


def summary_text(report: Report, result: FaceResult) -> str:
    """Below the maps: each sentence the figures make, the faithfulness figures if asked for,
    then where the time went."""
    lines = [f"⚠️ {sentence}." for sentence in result.sentences]
    faithful = [
        f"{title_of(method)} {fig[DELETION_AUC][result.top]:.2f} / {fig[INSERTION_AUC][result.top]:.2f}"
        for method, fig in result.figures.items()
        if result.top in fig.get(DELETION_AUC, {})
    ]
    if faithful:
        lines.append(
            f"**Faithfulness** of the {result.top} maps (deletion ↓ / insertion ↑): " + " · ".join(faithful)
        )
    lines.append(timings_text(report.timings_ms, result.source))
    return "\n\n".join(lines)


def _photo_or_error(upload: dict | str | None) -> np.ndarray:
    # Events run with preprocess=False: Gradio's own image decoding would answer a file that is
    # not an image with a bare PIL message; ours says what was wrong and what to do.
    path = upload_path(upload)
    if not path:
        raise gr.Error("Upload a photo first (or pick an example below).")
    with said_to_the_user():
        return load_image(path)


@dataclass(frozen=True)
class SeenPhoto:
    """A photo as the upload decoded it, with the faces found in it: what the next press of
    Explain on the same upload reuses instead of decoding and detecting again."""

    path: str
    photo: np.ndarray
    boxes: list[Box]


def upload_path(upload: dict | str | None) -> str | None:
    """The file behind an event's photo input (a FileData dict with preprocess=False, or a path)."""
    return upload.get("path") if isinstance(upload, dict) else upload


def preview_faces(path: dict | str | None):
    """On upload: box and number every face, so the user can choose one; the decoded photo and
    its faces are kept for the press of Explain that follows."""
    if not path:
        return None, 1, None
    photo = _photo_or_error(path)
    with said_to_the_user():  # an OpenCV without the cascade says so here, at the upload
        boxes = detect_faces(photo)
    seen = SeenPhoto(upload_path(path), photo, boxes)
    if not boxes:
        gr.Warning("No face found. Tick 'Use the whole image' to treat the centred square as the face.")
        return photo, 1, seen
    if len(boxes) > 1:
        gr.Info(f"{len(boxes)} faces found, numbered by size. Pick one in 'Face to explain'.")
    return draw_boxes(photo, boxes, 0), 1, seen


@dataclass
class ExplainRequest:
    """One press of Explain, as the page's events read it: the photo, the face, the methods."""

    photo: np.ndarray
    number: int  # the face, numbered from 1 as the page numbers them
    whole_image: bool
    methods: tuple[str, ...]
    faithfulness: bool
    boxes: list[Box] | None = None  # the faces the upload found, None where none were kept

    def where(self) -> dict[str, Any]:
        """The face to explain, as `classify` and `explain` take it."""
        whole_image = "if_no_face" if self.whole_image else "never"
        return {"face": self.number - 1, "whole_image": whole_image, "boxes": self.boxes}


def read_request(
    path: dict | str | None,
    face_number: float | None,
    whole_image: bool,
    picked_methods: Sequence[str] | None,
    faithfulness: bool,
    offered: Sequence[str],
    default_picked: Sequence[str],
    seen: SeenPhoto | None = None,
) -> ExplainRequest:
    """The event's inputs checked, with what to do about each that is wrong. The photo and its
    faces come from `seen` when it holds this upload (the upload event decoded it and found
    them), else the photo is decoded here and the faces found by `classify`."""
    reused = seen is not None and path is not None and seen.path == upload_path(path)
    photo = seen.photo if reused else _photo_or_error(path)
    chosen = tuple(default_picked) if picked_methods is None else tuple(picked_methods)
    unknown = sorted(set(chosen) - set(offered))
    if unknown:
        raise gr.Error(f"Unknown method(s) {', '.join(unknown)}: pick from {', '.join(offered)}.")
    number = 1 if face_number is None else int(face_number)
    boxes = seen.boxes if reused else None
    return ExplainRequest(photo, number, bool(whole_image), chosen, bool(faithfulness), boxes)


@contextmanager
def said_to_the_user(number: int | None = None) -> Iterator[None]:
    """The project's errors as messages on the page, each with what to do; `number` is the face
    the user asked for, as the page numbers faces (from 1)."""
    try:
        yield
    except FaceIndexError as err:
        raise gr.Error(
            f"There is no face {number}: {err.count} face(s) found, numbered from 1 (1 = the largest). "
            f"Enter a number from 1 to {err.count} in 'Face to explain'."
        ) from err
    except ModelNotReadyError as err:  # not a fault: a wait, said as one
        raise gr.Error(str(err), title="Still preparing", print_exception=False) from err
    except TimeLimitError as err:  # a bound of the shared page, not a fault
        raise gr.Error(str(err), title="Time limit", print_exception=False) from err
    except EmotionLensError as err:
        raise gr.Error(str(err)) from err


def galleries_of(report: Report, names: Sequence[str]) -> list[list[tuple[np.ndarray, str]]]:
    """One gallery's items per offered method: its captioned maps, empty where it did not run."""
    result = report.faces[0]
    return [captioned_maps(result, name) if name in result.maps else [] for name in names]


def boxed_photo(request: ExplainRequest, report: Report) -> np.ndarray:
    result = report.faces[0]
    return draw_boxes(request.photo, report.boxes, result.index) if report.boxes else request.photo


def _offered_and_picked(
    methods: Sequence[Explainer], picked: Sequence[Explainer] | None
) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """The names of the methods offered, and of those run when the caller names none (all)."""
    names = tuple(e.name for e in methods)
    return names, names if picked is None else tuple(e.name for e in picked)


def make_explain_fn(
    served: PendingModel,
    methods: Sequence[Explainer],
    configs: dict[str, Any],
    *,
    picked: Sequence[Explainer] | None = None,
):
    """The /explain event: one gallery output per method of `methods` (the picker's choices);
    `picked` (default: all of them) are the methods run when the caller names none. The whole
    result at once, for API callers; the page itself shows it in two steps (`make_first_maps_fn`,
    `make_remaining_maps_fn`)."""
    names, default_picked = _offered_and_picked(methods, picked)

    def explain_face(
        path: dict | str | None,
        face_number: float | None = 1,
        whole_image: bool = False,
        picked_methods: Sequence[str] | None = None,
        faithfulness: bool = False,
        progress=gr.Progress(),
    ):
        """Classify one face of the photo and explain every emotion with each picked method:
        the photo with its boxes, the probabilities, one gallery per method (in the registry's
        order; empty for a method not picked), the figures' sentences and the timings."""
        deadline = Deadline(PHOTO_TIME_LIMIT_S)
        request = read_request(
            path, face_number, whole_image, picked_methods, faithfulness, names, default_picked
        )
        with said_to_the_user(request.number):
            report = explain(
                served.get(),  # while the model is being prepared: how long is left
                request.photo,
                request.methods,
                **request.where(),
                progress=lambda frac, desc: progress(frac, desc=desc),
                deadline=deadline,
                faithfulness=request.faithfulness,
                **configs,
            )
        result = report.faces[0]
        return (
            boxed_photo(request, report),
            result.probs,
            *galleries_of(report, names),
            summary_text(report, result),
        )

    return explain_face


def make_first_maps_fn(
    served: PendingModel,
    methods: Sequence[Explainer],
    configs: dict[str, Any],
    *,
    picked: Sequence[Explainer] | None = None,
):
    """The page's first step (/explain_first): the face classified and the quick methods'
    maps (Grad-CAM), shown while the slow ones (LIME) are computed by the next step, which
    takes the report from the session's state. Outputs as /explain's, then that state."""
    names, default_picked = _offered_and_picked(methods, picked)

    def first_maps(
        path: dict | str | None,
        face_number: float | None = 1,
        whole_image: bool = False,
        picked_methods: Sequence[str] | None = None,
        faithfulness: bool = False,
        seen: SeenPhoto | None = None,
    ):
        """Classify one face of the photo and explain every emotion with the quick methods
        picked: the photo with its boxes, the probabilities, one gallery per method (empty for
        the slow ones, which follow), a line saying what follows. `seen`: what the upload
        decoded and found (the session's state; API callers have none)."""
        request = read_request(
            path, face_number, whole_image, picked_methods, faithfulness, names, default_picked, seen
        )
        quick, slow = split_quick(request.methods)
        with said_to_the_user(request.number):
            model = served.get()
            report = classify(model, request.photo, **request.where())
            add_explanations(model, report, quick, deadline=Deadline(PHOTO_TIME_LIMIT_S), **configs)
        result = report.faces[0]
        following = ", ".join(title_of(name) for name in slow)
        if request.faithfulness:
            following = ", ".join(filter(None, [following, "the faithfulness figures"]))
        summary = summary_text(report, result)
        if following:
            summary = f"*{following} to follow…*\n\n{summary}"
        boxed = boxed_photo(request, report)
        return (boxed, result.probs, *galleries_of(report, names), summary, (request, report))

    return first_maps


def make_remaining_maps_fn(served: PendingModel, methods: Sequence[Explainer], configs: dict[str, Any]):
    """The page's second step (/explain_rest): the slow methods' maps (and the faithfulness
    figures, if asked) added to the first step's report, taken from the session's state.
    Outputs: one gallery per slow method of `methods` (the quick ones' stay as the first step
    left them, free of this step's progress bar), the summary, the emptied state."""
    slow = tuple(e.name for e in methods if not e.quick)

    def remaining_maps(state: tuple[ExplainRequest, Report] | None, progress=gr.Progress()):
        if state is None:
            raise gr.Error("Press Explain first: this step adds the slow methods' maps to its result.")
        request, report = state
        with said_to_the_user(request.number):
            add_explanations(
                served.get(),
                report,
                request.methods,
                progress=lambda frac, desc: progress(frac, desc=desc),
                deadline=Deadline(PHOTO_TIME_LIMIT_S),
                faithfulness=request.faithfulness,
                **configs,
            )
        return (*galleries_of(report, slow), summary_text(report, report.faces[0]), None)

    return remaining_maps


def _video_path(upload: dict | str | None) -> str:
    # gr.Video's payload is {"video": {"path": ...}, "subtitles": ...}; the API also takes a path.
    if isinstance(upload, dict):
        upload = upload.get("video", upload)
        upload = upload.get("path") if isinstance(upload, dict) else upload
    if not upload:
        raise gr.Error("Upload a video first.")
    return str(upload)


def served_file(kind: str, name: str) -> Path:
    """A new path, `name`, in a folder of its own under Gradio's temp folder (files there may be
    served), for a file of `kind`; those that earlier requests left are removed after
    DELETE_CACHE's age."""
    import shutil
    import tempfile
    import time

    folder = Path(tempfile.gettempdir()) / f"emotion-lens-{kind}"
    folder.mkdir(exist_ok=True)
    for old in folder.glob("*/*"):
        if time.time() - old.stat().st_mtime > DELETE_CACHE[1]:
            shutil.rmtree(old.parent, ignore_errors=True)
    return Path(tempfile.mkdtemp(dir=folder)) / name


def csv_download(text: str, name: str) -> Path:
    """`text` in a file Gradio may serve, under a name a user can keep."""
    path = served_file("timelines", name)
    path.write_text(text, encoding="utf-8")
    return path


def make_video_fn(served: PendingModel, limits: VideoLimits = VIDEO_LIMITS):
    """The /explain_video event."""

    def explain_video(upload: dict | str | None, progress=gr.Progress()):
        """Every face of the video tracked: the timeline plot of its five probabilities, a
        summary, the key frames with Grad-CAM (captioned), and the timeline as CSV."""
        path = _video_path(upload)
        with said_to_the_user():
            model = served.get()
            timeline = analyze_video(
                model, path, limits, progress=lambda frac, desc: progress(frac, desc=desc)
            )
        lines = [f"⚠️ {note}" for note in timeline.notes] + timeline.summary()
        lines.append(timings_text(timeline.timings_ms, "video"))
        keys = [(k.image, k.caption()) for k in timeline.key_frames]
        csv = csv_download(timeline_csv(timeline), f"{Path(path).stem}-timeline.csv")
        return timeline_image(timeline), "\n\n".join(lines), keys, str(csv)

    return explain_video


def make_live_fn(served: PendingModel, limit_s: float = LIVE_TIME_LIMIT_S):
    """The live tab's stream event, called with each webcam frame the server is free for."""

    def live_frame(frame: np.ndarray | None, emotion: str | None, stream: LiveStream | None):
        """The frame with every face boxed, its top emotion, and the Grad-CAM of `emotion` ('top
        emotion': each face's own) over it; the largest face's probabilities over the last
        second; a status line (empty while the stream runs); the viewer's stream (faces
        followed between detections, how long it has run)."""
        stream = stream or LiveStream(limit_s=limit_s)
        if frame is None:
            return gr.skip(), gr.skip(), gr.skip(), stream
        picked = None if emotion in (None, TOP_EMOTION) else emotion
        try:
            result = stream.process(served.get(), frame, picked)
        except EmotionLensError as err:
            # Said once, in the status line, which stops the camera: a raised error would come
            # back with every frame the browser goes on sending (its time limit, a model still
            # being prepared, an OpenCV that cannot find faces).
            return gr.skip(), gr.skip(), f"{STOPPED_MARK} {err}", stream
        if result.dropped:  # a frame of the same stream is still being processed
            return gr.skip(), gr.skip(), gr.skip(), stream
        return result.image, result.probabilities or None, "", stream

    return live_frame


def live_snapshot(stream: LiveStream | None) -> tuple[str, Any]:
    """The live view's latest frame saved as a photo for the photo tab, and that tab opened."""
    if stream is None or stream.latest is None:
        raise gr.Error("Start the live view first (Record), then press 'Explain this frame'.")
    path = served_file("snapshots", "live-frame.png")
    cv2.imwrite(str(path), cv2.cvtColor(stream.latest, cv2.COLOR_RGB2BGR))
    return str(path), gr.Tabs(selected=PHOTO_TAB)


def live_emotion_choices(served: PendingModel) -> list[str]:
    labels = served.get().labels if served.ready else EMOTIONS
    return [TOP_EMOTION, *labels]


def model_report(served: PendingModel) -> tuple[str, str]:
    """The served model's shortcut report (training.shortcuts): its words and table (Markdown), its
    pictures (HTML with the PNGs inline: Gradio serves files only from the working and temp
    folders, and a run folder, the demo's in the user cache, may be anywhere)."""
    if not served.ready:
        return f"The model report is shown once the model is ready. {served.status()}", ""
    folder = report_folder_of(served.get())
    if folder is None:
        return no_report_text(), ""
    return model_report_markdown(folder), pictures_html(folder)


def timings_text(timings: dict[str, float], source: str) -> str:
    parts = " · ".join(f"{k} {v:.0f} ms" for k, v in timings.items() if k != "total")
    face = "whole image used as the face · " if source == "whole image" else ""
    return f"{face}**{timings['total']:.0f} ms** in all: {parts}"


def build_demo(
    model: EmotionModel | PendingModel,
    *,
    methods: Sequence[str] | None = None,
    choices: Sequence[str] | None = None,
    live_limit_s: float = LIVE_TIME_LIMIT_S,
    **configs: Any,
) -> gr.Blocks:
    """The page for `model`. Its method picker offers `choices` (None: just `methods`; `python -m
    app` offers every registered method) with `methods` ticked (None: the registry's default
    ones); one gallery per offered method, in the registry's order, shown while it is ticked.
    `configs` are the methods' settings by name (lime=LimeConfig(...)). A live stream stops after
    `live_limit_s` seconds. A `PendingModel` still
    being prepared leaves the page usable: it says how long is left, and requests get that in an
    error until the model is ready."""
    served = model if isinstance(model, PendingModel) else PendingModel.ready_now(model)
    chosen = resolve_methods(methods)
    offered = resolve_methods({e.name for e in chosen} | set(choices or ()))
    check_configs(configs)
    with gr.Blocks(title=TITLE, analytics_enabled=False, delete_cache=DELETE_CACHE) as demo:
        gr.Markdown(
            f"# {TITLE}\nWhich emotion does the network see, and **where does it look for each one?**"
        )
        banner = gr.Markdown(banner_text(served))
        with gr.Tabs() as tabs:
            with gr.Tab("Photo", id=PHOTO_TAB):
                with gr.Row():
                    with gr.Column(scale=1):
                        photo = gr.Image(
                            type="filepath",
                            image_mode=None,
                            label="Photo",
                            sources=["upload", "clipboard", "webcam"],
                        )
                        face_number = gr.Number(
                            value=1, precision=0, minimum=1, label="Face to explain (1 = largest)"
                        )
                        whole = gr.Checkbox(value=False, label="Use the whole image if no face is found")
                        picker = gr.CheckboxGroup(
                            choices=[(e.title, e.name) for e in offered],
                            value=[e.name for e in chosen],
                            label="Methods",
                        )
                        faithful = gr.Checkbox(value=False, label=FAITHFULNESS_LABEL)
                        run = gr.Button("Explain", variant="primary")
                    with gr.Column(scale=1):
                        boxed = gr.Image(label="Faces found (green: explained)", interactive=False)
                        probs = gr.Label(
                            num_top_classes=5, label="Emotion probabilities", elem_classes="emotion-probs"
                        )
                galleries = [
                    gr.Gallery(
                        label=gallery_label(e),
                        columns=5,
                        height="auto",
                        object_fit="contain",
                        elem_classes=["emotion-maps", "method-maps"],  # method-maps: one per method
                        elem_id=f"maps-{e.name}",
                        visible=e in chosen,
                    )
                    for e in offered
                ]
                gr.HTML(colour_scale_html())
                summary = gr.Markdown()
                notes = gr.Markdown(notes_text(served, offered, configs))
                examples = sorted(str(p) for p in EXAMPLES_DIR.glob("*") if p.suffix in (".png", ".jpg"))
                if examples:
                    gr.Examples(examples=[[p] for p in examples], inputs=[photo], label="Examples")

            with gr.Tab("Live", id=LIVE_TAB):
                # Camera and annotated frame side by side on a desktop, one above the other on a
                # phone, before the controls.
                with gr.Row():
                    camera = gr.Image(
                        sources=["webcam"],
                        streaming=True,
                        type="numpy",
                        label="Your camera",
                        elem_id="live-camera",
                    )
                    live_view = gr.Image(
                        label="What the network looks at",
                        format="jpeg",  # a tenth of a PNG's bytes and time, ten times a second
                        interactive=False,
                        elem_id="live-view",
                    )
                no_camera = gr.Markdown(elem_id="no-camera")
                with gr.Row():
                    with gr.Column():
                        live_emotion = gr.Dropdown(
                            choices=live_emotion_choices(served),
                            value=TOP_EMOTION,
                            label="Grad-CAM of",
                            elem_id="live-emotion",
                        )
                        snapshot = gr.Button("Explain this frame", elem_id="live-snapshot")
                        live_status = gr.Markdown(elem_id="live-status")
                    live_probs = gr.Label(
                        num_top_classes=5,
                        label="The largest face, over the last second",
                        elem_id="live-probs",
                    )
                gr.Markdown(live_note(live_limit_s))  # under both columns: after the probabilities on a phone

            with gr.Tab("Video"):
                with gr.Row():
                    with gr.Column(scale=1):
                        video = gr.Video(label="Video", sources=["upload"], format=None)
                        gr.Markdown(f"{VIDEO_LIMITS.describe()} Files up to {MAX_UPLOAD.upper()}.")
                        run_video = gr.Button("Explain video", variant="primary")
                    with gr.Column(scale=2):
                        timeline_plot = gr.Image(
                            label="Emotions over time", interactive=False, elem_classes="timeline"
                        )
                        video_summary = gr.Markdown()
                key_gallery = gr.Gallery(
                    label="Key frames: Grad-CAM of the dominant emotion where it starts, changes and peaks",
                    columns=5,
                    height="auto",
                    object_fit="contain",
                    elem_classes=["emotion-maps", "key-frames"],
                )
                timeline_file = gr.File(label="Timeline (CSV)", interactive=False)

            with gr.Tab("Model report"):
                report_text = gr.Markdown(elem_classes="model-report")
                report_pictures = gr.HTML()
        # Read when the page loads (and by gradio_client as /model_report): the report can be
        # written after the app started (`python -m training.shortcuts` on the served run folder).
        demo.load(
            lambda: model_report(served),
            None,
            [report_text, report_pictures],
            api_name="model_report",
            queue=False,
        )

        # The upload's decoded photo and faces, for the press that follows; dropped after a while
        # so an idle session does not hold a large photo.
        seen = gr.State(None, time_to_live=SEEN_PHOTO_TTL_S)
        photo.change(
            preview_faces, [photo], [boxed, face_number, seen], api_visibility="private", preprocess=False
        )
        picker.change(
            lambda picked: [gr.Gallery(visible=e.name in picked) for e in offered],
            [picker],
            galleries,
            api_visibility="private",
            queue=False,  # shows or hides galleries only: no need to wait behind an explanation
        )
        if not served.ready:
            # Until the model is ready: refresh the banner's time left, then the parts that need
            # the model, and stop.
            timer = gr.Timer(2.0)
            timer.tick(
                lambda: (
                    banner_text(served),
                    notes_text(served, offered, configs),
                    *model_report(served),
                    gr.Timer(active=not served.ready),
                ),
                None,
                [banner, notes, report_text, report_pictures, timer],
                api_visibility="private",
                queue=False,
            )
        # The page shows a press of Explain in two steps, each in a lane of its own: the quick
        # maps (FIRST_LANE) never wait behind another visitor's LIME (EXPLAIN_LANE).
        state = gr.State(None)
        slow_galleries = [g for g, e in zip(galleries, offered, strict=True) if not e.quick]
        first_step = trimmed(make_first_maps_fn(served, offered, configs, picked=chosen))
        second_step = trimmed(make_remaining_maps_fn(served, offered, configs))

        def explain_steps(trigger, *, api: bool) -> None:
            """Both steps, started by `trigger` (an event listener); `api`: named in the API."""
            visibility = "public" if api else "private"
            trigger(
                first_step,
                [photo, face_number, whole, picker, faithful, seen],
                [boxed, probs, *galleries, summary, state],
                api_name="explain_first",
                api_visibility=visibility,
                preprocess=False,  # decoded by emotion.photo.faces.load_image (see _photo_or_error)
                concurrency_limit=1,
                concurrency_id=FIRST_LANE,
            ).success(
                second_step,
                [state],
                [*slow_galleries, summary, state],
                show_progress_on=slow_galleries,  # over the maps to come, not the summary under them
                api_name="explain_rest",
                api_visibility=visibility,
                concurrency_limit=1,  # two explanations at once would only halve each one's speed
                concurrency_id=EXPLAIN_LANE,
            )

        explain_steps(run.click, api=True)
        # The live view's latest frame, explained in full on the photo tab.
        live_state = gr.State(None)
        taken = snapshot.click(live_snapshot, [live_state], [photo, tabs], api_visibility="private")
        explain_steps(taken.success, api=False)
        # The whole result in one call, for gradio_client: the same work as the page's two steps.
        whole_result = gr.Button(visible=False)
        whole_result.click(
            trimmed(make_explain_fn(served, offered, configs, picked=chosen)),
            [photo, face_number, whole, picker, faithful],
            [boxed, probs, *galleries, summary],
            api_name="explain",
            preprocess=False,
            concurrency_limit=1,
            concurrency_id=EXPLAIN_LANE,
        )
        camera.stream(
            make_live_fn(served, live_limit_s),
            [camera, live_emotion, live_state],
            [live_view, live_probs, live_status, live_state],
            api_name="live",
            stream_every=LIVE_EVERY_S,
            time_limit=live_limit_s + LIVE_LIMIT_MARGIN_S,
            concurrency_limit=LIVE_STREAMS,
            concurrency_id=LIVE_LANE,
            show_progress="hidden",
        )
        live_status.change(None, [live_status], None, js=STOP_CAMERA_JS)
        demo.load(None, None, [no_camera], js=NO_CAMERA_JS)
        run_video.click(
            trimmed(make_video_fn(served)),
            [video],
            [timeline_plot, video_summary, key_gallery, timeline_file],
            api_name="explain_video",
            preprocess=False,  # decoded by emotion.video.timeline, which says what is wrong with a file
            concurrency_limit=1,
            concurrency_id=VIDEO_LANE,
        )
    return demo
