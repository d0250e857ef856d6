"""Emotion Lens core: faces → emotions → per-emotion explanations.

from emotion import load_model, explain, EMOTIONS
report = explain(load_model("user/name"), "photo.jpg")
"""

from emotion.errors import EmotionLensError, ImageError, ModelLoadError, NoFaceError
from emotion.labels import EMOTIONS
from emotion.model import EmotionModel, load_model
from emotion.pipeline import explain
from emotion.report import FaceResult, Report

__all__ = [
    "EMOTIONS",
    "EmotionLensError",
    "EmotionModel",
    "FaceResult",
    "ImageError",
    "ModelLoadError",
    "NoFaceError",
    "Report",
    "explain",
    "load_model",
]
