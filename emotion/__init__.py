"""Emotion Lens core: faces → emotions → per-emotion explanations.

    from emotion import load_model, explain, EMOTIONS
    report = explain(load_model("user/name"), "photo.jpg")

The heavy names are imported on first use (PEP 562): tools that only need `EMOTIONS`, the
errors or `emotion.photo.faces` (the labelling page, the extraction workers, the synthetic generator)
start without loading torch and timm. The explainers live in `emotion.explainers`, so no
subpackage shadows the `explain` function.
"""

from importlib import import_module
from typing import TYPE_CHECKING

from emotion.errors import (
    EmotionLensError,
    FaceIndexError,
    ImageError,
    ModelLoadError,
    NoFaceError,
    UnknownMethodError,
)
from emotion.labels import EMOTIONS

_LAZY = {
    "EmotionModel": "emotion.model",
    "load_model": "emotion.storage.model_folder",
    "explain": "emotion.photo.pipeline",
    "FaceResult": "emotion.photo.report",
    "Report": "emotion.photo.report",
}

if TYPE_CHECKING:
    from emotion.model import EmotionModel
    from emotion.photo.pipeline import explain
    from emotion.photo.report import FaceResult, Report
    from emotion.storage.model_folder import load_model


def __getattr__(name: str):
    if name in _LAZY:
        return getattr(import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'emotion' has no attribute {name!r}")


__all__ = [
    "EMOTIONS",
    "EmotionLensError",
    "EmotionModel",
    "FaceIndexError",
    "FaceResult",
    "ImageError",
    "ModelLoadError",
    "NoFaceError",
    "Report",
    "UnknownMethodError",
    "explain",
    "load_model",
]
