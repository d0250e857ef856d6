"""What `explain` returns: boxes, probabilities, per-emotion maps and where the time went."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from emotion.faces import Box


@dataclass
class FaceResult:
    index: int  # position in Report.boxes (0 = the largest face)
    box: Box  # where the face is in the photo, before the crop margin
    source: str  # "detected" or "whole image" (no face found, centred square used)
    face: np.ndarray  # the 100×100×3 uint8 crop the model saw
    probs: dict[str, float]  # label → probability; sums to 1
    # method → label → H×W float32 in [0, 1], methods in the registry's order
    maps: dict[str, dict[str, np.ndarray]] = field(default_factory=dict)

    @property
    def top(self) -> str:
        return max(self.probs, key=self.probs.get)

    def to_dict(self) -> dict[str, Any]:
        return {
            "index": self.index,
            "box": self.box.as_list(),
            "source": self.source,
            "top": self.top,
            "probs": {k: round(float(v), 6) for k, v in self.probs.items()},
            "methods": list(self.maps),  # in the registry's order (emotion.explainers.registry)
        }


@dataclass
class Report:
    image_size: tuple[int, int]  # (width, height) of the upright photo
    boxes: list[Box]  # every face found, largest first
    faces: list[FaceResult]  # the faces that were classified and explained
    model: str  # where the model came from
    is_demo_model: bool  # trained on synthetic faces: not for real photos
    cam_layer: str  # the block Grad-CAM read
    timings_ms: dict[str, float] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "image_size": list(self.image_size),
            "boxes": [b.as_list() for b in self.boxes],
            "faces": [f.to_dict() for f in self.faces],
            "model": self.model,
            "is_demo_model": self.is_demo_model,
            "cam_layer": self.cam_layer,
            "timings_ms": {k: round(v, 2) for k, v in self.timings_ms.items()},
        }
