"""Per-emotion explanations: Grad-CAM, LIME, their overlays, and the `explain` pipeline."""

from emotion.explainers.gradcam import gradcam_maps
from emotion.explainers.lime import LimeConfig, lime_maps

__all__ = ["LimeConfig", "gradcam_maps", "lime_maps"]
