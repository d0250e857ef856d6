"""Faces found in a stream of frames without running the cascade on every frame.

The Haar cascade is most of a frame's cost at video rate, and a face moves only a few pixels
from one frame to the next. So the cascade runs every `detect_every` frames; in between, each
face is looked for near where it was, by matching a small grey copy of it as the cascade last
saw it (OpenCV's normalised cross-correlation). When a face cannot be matched well enough (it
turned, left the frame, or something crossed it), the cascade runs on that frame at once, so
a lost face costs one detection, not a wrong box. While no face is known, the cascade runs on
every frame, so a face that walks in is found at once. The template is not updated between
detections: a template that follows its own matches drifts off the face.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import cv2
import numpy as np

from emotion.photo.faces import Box, DetectConfig, detect_faces
from emotion.video.identity import iou


@dataclass(frozen=True)
class LocateConfig:
    # The cascade runs on every k-th frame at least. On bench.video's 60 frames, 4 finds 116 of
    # the 120 planted faces (the cascade on every frame: 98; every 6th: 114; every 10th: 110).
    detect_every: int = 4
    # Normalised cross-correlation below which a face counts as lost. On bench.video's stream a
    # face matched 1-3 frames after its detection scored 0.93 or more (median 0.97, 114
    # matches); the same place painted over with the noisy backdrop scored 0.08.
    min_score: float = 0.7
    reach: float = 0.25  # how far a face is looked for, as a share of its box's side, each way
    template_side: int = 24  # faces are matched on grey copies this small: cheap, and enough


SAME_FACE_IOU = 0.3  # a followed box overlapping a new detection this much is that face


@dataclass
class _Located:
    box: Box
    template: np.ndarray  # grey, template_side wide


@dataclass
class FaceLocator:
    """Boxes of the faces in each frame of one stream, in order (keep one per stream)."""

    detect: DetectConfig
    config: LocateConfig = LocateConfig()
    detections: int = 0  # how many frames the cascade ran on, for the benchmark
    _faces: list[_Located] = field(default_factory=list)
    _since_detection: int = 0

    def boxes(self, frame: np.ndarray) -> list[Box]:
        """The faces of this frame (H×W×3 uint8 RGB), the next one of the stream."""
        self._since_detection += 1
        followed = [self._match(frame, face) for face in self._faces]
        if self._faces and self._since_detection < self.config.detect_every and None not in followed:
            for face, box in zip(self._faces, followed, strict=True):
                face.box = box
            return [face.box for face in self._faces]
        return self._detect(frame, [box for box in followed if box is not None])

    def _detect(self, frame: np.ndarray, still_matched: list[Box]) -> list[Box]:
        """The cascade's boxes, plus the faces still matched well that it missed this time: the
        cascade misses a face now and then (a frame in ten here), following does not."""
        found = detect_faces(frame, self.detect)
        kept = [box for box in still_matched if all(iou(box, other) < SAME_FACE_IOU for other in found)]
        boxes = sorted(found + kept, key=lambda box: box.area, reverse=True)  # largest first, as detected
        self._faces = [_Located(box, self._grey(frame, box)) for box in boxes]
        self._since_detection = 0
        self.detections += 1
        return boxes

    def _grey(self, frame: np.ndarray, box: Box) -> np.ndarray:
        side = self.config.template_side
        patch = frame[box.y : box.y + box.h, box.x : box.x + box.w]
        return cv2.cvtColor(cv2.resize(patch, (side, side), interpolation=cv2.INTER_AREA), cv2.COLOR_RGB2GRAY)

    def _match(self, frame: np.ndarray, face: _Located) -> Box | None:
        """The face's box in this frame, same size, or None where it cannot be matched."""
        box, height, width = face.box, *frame.shape[:2]
        reach_x, reach_y = round(box.w * self.config.reach), round(box.h * self.config.reach)
        x0, y0 = max(box.x - reach_x, 0), max(box.y - reach_y, 0)
        x1, y1 = min(box.x + box.w + reach_x, width), min(box.y + box.h + reach_y, height)
        if x1 - x0 < box.w or y1 - y0 < box.h:
            return None  # the face is leaving the frame: let the cascade decide
        scale = self.config.template_side / box.w
        size = (round((x1 - x0) * scale), round((y1 - y0) * scale))
        window = cv2.resize(frame[y0:y1, x0:x1], size, interpolation=cv2.INTER_AREA)
        grey = cv2.cvtColor(window, cv2.COLOR_RGB2GRAY)
        scores = cv2.matchTemplate(grey, face.template, cv2.TM_CCOEFF_NORMED)
        _, best, _, (bx, by) = cv2.minMaxLoc(scores)
        if best < self.config.min_score:
            return None
        return Box(x0 + round(bx / scale), y0 + round(by / scale), box.w, box.h)
