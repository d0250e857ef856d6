"""Grad-CAM for every label at once, with pytorch-grad-cam.

The face is repeated once per label and each row gets its own target, so one forward and one
backward give all the maps. The `with` block releases the library's hooks even on error (left
attached, they keep every activation alive and leak memory request after request).
"""

from __future__ import annotations

import numpy as np
import torch
from pytorch_grad_cam import GradCAM
from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

from emotion.model import EmotionModel


def gradcam_maps(model: EmotionModel, face: np.ndarray) -> dict[str, np.ndarray]:
    """{label: H×W float32 map in [0, 1]} at the face's resolution, from `model.cam_layer`."""
    n = len(model.labels)
    batch = model.to_tensor(face).repeat(n, 1, 1, 1)
    targets = [ClassifierOutputTarget(i) for i in range(n)]
    # fp32 on purpose: the library reads activations and gradients back through numpy.
    with (
        torch.autocast(model.device.type, enabled=False),
        GradCAM(model=model.net, target_layers=[model.cam_layer]) as cam,
    ):
        maps = cam(input_tensor=batch, targets=targets)
    model.net.zero_grad(set_to_none=True)
    return {label: _to_face_size(m, face.shape[:2]) for label, m in zip(model.labels, maps, strict=True)}


def _to_face_size(cam: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    if cam.shape != shape:
        import cv2

        cam = cv2.resize(cam, (shape[1], shape[0]), interpolation=cv2.INTER_LINEAR)
    return np.clip(cam, 0.0, 1.0).astype(np.float32)


def cam_grid_size(model: EmotionModel) -> tuple[int, int]:
    """The resolution of the layer Grad-CAM reads, for the page's note (7×7 at 100×100)."""
    size = model.preprocessing.input_size
    with torch.inference_mode():
        feats = model.net.forward_features(torch.zeros(1, 3, size, size, device=model.device))
    return int(feats.shape[-2]), int(feats.shape[-1])
