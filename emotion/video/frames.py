"""Frames in, faces with emotions and Grad-CAMs out, at video rate.

Per frame: the cascade on a downscaled copy, every face cut as in the photo path, then one
batched forward that gives the probabilities and, from the same features, every label's
Grad-CAM (see explainers/gradcam.py). LIME stays out: it needs hundreds of forwards per face.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

import cv2
import numpy as np

from emotion.errors import ImageError
from emotion.explainers.gradcam import last_stage_gradcams
from emotion.explainers.render import blend, caption
from emotion.model import EmotionModel
from emotion.photo.faces import Box, DetectConfig, crop_face, detect_faces, square_around
from emotion.timing import timed
from emotion.video.locate import FaceLocator

T = TypeVar("T")

# Faces in a webcam or film frame fill a good part of it: the cascade on a ≤288-px copy (its
# 24-px window is then ~53 px of a 640×480 frame, hence min_size 60) finds as many faces as the
# photo settings on the full frame at under half the cost (bench/video.py matches both paths'
# boxes to the planted faces: 98 and 94 of 120 on its 60 frames, no false positives).
VIDEO_DETECT = DetectConfig(scale_factor=1.1, min_size=60, max_side=288)


# Frames whose faces share one forward: the network does a face in 5.2 ms at 8 a batch but in
# 8.6 ms at 2 (demo model, 2 CPU cores). On bench.video's stream (2 faces a frame), 8 frames a
# forward ran at 68 frames/s, 4 at 61-63, 1 at 48; for a file, 8 frames' delay costs nothing.
FRAMES_PER_FORWARD = 8


@dataclass
class FrameFaces:
    """What one frame holds, largest face first: the Haar boxes, the squares the crops were cut
    from, the N×S×S×3 crops, N×C probabilities and N×C×S×S Grad-CAMs (every label, over each
    square)."""

    boxes: list[Box]
    squares: list[Box]
    crops: np.ndarray
    probabilities: np.ndarray
    last_stage_gradcams: np.ndarray
    timings_ms: dict[str, float] = field(default_factory=dict)


def analyze_frame(
    model: EmotionModel,
    frame: np.ndarray,
    detect: DetectConfig = VIDEO_DETECT,
    locator: FaceLocator | None = None,
) -> FrameFaces:
    """Detect, classify and Grad-CAM every face of one H×W×3 uint8 RGB frame."""
    return analyze_frames(model, [frame], detect, locator)[0]


def analyze_frames(
    model: EmotionModel,
    frames: Sequence[np.ndarray],
    detect: DetectConfig = VIDEO_DETECT,
    locator: FaceLocator | None = None,
) -> list[FrameFaces]:
    """`analyze_frame` for a few consecutive frames at once: the faces of all of them go through
    one forward (see FRAMES_PER_FORWARD). With a `locator` (one per stream, built with the same
    `detect`, frames given in order), faces are followed from the frames before and the cascade
    runs only now and then (see emotion/video/locate.py). Each frame's timings carry its own detection
    and an equal share of the shared forward and Grad-CAM."""
    for frame in frames:
        if frame.ndim != 3 or frame.shape[2] != 3 or frame.dtype != np.uint8:
            raise ImageError(f"A frame must be an H×W×3 uint8 RGB array; got {frame.dtype} {frame.shape}.")
    size = model.preprocessing.input_size
    timings: list[dict[str, float]] = [{} for _ in frames]
    boxes: list[list[Box]] = []
    for frame, frame_timings in zip(frames, timings, strict=True):
        with timed(frame_timings, "detect"):
            boxes.append(locator.boxes(frame) if locator else detect_faces(frame, detect))
    shared: dict[str, float] = {}
    with timed(shared, "classify"):
        crops = np.zeros((sum(map(len, boxes)), size, size, 3), np.uint8)
        faces = (
            (frame, box) for frame, frame_boxes in zip(frames, boxes, strict=True) for box in frame_boxes
        )
        for crop, (frame, box) in zip(crops, faces, strict=True):
            crop[:] = crop_face(frame, box, margin=detect.margin, size=size)
    probabilities, cams = _probabilities_and_cams(model, crops, shared)
    results, start = [], 0
    for frame_boxes, frame_timings in zip(boxes, timings, strict=True):
        for part, ms in shared.items():
            frame_timings[part] = ms / len(frames)
        frame_timings["total"] = sum(frame_timings.values())
        stop = start + len(frame_boxes)
        squares = [square_around(box, detect.margin) for box in frame_boxes]
        results.append(
            FrameFaces(
                frame_boxes,
                squares,
                crops[start:stop],
                probabilities[start:stop],
                cams[start:stop],
                frame_timings,
            )
        )
        start = stop
    return results


def _probabilities_and_cams(
    model: EmotionModel, crops: np.ndarray, timings: dict[str, float]
) -> tuple[np.ndarray, np.ndarray]:
    """N×C probabilities and N×C×S×S Grad-CAMs of N crops, one forward for all (none for none);
    the forward's time is added to `timings["classify"]`, the maps' to `timings["gradcam"]`."""
    labels, size = len(model.labels), crops.shape[1]
    probabilities = np.zeros((0, labels), np.float32)
    cams = np.zeros((0, labels, size, size), np.float32)
    with timed(timings, "classify"):
        if len(crops):
            probabilities, features = model.predict_with_features(crops)
    with timed(timings, "gradcam"):
        if len(crops):
            cams = last_stage_gradcams(model, crops, features)
    return probabilities, cams


def annotate_frame(
    frame: np.ndarray, faces: FrameFaces, labels: tuple[str, ...], *, emotion: str | None = None
) -> np.ndarray:
    """A copy of the frame with each face's top emotion, its box, and the Grad-CAM of `emotion`
    (None: that face's top emotion) blended over the square the face was cut from; where the map
    is another emotion's than the top one, the caption names it too ("angry 90% (map: sad 2%)")."""
    if emotion is not None and emotion not in labels:
        raise ValueError(f"Unknown emotion {emotion!r}: the model's are {', '.join(labels)}.")
    out = frame.copy()
    height, width = out.shape[:2]
    for box, sq, probs, cams in zip(
        faces.boxes, faces.squares, faces.probabilities, faces.last_stage_gradcams, strict=True
    ):
        top = int(np.argmax(probs))
        shown = top if emotion is None else labels.index(emotion)
        heat = cv2.resize(cams[shown], (sq.w, sq.h), interpolation=cv2.INTER_LINEAR)
        x0, y0 = max(sq.x, 0), max(sq.y, 0)
        x1, y1 = min(sq.x + sq.w, width), min(sq.y + sq.h, height)
        if x1 > x0 and y1 > y0:
            heat = heat[y0 - sq.y : y1 - sq.y, x0 - sq.x : x1 - sq.x]
            out[y0:y1, x0:x1] = blend(out[y0:y1, x0:x1], heat, alpha=0.35)
        cv2.rectangle(out, (box.x, box.y), (box.x + box.w, box.y + box.h), (40, 200, 60), 2)
        text = caption(labels[top], probs[top])
        if shown != top:
            text = f"{text} (map: {caption(labels[shown], probs[shown])})"
        cv2.putText(out, text, (box.x, max(14, box.y - 6)), cv2.FONT_HERSHEY_SIMPLEX, 0.6, (40, 200, 60), 2)
    return out


def open_video(path: str | Path) -> cv2.VideoCapture:
    """An opened capture of a video file, or ImageError saying what to use instead."""
    capture = cv2.VideoCapture(str(path))
    if not capture.isOpened():
        raise ImageError(
            f"Cannot open {path} as a video: use a file OpenCV's FFmpeg reads (MP4, AVI, MKV, WebM)."
        )
    return capture


def frames(capture: cv2.VideoCapture) -> Iterator[np.ndarray]:
    """RGB frames of an opened capture, in order; the capture is released at the end."""
    try:
        while True:
            ok, bgr = capture.read()
            if not ok:
                return
            yield cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
    finally:
        capture.release()


def read_frames(path: str | Path) -> Iterator[np.ndarray]:
    """RGB frames of a video file, in order."""
    yield from frames(open_video(path))


def batches(items: Iterable[T], size: int) -> Iterator[list[T]]:
    """`items` in lists of `size`, the last one shorter if need be."""
    batch: list[T] = []
    for item in items:
        batch.append(item)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch
