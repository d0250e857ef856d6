"""The gradient family the seed used in Keras-Vis, beside Grad-CAM and LIME (none runs by default).

- **Grad-CAM at the last stage**: the map most Grad-CAM tools draw, from the classification
  forward (`emotion.explainers.gradcam`). Each of its cells sees the whole 100-px face: on the
  shipped demo model its peak falls on the regions that define the emotion for 52 % of unseen
  faces, against 94.0–97.3 % for the default Grad-CAM at the stride-8 stage (`python -m bench.truth`).
- **Grad-CAM++** and **Score-CAM**: class activation maps at the Grad-CAM layer, from
  pytorch-grad-cam (`GradCAMPlusPlus`, `ScoreCAM`).
- **Guided backprop**: pytorch-grad-cam's `GuidedBackpropReLUModel`, run on a copy of the
  network (it swaps the ReLUs), one target per backward pass. Known to show edges whatever the
  class (Adebayo et al. 2018): a figure to compare with, not to trust.
- **Guided Grad-CAM**: guided backprop × Grad-CAM, as in the Grad-CAM paper.
- **Vanilla saliency** and **SmoothGrad**: |∂ logit / ∂ pixel|, the largest over the colour
  channels; SmoothGrad averages it over noisy copies of the face. pytorch-grad-cam has neither,
  and each is a single backward pass, so they are written here.

Every map is min-max scaled to [0, 1] and sized to the face by pytorch-grad-cam's own
`scale_cam_image`. All run in fp32 (the library reads activations and gradients through numpy).
"""

from __future__ import annotations

import copy
import types
from dataclasses import dataclass
from functools import partial

import numpy as np
import torch
import tqdm
from pytorch_grad_cam import GradCAMPlusPlus, GuidedBackpropReLUModel, ScoreCAM, score_cam
from pytorch_grad_cam.utils.image import scale_cam_image

from emotion.explainers.gradcam import (
    cams_by_library,
    last_stage_explain,
    last_stage_gradcams,
    last_stage_note,
)
from emotion.explainers.registry import Explainer, Maps, ProgressFn, register
from emotion.model import EmotionModel

# Score-CAM wraps its channel loop in a tqdm bar it offers no switch for; a server would print
# one per request (as lime_image does, see lime.py).
score_cam.tqdm = types.SimpleNamespace(tqdm=partial(tqdm.tqdm, disable=True))
SCORECAM_BATCH = 64  # masked faces per forward: the library's 16 leaves the CPU half idle


@dataclass(frozen=True)
class SmoothGradConfig:
    samples: int = 16  # noisy copies averaged
    noise: float = 0.15  # noise σ as a share of the face's value range (the paper's 10-20 %)
    seed: int = 0  # fixed, so the same face gives the same map


def _per_face(model: EmotionModel, faces: np.ndarray, progress: ProgressFn | None, face_maps) -> list[Maps]:
    out = []
    for i, face in enumerate(faces):
        out.append(dict(zip(model.labels, face_maps(face), strict=True)))
        if progress:
            progress((i + 1) / len(faces), f"face {i + 1}/{len(faces)}")
    return out


def _scaled(maps: np.ndarray, face: np.ndarray) -> np.ndarray:
    """C×h×w maps → C×H×W float32 in [0, 1] at the face's size."""
    height, width = face.shape[:2]
    return scale_cam_image(maps, (width, height)).astype(np.float32)


def input_gradients(
    model: EmotionModel, face: np.ndarray, *, noise: float = 0.0, samples: int = 1, seed: int = 0
):
    """C×H×W: for every label, |∂ logit / ∂ input| (largest over the colour channels), averaged
    over `samples` copies of the face with Gaussian noise of σ = noise × the input's range."""
    n = len(model.labels)
    x = model.to_tensor(face)
    sigma = noise * float(x.max() - x.min())
    gen = torch.Generator(device=x.device).manual_seed(seed)
    total = torch.zeros(n, *x.shape[1:], device=x.device)
    was_training = model.net.training
    model.net.eval()
    with torch.autocast(model.device.type, enabled=False):
        for _ in range(samples):
            noisy = x + sigma * torch.randn(x.shape, generator=gen, device=x.device) if sigma else x
            batch = noisy.repeat(n, 1, 1, 1).requires_grad_(True)
            logits = model.net(batch)
            # Row c's logit c: one backward gives every label's gradient.
            logits[torch.arange(n), torch.arange(n)].sum().backward()
            total += batch.grad.abs()
    model.net.zero_grad(set_to_none=True)
    model.net.train(was_training)
    return _scaled((total / samples).amax(dim=1).cpu().numpy(), face)


def guided_backprop(model: EmotionModel, face: np.ndarray) -> np.ndarray:
    """C×H×W guided-backprop maps, |gradient| largest over the colour channels."""
    # A copy: the library swaps the network's ReLUs in place and puts back plain ones.
    guided = GuidedBackpropReLUModel(copy.deepcopy(model.net).eval(), device=model.device)
    x = model.to_tensor(face)
    with torch.autocast(model.device.type, enabled=False):
        maps = [np.abs(guided(x.clone(), target_category=c)).max(axis=2) for c in range(len(model.labels))]
    return _scaled(np.stack(maps), face)


def guided_gradcam(model: EmotionModel, face: np.ndarray) -> np.ndarray:
    """C×H×W: guided backprop × Grad-CAM, per label."""
    return _scaled(guided_backprop(model, face) * last_stage_gradcams(model, face[None])[0], face)


def _register_opt_in(name: str, title: str, face_maps, note: str, config=None) -> Explainer:
    """Register a method that runs only when named. `face_maps(model, face, config)` gives C×H×W
    maps of one face; `note` is formatted with the model's {layer} and {size} and the {config}."""

    def run(model, faces, features, progress, config) -> list[Maps]:
        return _per_face(model, faces, progress, lambda face: face_maps(model, face, config))

    def describe(model: EmotionModel, config) -> str:
        return note.format(
            layer=model.last_stage_layer_name, size=model.preprocessing.input_size, config=config
        )

    return register(Explainer(name, title, run, describe, config=config, default=False))


# Beside the default (the stride-8 stage), to compare with: the map most Grad-CAM tools draw.
GRADCAM_LAST = register(
    Explainer(
        "gradcam_last",
        "Grad-CAM (last stage)",
        last_stage_explain,
        last_stage_note,
        default=False,
        quick=True,
    )
)
GRADCAM_PLUS_PLUS = _register_opt_in(
    "gradcam_pp",
    "Grad-CAM++",
    lambda model, face, _: cams_by_library(model, face, GradCAMPlusPlus),
    "Grad-CAM++ (pytorch-grad-cam) at `{layer}`: Grad-CAM with higher-order gradient weights.",
)
SCORE_CAM = _register_opt_in(
    "scorecam",
    "Score-CAM",
    lambda model, face, _: cams_by_library(model, face, ScoreCAM, batch_size=SCORECAM_BATCH),
    "Score-CAM (pytorch-grad-cam) at `{layer}`: each channel weighted by the score of the face "
    "masked with it; one forward per channel, no gradients.",
)
GUIDED_BACKPROP = _register_opt_in(
    "guided_backprop",
    "Guided backprop",
    lambda model, face, _: guided_backprop(model, face),
    "Guided backprop (pytorch-grad-cam): pixel gradients through ReLUs that pass only positive "
    "gradients; sharp, but known to change little with the class or the weights.",
)
GUIDED_GRADCAM = _register_opt_in(
    "guided_gradcam",
    "Guided Grad-CAM",
    lambda model, face, _: guided_gradcam(model, face),
    "Guided Grad-CAM: guided backprop × the Grad-CAM at `{layer}`, pixel-sharp and class-specific.",
)
SALIENCY = _register_opt_in(
    "saliency",
    "Vanilla saliency",
    lambda model, face, _: input_gradients(model, face),
    "Vanilla saliency: |∂ emotion logit / ∂ pixel| on the {size}×{size} face, one backward pass.",
)
SMOOTHGRAD = _register_opt_in(
    "smoothgrad",
    "SmoothGrad",
    lambda model, face, c: input_gradients(model, face, noise=c.noise, samples=c.samples, seed=c.seed),
    "SmoothGrad: vanilla saliency averaged over {config.samples} copies of the face with "
    "Gaussian noise (σ = {config.noise:.0%} of its range).",
    config=SmoothGradConfig(),
)
