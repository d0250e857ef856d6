"""Scores of a map against a ground-truth region: where the evidence really is.

Used where the truth is known: synthetic faces come with masks of the regions that define each
emotion (`training.synthetic.defining_regions`), so `bench.truth` and the meaning tests can ask
of any map, and of controls that ignore the image, the same two questions:

- the pointing game (Zhang et al. 2016): does the map's maximum fall inside the region, within a
  small tolerance? A map that is flat at its top (a binary mask, LIME's segments) points at a
  pixel drawn at random among its maxima, so a flat map scores what chance gives it, not what the
  first pixel in memory order happens to give;
- the share of the map's mass inside the region.
"""

from __future__ import annotations

import cv2
import numpy as np


def pointing_hit(heat: np.ndarray, region: np.ndarray, *, tolerance: int = 4, rng=None) -> bool:
    """True if the maximum of `heat` lies within `tolerance` px of `region` (H×W bool). The
    tolerance: a Grad-CAM cell is 16 px at stride 16, and the pointing game's usual 15 px at 224
    px is about 7 px at 100; 4 px keeps a thin brow a target without making the face one."""
    rng = np.random.default_rng(0) if rng is None else rng
    target = dilate(region, tolerance)
    peaks = np.flatnonzero(heat.ravel() >= heat.max())
    return bool(target.ravel()[peaks[rng.integers(len(peaks))]])


def region_share(heat: np.ndarray, region: np.ndarray) -> float:
    """Share of the map's mass inside `region`; nan for a map that is zero everywhere."""
    total = float(heat.sum(dtype=np.float64))
    return float(heat[region].sum(dtype=np.float64) / total) if total > 0 else float("nan")


def dilate(region: np.ndarray, pixels: int) -> np.ndarray:
    """`region` grown by `pixels` in every direction (a disc)."""
    if pixels <= 0:
        return region.astype(bool)
    disc = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * pixels + 1, 2 * pixels + 1))
    return cv2.dilate(region.astype(np.uint8), disc).astype(bool)


def centred_blob(size: int = 100, *, sigma: float = 15.0) -> np.ndarray:
    """A Gaussian blob in the middle of the crop, peak 1: a control map that knows only that
    faces are centred."""
    axis = np.arange(size) - (size - 1) / 2
    return np.exp(-(axis[:, None] ** 2 + axis[None, :] ** 2) / (2 * sigma**2)).astype(np.float32)
