"""Per-emotion explanations: Grad-CAM, LIME, their overlays and how alike two of them are.

The `explain` pipeline that runs them lives in `emotion.pipeline`.
"""

from emotion.explainers.gradcam import gradcam_maps
from emotion.explainers.lime import LimeConfig, lime_maps

__all__ = ["LimeConfig", "gradcam_maps", "lime_maps"]
