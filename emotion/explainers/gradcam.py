"""Grad-CAM for every label at once, at two depths.

**The default Grad-CAM reads the stage at stride 8** (`model.gradcam_layer_name`, `layer2` in
timm's ResNets at output_stride 16: a 13×13 map on a 100-px face). At the last stage each cell
sees the whole face, so its peak says little about which feature the label used; at stride 8 the
peak falls on the brow, eye or mouth that defines the emotion far more often (the pointing game,
`python -m bench.truth`; figures in docs/findings.md). `stage_gradcams` computes it with one
forward that keeps the stage's output and one batched backward for all labels: the same maps as
pytorch-grad-cam's `GradCAM` at that layer (tests/test_saliency.py) without repeating the face
once per label.

**The last stage's Grad-CAM** (`last_stage_gradcams`; the opt-in method "gradcam_last") needs no
backward pass: with a global-average-pool + linear head right after the last block (every timm
ResNet), the gradient of class c's logit with respect to that block's output is the constant
W[c] / (h·w), so each label's map is its weight row applied to the features the classification
forward already computed. That makes it cheap enough for the video path (every frame) and the
training report (mean maps over hundreds of faces). pytorch-grad-cam's own `scale_cam_image` does
the normalising and resizing, so the maps equal the library's (tests/test_fast_explain.py). Any
other head goes through pytorch-grad-cam itself: the face repeated once per label, each row with
its own target, one forward and one backward. Its `with` block releases the hooks even on error
(left attached, they keep every activation alive and leak memory request after request).
"""

from __future__ import annotations

import numpy as np
import torch
from pytorch_grad_cam import GradCAM
from pytorch_grad_cam.utils.image import scale_cam_image
from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

from emotion.explainers.registry import Explainer, Maps, ProgressFn, register
from emotion.model import EmotionModel

FACES_PER_BACKWARD = 16  # bounds the kept activations and gradients (C copies of the stage's output)


def gradcam_explain(
    model: EmotionModel,
    faces: np.ndarray,
    features: torch.Tensor | None,
    progress: ProgressFn | None,
    config: None,
) -> list[Maps]:
    """The registry's signature over `stage_gradcams` at the stride-8 stage: one {label: map} per face."""
    return _label_maps(model, default_gradcams(model, faces))


def _label_maps(model: EmotionModel, cams: np.ndarray) -> list[Maps]:
    """N×C×H×W maps → one {label: H×W map} per face, as the registry's methods return them."""
    return [dict(zip(model.labels, face_cams, strict=True)) for face_cams in cams]


def gradcam_note(model: EmotionModel, config: None) -> str:
    """Which layer, at which stride, gives which grid, and why not the last stage."""
    rows, cols = model.gradcam_grid
    size = model.preprocessing.input_size
    last_rows, last_cols = model.last_stage_grid
    return (
        f"Grad-CAM reads `{model.gradcam_layer_name}` of {model.architecture} at stride "
        f"{model.gradcam_stride}: a {rows}×{cols} map for a {size}×{size} face, one backward pass "
        f"for all labels. Not the last stage (`{model.last_stage_layer_name}`, {last_rows}×{last_cols}): "
        "each of its cells sees the whole face, so its peak rarely picks out a brow, an eye or the "
        "mouth."
    )


def default_gradcams(model: EmotionModel, faces: np.ndarray) -> np.ndarray:
    """N×C×H×W: the default Grad-CAM (the stride-8 stage) of every label for N faces."""
    return stage_gradcams(model, faces, model.gradcam_layer_name)


def last_stage_explain(
    model: EmotionModel,
    faces: np.ndarray,
    features: torch.Tensor | None,
    progress: ProgressFn | None,
    config: None,
) -> list[Maps]:
    """The registry's signature over `last_stage_gradcams` (the last stage): one {label: map} per face."""
    return _label_maps(model, last_stage_gradcams(model, faces, features))


def last_stage_note(model: EmotionModel, config: None) -> str:
    """Which layer, at which stride, gives which grid, and how the maps are computed."""
    rows, cols = model.last_stage_grid
    size = model.preprocessing.input_size
    how = (
        "from the classification forward's features and the head's weights"
        if model.has_pooled_linear_head
        else "with pytorch-grad-cam's backward pass"
    )
    return (
        f"Grad-CAM reads `{model.last_stage_layer_name}` of {model.architecture} at stride "
        f"{model.output_stride}: a {rows}×{cols} map for a {size}×{size} face "
        f"(one cell ≈ {size / rows:.0f} px), computed {how}."
    )


def stage_gradcams(model: EmotionModel, faces: np.ndarray, layer: str) -> np.ndarray:
    """N×C×H×W float32 Grad-CAMs in [0, 1] of every label for N faces at `layer` (a submodule
    name): pytorch-grad-cam's GradCAM arithmetic (gradients averaged over the map, weighted sum,
    ReLU, `scale_cam_image` twice), with the C backward passes batched by torch."""
    if len(faces) == 0:
        height, width = faces.shape[1:3] if faces.ndim == 4 else (0, 0)
        return np.zeros((0, len(model.labels), height, width), np.float32)
    return np.concatenate(
        [
            _stage_gradcams(model, faces[start : start + FACES_PER_BACKWARD], model.net.get_submodule(layer))
            for start in range(0, len(faces), FACES_PER_BACKWARD)
        ]
    )


def _stage_gradcams(model: EmotionModel, faces: np.ndarray, layer: torch.nn.Module) -> np.ndarray:
    kept: list[torch.Tensor] = []
    hook = layer.register_forward_hook(lambda module, inputs, output: kept.append(output))
    try:
        # fp32 and the unfolded network, as pytorch-grad-cam runs it; grad on even when a caller
        # is in no_grad.
        with torch.enable_grad(), torch.autocast(model.device.type, enabled=False):
            logits = model.net(model.to_tensor(faces))
            activations = kept[-1]
            n, c = logits.shape
            # Row k of the batch of cotangents asks for label k's logit, on every face at once
            # (the faces do not interact in eval mode).
            one_hot = torch.eye(c, device=logits.device).unsqueeze(1).expand(c, n, c)
            (grads,) = torch.autograd.grad(logits, activations, grad_outputs=one_hot, is_grads_batched=True)
    finally:
        hook.remove()
    weights = grads.mean(dim=(-2, -1), keepdim=True)  # C×N×K×1×1
    cams = torch.relu((weights * activations.detach()).sum(dim=2)).transpose(0, 1)
    return _scaled_to_faces(cams, faces.shape[1:3])


def last_stage_gradcams(
    model: EmotionModel, faces: np.ndarray, features: torch.Tensor | None = None
) -> np.ndarray:
    """N×C×H×W float32 Grad-CAMs in [0, 1] of every label for N faces (N×H×W×3 uint8).

    From the features when the head allows it (computed here if not given), else through
    pytorch-grad-cam's backward pass face by face.
    """
    if not model.has_pooled_linear_head:
        return np.stack([last_stage_gradcams_by_backprop(model, face) for face in faces])
    if features is None:
        _, features = model.predict_with_features(faces)
    return last_stage_gradcams_from_features(model, features, faces.shape[1:3])


def last_stage_gradcams_from_features(
    model: EmotionModel, features: torch.Tensor, shape: tuple[int, int]
) -> np.ndarray:
    """N×C×H×W float32 Grad-CAMs in [0, 1] of every label for N faces, from the last block's
    output. Only valid when `model.has_pooled_linear_head`."""
    weights = model.head_weight.detach().float() / (features.shape[-2] * features.shape[-1])
    with torch.inference_mode():
        cams = torch.relu(torch.einsum("ck,nkhw->nchw", weights, features.float()))
    return _scaled_to_faces(cams, shape)


def _scaled_to_faces(cams: torch.Tensor, shape: tuple[int, int]) -> np.ndarray:
    """N×C×h×w raw maps → N×C×H×W in [0, 1], as pytorch-grad-cam scales them."""
    height, width = shape
    # Twice, as pytorch-grad-cam does: min-max and resize per layer, then min-max again after
    # merging layers (bilinear upsampling can lower the peak below 1).
    return np.stack(
        [scale_cam_image(scale_cam_image(face_cams, (width, height))) for face_cams in cams.cpu().numpy()]
    )


def last_stage_gradcams_by_backprop(model: EmotionModel, face: np.ndarray) -> np.ndarray:
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
    default `model.last_stage_layer`): the face repeated once per label, each row with its own target,
    one call. `settings` are set on the method object (e.g. Score-CAM's batch_size)."""
    n = len(model.labels)
    target = model.last_stage_layer if layer is None else model.net.get_submodule(layer)
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


GRADCAM = register(Explainer("gradcam", "Grad-CAM", gradcam_explain, gradcam_note, quick=True))
