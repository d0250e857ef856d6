"""What `explain` returns: boxes, probabilities, per-emotion maps and where the time went."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from emotion.photo.faces import Box, DetectConfig
from emotion.storage.files import rounded_for_json


@dataclass
class FaceResult:
    index: int  # position in Report.boxes (0 = the largest face)
    box: Box  # where the face is in the photo, before the crop margin
    source: str  # "detected" or "whole image" (no face found, centred square used)
    face: np.ndarray  # the 100×100×3 uint8 crop the model saw
    probs: dict[str, float]  # label → probability; sums to 1
    # method → label → H×W float32 in [0, 1], methods in the registry's order
    maps: dict[str, dict[str, np.ndarray]] = field(default_factory=dict)
    # method → figure → label → value (emotion.explainers.figures): background_share per label
    # (detected faces only), fit_r2 per label (LIME), deletion_auc / insertion_auc for the top
    # label (only when faithfulness was asked for)
    figures: dict[str, dict[str, dict[str, float]]] = field(default_factory=dict)
    # what the figures say in words: "angry is read mostly from the background: …"
    sentences: list[str] = field(default_factory=list)

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
            "figures": {method: rounded_for_json(fig) for method, fig in self.figures.items()},
            "sentences": list(self.sentences),
        }


@dataclass
class Report:
    image_size: tuple[int, int]  # (width, height) of the upright photo
    boxes: list[Box]  # every face found, largest first
    faces: list[FaceResult]  # the faces that were classified and explained
    model: str  # where the model came from
    is_demo_model: bool  # trained on synthetic faces: not for real photos
    gradcam_layer: str  # the block the default Grad-CAM read
    timings_ms: dict[str, float] = field(default_factory=dict)
    crop_margin: float = DetectConfig().margin  # the share of a detected box added around it when cut
    # The classification forward's last-block output (N×K×h×w), which spares Grad-CAM at the last
    # stage a forward when maps are added later (emotion.photo.pipeline.add_explanations); not saved.
    features: Any = field(default=None, repr=False, compare=False)

    def to_dict(self) -> dict[str, Any]:
        return {
            "image_size": list(self.image_size),
            "boxes": [b.as_list() for b in self.boxes],
            "faces": [f.to_dict() for f in self.faces],
            "model": self.model,
            "is_demo_model": self.is_demo_model,
            "gradcam_layer": self.gradcam_layer,
            "timings_ms": {k: round(v, 2) for k, v in self.timings_ms.items()},
        }
