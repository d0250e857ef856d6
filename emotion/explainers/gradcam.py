"""Grad-CAM for every label at once.

With a global-average-pool + linear head right after the last block (every timm ResNet), the
gradient of class c's logit with respect to that block's output is the constant W[c] / (h·w),
so Grad-CAM there needs no backward pass: each label's map is its weight row applied to the
features the classification forward already computed. That is what `gradcams` does for
such models; pytorch-grad-cam's own `scale_cam_image` does the normalising and resizing, so the
maps equal the library's (checked in tests/test_explain.py to a correlation above 0.99).

Any other head goes through pytorch-grad-cam itself: the face repeated once per label, each
row with its own target, one forward and one backward. Its `with` block releases the hooks even
on error (left attached, they keep every activation alive and leak memory request after request).
"""

from __future__ import annotations

import numpy as np
import torch
from pytorch_grad_cam import GradCAM
from pytorch_grad_cam.utils.image import scale_cam_image
from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

from emotion.explainers.registry import Explainer, Maps, ProgressFn, register
from emotion.model import EmotionModel


def gradcam_explain(
    model: EmotionModel,
    faces: np.ndarray,
    features: torch.Tensor | None,
    progress: ProgressFn | None,
    config: None,
) -> list[Maps]:
    """The registry's signature over `gradcams`: one {label: map} per face."""
    return [dict(zip(model.labels, face_cams, strict=True)) for face_cams in gradcams(model, faces, features)]


def gradcam_note(model: EmotionModel, config: None) -> str:
    """Which layer, at which stride, gives which grid, and how the maps are computed."""
    rows, cols = model.cam_grid
    size = model.preprocessing.input_size
    how = (
        "from the classification forward's features and the head's weights"
        if model.has_pooled_linear_head
        else "with pytorch-grad-cam's backward pass"
    )
    return (
        f"Grad-CAM reads `{model.cam_layer_name}` of {model.architecture} at stride {model.output_stride}: "
        f"a {rows}×{cols} map for a {size}×{size} face (one cell ≈ {size / rows:.0f} px), computed {how}."
    )


def gradcams(model: EmotionModel, faces: np.ndarray, features: torch.Tensor | None = None) -> np.ndarray:
    """N×C×H×W float32 Grad-CAMs in [0, 1] of every label for N faces (N×H×W×3 uint8).

    From the features when the head allows it (computed here if not given), else through
    pytorch-grad-cam's backward pass face by face.
    """
    if not model.has_pooled_linear_head:
        return np.stack([gradcams_by_backprop(model, face) for face in faces])
    if features is None:
        _, features = model.predict_with_features(faces)
    return gradcams_from_features(model, features, faces.shape[1:3])


def gradcams_from_features(model: EmotionModel, features: torch.Tensor, shape: tuple[int, int]) -> np.ndarray:
    """N×C×H×W float32 Grad-CAMs in [0, 1] of every label for N faces, from the last block's
    output. Only valid when `model.has_pooled_linear_head`."""
    weights = model.head_weight.detach().float() / (features.shape[-2] * features.shape[-1])
    with torch.inference_mode():
        cams = torch.relu(torch.einsum("ck,nkhw->nchw", weights, features.float())).cpu().numpy()
    height, width = shape
    # Twice, as pytorch-grad-cam does: min-max and resize per layer, then min-max again after
    # merging layers (bilinear upsampling can lower the peak below 1).
    return np.stack([scale_cam_image(scale_cam_image(face_cams, (width, height))) for face_cams in cams])


def gradcams_by_backprop(model: EmotionModel, face: np.ndarray) -> np.ndarray:
    """C×H×W Grad-CAMs of one face through pytorch-grad-cam's hooks and one backward pass (any
    head, any layer)."""
    return cams_by_library(model, face, GradCAM)


def cams_by_library(
    model: EmotionModel,
    face: np.ndarray,
    cam_class: type = GradCAM,
    *,
    layer: str | None = None,
    **settings: object,
) -> np.ndarray:
    """C×H×W maps of one face from a pytorch-grad-cam CAM method at `layer` (a submodule name,
    default `model.cam_layer`): the face repeated once per label, each row with its own target,
    one call. `settings` are set on the method object (e.g. Score-CAM's batch_size)."""
    n = len(model.labels)
    target = model.cam_layer if layer is None else model.net.get_submodule(layer)
    batch = model.to_tensor(face).repeat(n, 1, 1, 1)
    targets = [ClassifierOutputTarget(i) for i in range(n)]
    # fp32 on purpose: the library reads activations and gradients back through numpy.
    with (
        torch.autocast(model.device.type, enabled=False),
        cam_class(model=model.net, target_layers=[target]) as cam,
    ):
        for name, value in settings.items():
            setattr(cam, name, value)
        maps = cam(input_tensor=batch, targets=targets)
    model.net.zero_grad(set_to_none=True)
    return np.stack([_to_face_size(m, face.shape[:2]) for m in maps])


def _to_face_size(cam: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    if cam.shape != shape:
        import cv2

        cam = cv2.resize(cam, (shape[1], shape[0]), interpolation=cv2.INTER_LINEAR)
    return np.clip(cam, 0.0, 1.0).astype(np.float32)


GRADCAM = register(Explainer("gradcam", "Grad-CAM", gradcam_explain, gradcam_note))
