"""A video's emotions over time: every face tracked, its five probabilities smoothed, the
frames where its emotion changes or peaks shown with Grad-CAM, and the whole as CSV.

The video is read in order and analysed at `VideoLimits.sample_fps` (every k-th frame is
decoded, the others only grabbed); the analysed frames go through `emotion.video.frames.analyze_frames`
a few at a time (cascade, crops, one forward for all their faces) and
`emotion.video.identity.FaceTracker` gives each face its number. The key frames carry the photo tab's
Grad-CAM (the stride-8 stage), computed for those frames only.
"""

from __future__ import annotations

import csv
import io
import itertools
import logging
import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

import cv2
import numpy as np
from PIL import Image

from emotion.errors import VideoError
from emotion.explainers.gradcam import default_gradcams
from emotion.explainers.render import overlay
from emotion.model import EmotionModel
from emotion.photo.faces import Box, DetectConfig
from emotion.storage.files import pyplot
from emotion.storage.media import HEAD_BYTES, audio_kind
from emotion.timing import Deadline, timed
from emotion.video.frames import FRAMES_PER_FORWARD, VIDEO_DETECT, analyze_frames, batches
from emotion.video.identity import FaceTracker

log = logging.getLogger(__name__)

ProgressFn = Callable[[float, str], None]


@dataclass(frozen=True)
class VideoLimits:
    """What one request may ask of the server; the page shows these."""

    # A 30-s clip at 5 analysed frames a second is 150 frames, about 10 s of work on 2 CPU cores.
    # Longer videos are read up to here and the rest is left out, said in the notes.
    max_seconds: float = 30.0
    # Each decoded frame is copied and scanned: a 4K frame costs 4× a 1080p one for no better
    # faces (detection runs on a ≤288-px copy). Larger videos are refused with how to downscale.
    # Portrait or landscape alike: the longer side is capped.
    max_side: int = 1920
    # Faces change expression over a few tenths of a second: 5 frames a second follows them.
    sample_fps: float = 5.0
    # The moving average over about one second: a single blink or a missed detection does not
    # flip the dominant emotion.
    smooth_s: float = 1.0
    # A request's wall-clock limit; past it the frames read so far are reported, with a note.
    time_limit_s: float | None = 120.0
    max_key_frames: int = 10

    def describe(self) -> str:
        return (
            f"Videos up to {self.max_side} pixels on the longer side (1080p); the first "
            f"{self.max_seconds:.0f} s are read, {self.sample_fps:g} frames a second analysed"
            + (f", within {self.time_limit_s:.0f} s of work." if self.time_limit_s else ".")
        )


@dataclass(frozen=True)
class VideoInfo:
    path: Path
    width: int
    height: int
    fps: float
    frame_count: int  # as the container says; 0 when it does not know

    @property
    def duration_s(self) -> float | None:
        return self.frame_count / self.fps if self.frame_count > 0 else None


# A change of dominant emotion is one only when the new emotion leads by 10 points (smoothed):
# between two near-equal emotions (an untrained model's 0.21 against 0.20) the top one flips from
# frame to frame, and each flip would be called a change and shown as a key frame.
SWITCH_MARGIN = 0.1


@dataclass
class FaceTimeline:
    """One tracked face: per analysed frame where it was found, its time, box, probabilities
    (raw and smoothed), its crop and every label's Grad-CAM (uint8, 255 = the map's maximum)."""

    number: int
    frame_numbers: np.ndarray
    times_s: np.ndarray
    boxes: list[Box]
    probabilities: np.ndarray  # n×C
    smoothed: np.ndarray  # n×C
    crops: np.ndarray  # n×S×S×3 uint8

    def dominant(self, margin: float = SWITCH_MARGIN) -> np.ndarray:
        """The dominant emotion's index at each of the face's frames: the smoothed top emotion at
        the first, then the same until another one's smoothed probability leads it by `margin`."""
        current = int(np.argmax(self.smoothed[0]))
        out = np.empty(len(self.smoothed), np.int64)
        for i, probs in enumerate(self.smoothed):
            top = int(np.argmax(probs))
            if probs[top] - probs[current] >= margin:
                current = top
            out[i] = current
        return out


@dataclass
class KeyFrame:
    face: int
    time_s: float
    frame_number: int
    label: str
    probability: float
    why: str
    image: np.ndarray  # the face with that label's Grad-CAM

    def caption(self) -> str:
        return (
            f"{format_time(self.time_s)} · face {self.face}\n{self.label} {self.probability:.0%} · {self.why}"
        )


@dataclass
class Timeline:
    labels: tuple[str, ...]
    info: VideoInfo
    analysed_times_s: np.ndarray
    faces: list[FaceTimeline]
    key_frames: list[KeyFrame]
    notes: list[str] = field(default_factory=list)
    timings_ms: dict[str, float] = field(default_factory=dict)

    def summary(self) -> list[str]:
        """One sentence per tracked face: how long it was seen and its dominant emotions."""
        lines = []
        for face in self.faces:
            shares = np.bincount(face.dominant(), minlength=len(self.labels)) / len(face.times_s)
            order = [i for i in np.argsort(-shares) if shares[i] > 0]
            mostly = ", ".join(f"{self.labels[i]} {shares[i]:.0%}" for i in order)
            lines.append(
                f"Face {face.number}: seen {format_time(face.times_s[0])}–{format_time(face.times_s[-1])} "
                f"in {len(face.times_s)} analysed frames; dominant emotion {mostly} of the time."
            )
        return lines


def format_time(seconds: float) -> str:
    return f"{int(seconds // 60)}:{seconds % 60:04.1f}"


def probe_video(path: str | Path, limits: VideoLimits = VideoLimits()) -> VideoInfo:
    """What the file is, or VideoError saying what is wrong with it and what to do."""
    path = Path(path)
    if not path.is_file():
        raise VideoError(f"No video file at {path}: check the path.")
    if path.stat().st_size == 0:
        raise VideoError(f"{path.name} is empty (0 bytes): upload the video again.")
    kind = _image_kind(path)
    if kind:
        raise VideoError(f"{path.name} is an image ({kind}), not a video: explain it in the 'Photo' tab.")
    capture = cv2.VideoCapture(str(path))
    try:
        if not capture.isOpened():
            audio = _audio_kind(path)
            if audio:  # FFmpeg does not open a file without a video stream: say what it is
                raise VideoError(
                    f"{path.name} is an audio file ({audio}) with no picture: "
                    "upload a video with faces in it."
                )
            raise VideoError(
                f"{path.name} is not a readable video: use an MP4, WebM, AVI or MKV file "
                "(if it is one, it may be cut short or damaged)."
            )
        width = int(capture.get(cv2.CAP_PROP_FRAME_WIDTH))
        height = int(capture.get(cv2.CAP_PROP_FRAME_HEIGHT))
        fps = capture.get(cv2.CAP_PROP_FPS)
        count = int(max(capture.get(cv2.CAP_PROP_FRAME_COUNT), 0))
        if width <= 0 or height <= 0:
            raise VideoError(f"{path.name} has no picture (an audio file?): upload a video with faces in it.")
        if max(width, height) > limits.max_side:
            raise VideoError(
                f"{path.name} is {width}×{height} pixels; the page reads videos up to "
                f"{limits.max_side} pixels on the longer side. Downscale it first, e.g. "
                "`ffmpeg -i in.mp4 -vf scale=1280:-2 out.mp4`."
            )
        if not capture.grab():
            raise _undecodable(path)
    finally:
        capture.release()
    if not (math.isfinite(fps) and 0 < fps <= 240):
        log.warning("%s says it runs at %r frames/s: assuming 25.", path.name, fps)
        fps = 25.0
    return VideoInfo(path, width, height, float(fps), count)


def _image_kind(path: Path) -> str | None:
    """The image format if the file is a still image under a video's name, else None.

    FFmpeg opens a PNG or JPEG as a one-frame "video": it would be analysed as one, while the user
    most likely picked the wrong file or the wrong tab."""
    try:
        with Image.open(path) as img:
            return img.format
    # Pillow's plugins raise more than their documented errors on other bytes (NotImplementedError
    # from DDS: tests/test_hostile.py's fuzz): all mean "not an image".
    except Exception:
        return None


def _audio_kind(path: Path) -> str | None:
    """The audio format the file's first bytes announce, else None."""
    with open(path, "rb") as f:
        return audio_kind(f.read(HEAD_BYTES))


def analyze_video(
    model: EmotionModel,
    path: str | Path,
    limits: VideoLimits = VideoLimits(),
    *,
    detect: DetectConfig = VIDEO_DETECT,
    progress: ProgressFn | None = None,
) -> Timeline:
    """The timeline of every face in the video at `path`: see the module's docstring."""
    info = probe_video(path, limits)
    tracker = FaceTracker()
    seen: dict[int, list[tuple]] = {}
    analysed: list[float] = []
    notes: list[str] = []
    timings: dict[str, float] = {}
    expected = min(info.frame_count or math.inf, math.ceil(limits.max_seconds * info.fps))
    with timed(timings, "total"):
        for batch in batches(sampled_frames(info, limits, notes, timings), FRAMES_PER_FORWARD):
            results = analyze_frames(model, [frame for _, frame in batch], detect)
            for (number, _), faces in zip(batch, results, strict=True):
                for key, value in faces.timings_ms.items():
                    if key != "total":
                        timings[key] = timings.get(key, 0.0) + value
                numbers = tracker.update(len(analysed), faces.boxes)
                analysed.append(number / info.fps)
                for track, box, crop, probs in zip(
                    numbers, faces.boxes, faces.crops, faces.probabilities, strict=True
                ):
                    seen.setdefault(track, []).append((number, number / info.fps, box, probs, crop))
            if progress is not None:
                number = batch[-1][0]
                progress(min(number / expected, 1.0), f"frame {number + 1} of about {expected}")
    if not analysed:
        raise _undecodable(info.path)
    window = max(1, round(limits.smooth_s * limits.sample_fps))
    faces = [_face_timeline(n, rows, window) for n, rows in sorted(seen.items())]
    if not faces:
        notes.append(
            "No face was found in any analysed frame: the detector looks for front-facing faces "
            "at least 60 px tall in a 640×480 frame."
        )
    with timed(timings, "key frames"):
        keys = key_frames(faces, model.labels, limits.max_key_frames, partial(default_gradcams, model))
    return Timeline(model.labels, info, np.asarray(analysed), faces, keys, notes, timings)


def sampled_frames(
    info: VideoInfo, limits: VideoLimits, notes: list[str], timings: dict[str, float]
) -> Iterator[tuple[int, np.ndarray]]:
    """(frame number, RGB frame) of every k-th frame (`limits.sample_fps` a second) within the
    length cap and the time limit; the others are only grabbed, not decoded. Where it stops
    early, a sentence saying why is added to `notes`."""
    deadline = Deadline(limits.time_limit_s)
    step = max(1, round(info.fps / limits.sample_fps))
    last_frame = math.ceil(limits.max_seconds * info.fps)
    capture = cv2.VideoCapture(str(info.path))
    try:
        for number in itertools.count():
            if number >= last_frame:
                if capture.grab():
                    notes.append(
                        f"Only the first {limits.max_seconds:.0f} s were read: "
                        "the page's cap on video length."
                    )
                return
            if number % step:
                if not capture.grab():
                    return
                continue
            if number and deadline.passed():  # the first frame always: something to show
                notes.append(
                    f"Stopped at {format_time(number / info.fps)}: the request reached its limit of "
                    f"{limits.time_limit_s:.0f} s of work. Upload a shorter clip for the rest."
                )
                return
            with timed(timings, "decode"):
                ok, bgr = capture.read()
            if not ok:
                return
            yield number, cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
    finally:
        capture.release()


def _undecodable(path: Path) -> VideoError:
    return VideoError(
        f"No frame of {path.name} could be decoded: the file may be cut short, or use a codec "
        "this server's FFmpeg lacks. Re-encode it as H.264 MP4 or VP8/VP9 WebM."
    )


def _face_timeline(number: int, rows: list[tuple], window: int) -> FaceTimeline:
    frame_numbers, times, boxes, probs, crops = zip(*rows, strict=True)
    probabilities = np.stack(probs).astype(np.float32)
    return FaceTimeline(
        number,
        np.asarray(frame_numbers),
        np.asarray(times, dtype=np.float64),
        list(boxes),
        probabilities,
        moving_average(probabilities, window),
        np.stack(crops),
    )


def moving_average(values: np.ndarray, window: int) -> np.ndarray:
    """Centred moving average along axis 0; near the ends, over the samples there are."""
    if window <= 1 or len(values) < 2:
        return values.copy()
    kernel = np.ones(window)
    pad = window // 2
    sums = np.stack([np.convolve(col, kernel, mode="full")[pad : pad + len(col)] for col in values.T], axis=1)
    counts = np.convolve(np.ones(len(values)), kernel, mode="full")[pad : pad + len(values)]
    return (sums / counts[:, None]).astype(values.dtype)


def key_frames(
    faces: list[FaceTimeline],
    labels: tuple[str, ...],
    limit: int,
    gradcams: Callable[[np.ndarray], np.ndarray],
) -> list[KeyFrame]:
    """For each face, longest-seen first: where its dominant emotion starts, where it changes,
    and where each emotion it shows peaks; at most `limit` in all, in time order per face. Each
    is drawn with its emotion's map from `gradcams` (N crops → N×C×H×W in [0, 1]), computed for
    the picked frames only."""
    picked = _pick_key_frames(faces, labels, limit)
    if not picked:
        return []
    maps = gradcams(np.stack([face.crops[i] for face, i, _, _ in picked]))
    return [
        KeyFrame(
            face.number,
            float(face.times_s[i]),
            int(face.frame_numbers[i]),
            labels[top],
            float(face.smoothed[i, top]),
            why,
            overlay(face.crops[i], face_maps[top]),
        )
        for (face, i, top, why), face_maps in zip(picked, maps, strict=True)
    ]


def _pick_key_frames(
    faces: list[FaceTimeline], labels: tuple[str, ...], limit: int
) -> list[tuple[FaceTimeline, int, int, str]]:
    """(face, frame index, dominant label index, why) of each key frame, as `key_frames` picks them."""
    picked: list[tuple[FaceTimeline, int, int, str]] = []
    for face in sorted(faces, key=lambda f: -len(f.times_s)):
        dominant = face.dominant()
        reasons: dict[int, str] = {0: f"start: {labels[dominant[0]]}"}
        for i in np.flatnonzero(dominant[1:] != dominant[:-1]) + 1:
            reasons[int(i)] = f"{labels[dominant[i - 1]]} → {labels[dominant[i]]}"
        for label in np.unique(dominant):
            peak = int(np.argmax(face.smoothed[:, label]))
            reasons.setdefault(peak, f"peak of {labels[label]}")
        for i in sorted(reasons):
            if len(picked) >= limit:
                return picked
            picked.append((face, int(i), int(dominant[i]), reasons[i]))
    return picked


def timeline_csv(timeline: Timeline) -> str:
    """One row per face per analysed frame: time, frame, face, box, raw and smoothed
    probabilities, dominant emotion."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    labels = timeline.labels
    writer.writerow(
        ["time_s", "frame", "face", "x", "y", "w", "h"]
        + [f"p_{label}" for label in labels]
        + [f"smoothed_{label}" for label in labels]
        + ["dominant"]
    )
    rows = []
    for face in timeline.faces:
        dominant = face.dominant()
        for i, box in enumerate(face.boxes):
            rows.append(
                [f"{face.times_s[i]:.3f}", int(face.frame_numbers[i]), face.number, *box.as_list()]
                + [f"{p:.4f}" for p in face.probabilities[i]]
                + [f"{p:.4f}" for p in face.smoothed[i]]
                + [labels[dominant[i]]]
            )
    writer.writerows(sorted(rows, key=lambda r: (float(r[0]), r[2])))
    return out.getvalue()


# Fixed colours per emotion, so the same emotion has the same colour in every plot.
LABEL_COLOURS = {
    "happy": "#e6a700",
    "sad": "#1f77b4",
    "neutral": "#7f7f7f",
    "angry": "#d62728",
    "surprised": "#9467bd",
}


def label_colour(label: str, index: int) -> str:
    import matplotlib

    return LABEL_COLOURS.get(label, matplotlib.colormaps["tab10"](index % 10))


def timeline_figure(timeline: Timeline, *, max_faces: int = 3):
    """A matplotlib figure: per face (the `max_faces` seen longest), the smoothed probabilities
    over time as lines, the raw ones as faint dots, and a strip on top coloured by the dominant
    emotion."""
    plt = pyplot()
    shown = sorted(timeline.faces, key=lambda f: -len(f.times_s))[:max_faces]
    rows = max(1, len(shown))
    fig, axes = plt.subplots(rows, 1, figsize=(9, 2.6 * rows + 0.6), squeeze=False, sharex=True)
    times = timeline.analysed_times_s
    end = float(times[-1]) if len(times) else 1.0
    period = float(np.median(np.diff(times))) if len(times) > 1 else 1.0  # one analysed frame
    for ax, face in zip(axes[:, 0], shown, strict=False):
        for c, label in enumerate(timeline.labels):
            colour = label_colour(label, c)
            ax.plot(face.times_s, face.probabilities[:, c], ".", color=colour, alpha=0.25, markersize=4)
            ax.plot(face.times_s, face.smoothed[:, c], "-", color=colour, linewidth=2, label=label)
        for t, d in zip(face.times_s, face.dominant(), strict=True):
            colour = label_colour(timeline.labels[d], d)
            ax.axvspan(t - period / 2, t + period / 2, ymin=0.94, ymax=1.0, color=colour, lw=0)
        ax.set_ylim(0, 1.08)
        ax.set_xlim(0, max(end, 1e-3))
        ax.set_ylabel("probability")
        ax.set_title(
            f"Face {face.number} (top strip: dominant emotion, smoothed over ~1 s)", fontsize=10, loc="left"
        )
        ax.grid(alpha=0.3)
    if not shown:
        axes[0, 0].text(0.5, 0.5, "No face found in the analysed frames", ha="center", va="center")
        axes[0, 0].set_axis_off()
    else:
        # At the left, above the title, in rows of three: a phone shows the plot's left part
        # first (it scrolls sideways there), and one centred row was cut off at "neut…".
        axes[0, 0].legend(
            loc="lower left",
            bbox_to_anchor=(0.0, 1.1),
            ncol=3,
            frameon=False,
            borderaxespad=0.0,
            handlelength=1.5,
        )
    axes[-1, 0].set_xlabel("time (s)")
    fig.tight_layout()
    return fig


def timeline_image(timeline: Timeline) -> np.ndarray:
    """`timeline_figure` as an RGB array; the figure is closed (a server draws one per request)."""
    import matplotlib.pyplot as plt

    fig = timeline_figure(timeline)
    try:
        fig.canvas.draw()
        return np.asarray(fig.canvas.buffer_rgba())[:, :, :3].copy()
    finally:
        plt.close(fig)
