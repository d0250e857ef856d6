"""Batch augmentation on tensors, on whatever device the batch lives (CPU or GPU).

One affine warp per batch (flip, small rotation, scale and shift) keeps front-facing faces
front-facing while moving every cue a little, so the model cannot key on exact pixel positions.
`swap_backgrounds` is the training option against background shortcuts: faces on each other's
backgrounds, so that no background predicts a class.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F


@dataclass(frozen=True)
class AugmentConfig:
    flip: float = 0.5  # probability of a horizontal flip (emotions are left-right symmetric)
    rotate_deg: float = 10.0  # max absolute in-plane rotation
    scale: float = 0.1  # zoom in [1 - scale, 1 + scale]
    shift: float = 0.08  # max shift as a share of the side
    brightness: float = 0.2  # additive, in normalised units
    contrast: float = 0.2  # multiplicative in [1 - c, 1 + c]
    erase: float = 0.25  # probability of blanking one random rectangle (random erasing)


def augment(x: torch.Tensor, cfg: AugmentConfig, generator: torch.Generator | None = None) -> torch.Tensor:
    """x: N×3×H×W normalised float batch → augmented copy (the input is left untouched)."""
    n, dev = x.shape[0], x.device

    def rand(*shape: int) -> torch.Tensor:
        # Drawn where the generator lives: a generator on the GPU keeps the training step free
        # of host-to-device copies, which would make the host wait for the GPU every step.
        where = generator.device if generator is not None else dev
        return torch.rand(*shape, generator=generator, device=where).to(dev)

    angle = (rand(n) * 2 - 1) * math.radians(cfg.rotate_deg)
    zoom = 1 + (rand(n) * 2 - 1) * cfg.scale
    flip = torch.where(rand(n) < cfg.flip, -1.0, 1.0).to(dev)
    shift = (rand(n, 2) * 2 - 1) * cfg.shift * 2  # affine_grid coordinates span [-1, 1]
    cos, sin = torch.cos(angle) / zoom, torch.sin(angle) / zoom
    theta = torch.stack(
        [torch.stack([cos * flip, -sin, shift[:, 0]], 1), torch.stack([sin * flip, cos, shift[:, 1]], 1)], 1
    )
    grid = F.affine_grid(theta.to(x.dtype), list(x.shape), align_corners=False)
    out = F.grid_sample(x, grid, mode="bilinear", padding_mode="reflection", align_corners=False)
    contrast = 1 + (rand(n, 1, 1, 1) * 2 - 1) * cfg.contrast
    bright = (rand(n, 1, 1, 1) * 2 - 1) * cfg.brightness
    out = out * contrast + bright
    return _random_erase(out, cfg.erase, rand)


def _random_erase(x: torch.Tensor, p: float, rand) -> torch.Tensor:
    if p <= 0:
        return x
    n, _, h, w = x.shape
    # One rectangle of 2–20 % of the image per chosen sample, built as a mask so the whole
    # batch is erased in one vectorised op.
    area = (0.02 + rand(n) * 0.18) * h * w
    aspect = torch.exp((rand(n) * 2 - 1) * math.log(3))
    eh = (area * aspect).sqrt().clamp(1, h)
    ew = (area / aspect).sqrt().clamp(1, w)
    y0 = rand(n) * (h - eh)
    x0 = rand(n) * (w - ew)
    ys = torch.arange(h, device=x.device).view(1, h, 1)
    xs = torch.arange(w, device=x.device).view(1, 1, w)
    inside = (
        (ys >= y0.view(n, 1, 1))
        & (ys < (y0 + eh).view(n, 1, 1))
        & (xs >= x0.view(n, 1, 1))
        & (xs < (x0 + ew).view(n, 1, 1))
    )
    chosen = (rand(n) < p).view(n, 1, 1)
    mask = (inside & chosen).unsqueeze(1)
    return torch.where(mask, torch.zeros((), device=x.device, dtype=x.dtype), x)


def swap_backgrounds(
    faces: torch.Tensor, on_face: torch.Tensor, share: float, generator: torch.Generator | None = None
) -> torch.Tensor:
    """N×3×H×W faces (any dtype) with, on `share` of them chosen at random, every pixel off the
    face (`on_face`: N×1×H×W, or 1×1×H×W for crops that all share one face region) taken from
    another face of the batch. The donors are a random permutation of the batch, so each
    background lands on one face whatever its class: at share 1 a background says nothing of its
    face's class, and a cue in it (a logo, a tint) no longer predicts one. This is "Mixed-Rand" of
    Xiao et al., "Noise or Signal: the role of image backgrounds in object recognition" (ICLR 2021).
    """
    n = faces.shape[0]
    where = generator.device if generator is not None else faces.device
    donors = torch.randperm(n, generator=generator, device=where).to(faces.device)
    chosen = (torch.rand(n, generator=generator, device=where) < share).to(faces.device)
    keep = on_face | ~chosen.view(n, 1, 1, 1)
    return torch.where(keep, faces, faces[donors])
