"""A live stream, one frame at a time as a webcam sends them: every face boxed with its top
emotion, the chosen emotion's last-stage Grad-CAM over it, and the largest face's probabilities
averaged over the last second, as the video timeline smooths them.

One `LiveStream` per viewer. It follows faces between detections (`emotion.video.locate`), and
it drops a frame that arrives while the one before is still being processed: the latest frame
wins, since a queue of webcam frames would only fall further behind the person in front of it.
With `limit_s`, a run of frames (frames less than `pause_s` apart) lasts that long: its later
frames raise `TimeLimitError`, until a pause starts a new run.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from emotion.errors import TimeLimitError
from emotion.model import EmotionModel
from emotion.photo.faces import Box, DetectConfig
from emotion.video.frames import VIDEO_DETECT, analyze_frame, annotate_frame
from emotion.video.locate import FaceLocator

SMOOTH_S = 1.0  # as the video timeline's smoothing (VideoLimits.smooth_s)
# A viewer who stopped their camera sends nothing: a gap this long between frames ends a run.
# Longer than the time between frames a browser sends (0.1-0.5 s), shorter than a person takes
# to press Stop, then Record.
PAUSE_S = 1.0


@dataclass
class LiveFrame:
    """What one frame gave: the annotated frame (None when the frame was dropped), the faces'
    boxes (largest first) and the largest face's probabilities averaged over the last
    `SMOOTH_S` seconds ({} with no face)."""

    image: np.ndarray | None
    boxes: list[Box]
    probabilities: dict[str, float]
    dropped: bool = False


@dataclass
class LiveStream:
    """One viewer's stream: where its faces are, their recent probabilities, what was dropped,
    the latest frame received (what a snapshot takes), and how long the current run has lasted
    (`limit_s`: how long one may; None: no limit)."""

    detect: DetectConfig = VIDEO_DETECT
    smooth_s: float = SMOOTH_S
    limit_s: float | None = None
    pause_s: float = PAUSE_S
    clock: Callable[[], float] = time.monotonic
    processed: int = field(init=False, default=0)
    dropped: int = field(init=False, default=0)
    latest: np.ndarray | None = field(init=False, default=None)
    _locator: FaceLocator = field(init=False)
    _recent: deque = field(init=False, default_factory=deque)
    _busy: threading.Lock = field(init=False, default_factory=threading.Lock)
    _run_started: float | None = field(init=False, default=None)
    _last_seen: float | None = field(init=False, default=None)

    def __post_init__(self) -> None:
        self._locator = FaceLocator(self.detect)

    def process(self, model: EmotionModel, frame: np.ndarray, emotion: str | None = None) -> LiveFrame:
        """The frame (H×W×3 uint8 RGB) annotated with each face's top emotion and the Grad-CAM
        of `emotion` (None: each face's top one); a frame that comes while another is being
        processed is dropped. TimeLimitError once the run has lasted `limit_s`."""
        self._check_run_time()
        self.latest = frame
        if not self._busy.acquire(blocking=False):
            self.dropped += 1
            return LiveFrame(None, [], {}, dropped=True)
        try:
            faces = analyze_frame(model, frame, self.detect, self._locator)
            image = annotate_frame(frame, faces, model.labels, emotion=emotion)
            smoothed = self._smoothed(faces.probabilities[0] if faces.boxes else None)
            self.processed += 1
            named = {} if smoothed is None else dict(zip(model.labels, map(float, smoothed), strict=True))
            return LiveFrame(image, faces.boxes, named)
        finally:
            self._busy.release()

    def _check_run_time(self) -> None:
        now = self.clock()
        if self._last_seen is None or now - self._last_seen > self.pause_s:
            self._run_started = now
        self._last_seen = now
        if self.limit_s is not None and now - self._run_started > self.limit_s:
            raise TimeLimitError(
                f"The live view stopped after {self.limit_s:.0f} s, so that others get a turn: "
                "press Record to start again."
            )

    def _smoothed(self, probabilities: np.ndarray | None) -> np.ndarray | None:
        """The mean of the largest face's probabilities over the last `smooth_s` seconds; with no
        face the memory is cleared, so a face that comes back starts afresh."""
        now = self.clock()
        if probabilities is None:
            self._recent.clear()
            return None
        self._recent.append((now, probabilities))
        while self._recent and now - self._recent[0][0] > self.smooth_s:
            self._recent.popleft()
        return np.mean([p for _, p in self._recent], axis=0)
