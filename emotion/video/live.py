"""A live stream, one frame at a time as a webcam sends them: every face boxed with its top
emotion, the chosen emotion's last-stage Grad-CAM over it, and the largest face's probabilities
averaged over the last second, as the video timeline smooths them.

One `LiveStream` per viewer. It follows faces between detections (`emotion.video.locate`), and
it drops a frame that arrives while the one before is still being processed: the latest frame
wins, since a queue of webcam frames would only fall further behind the person in front of it.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from emotion.model import EmotionModel
from emotion.photo.faces import Box, DetectConfig
from emotion.video.frames import VIDEO_DETECT, analyze_frame, annotate_frame
from emotion.video.locate import FaceLocator

SMOOTH_S = 1.0  # as the video timeline's smoothing (VideoLimits.smooth_s)


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
    """One viewer's stream: where its faces are, their recent probabilities, what was dropped."""

    detect: DetectConfig = VIDEO_DETECT
    smooth_s: float = SMOOTH_S
    clock: Callable[[], float] = time.monotonic
    processed: int = field(init=False, default=0)
    dropped: int = field(init=False, default=0)
    _locator: FaceLocator = field(init=False)
    _recent: deque = field(init=False, default_factory=deque)
    _busy: threading.Lock = field(init=False, default_factory=threading.Lock)

    def __post_init__(self) -> None:
        self._locator = FaceLocator(self.detect)

    def process(self, model: EmotionModel, frame: np.ndarray, emotion: str | None = None) -> LiveFrame:
        """The frame (H×W×3 uint8 RGB) annotated with each face's top emotion and the Grad-CAM
        of `emotion` (None: each face's top one); a frame that comes while another is being
        processed is dropped."""
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
