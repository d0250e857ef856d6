"""Per-emotion explanations: Grad-CAM, LIME, their overlays, and the `explain` pipeline."""

from emotion.explain.gradcam import gradcam_maps
from emotion.explain.lime import LimeConfig, lime_maps

__all__ = ["LimeConfig", "gradcam_maps", "lime_maps"]
