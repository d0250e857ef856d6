"""Scores of a map against a ground-truth region: where the evidence really is.

Used where the truth is known: synthetic faces come with masks of the regions that define each
emotion (`training.synthetic.defining_regions`), so `bench.truth` and the meaning tests can ask
of any map, and of controls that ignore the image, the same two questions:

- the pointing game (Zhang et al. 2016): does the map's maximum fall inside the region, within a
  small tolerance? A map that is flat at its top (a binary mask, LIME's segments) has many
  maxima; it scores the share of them inside, i.e. the expected outcome of pointing at one of
  them at random, so a flat map scores what chance gives it (not what the first pixel in memory
  order happens to give) and without the noise of one random draw;
- the share of the map's mass inside the region.
"""

from __future__ import annotations

import cv2
import numpy as np


def pointing_score(heat: np.ndarray, region: np.ndarray, *, tolerance: int = 4) -> float:
    """1.0 if the maximum of `heat` lies within `tolerance` px of `region` (H×W bool), else 0.0;
    for a map with several maxima, the share of them that do. The tolerance: a Grad-CAM cell is
    16 px at stride 16, and the pointing game's usual 15 px at 224 px is about 7 px at 100; 4 px
    keeps a thin brow a target without making the face one."""
    peaks = heat >= heat.max()
    return float(np.count_nonzero(peaks & dilate(region, tolerance)) / np.count_nonzero(peaks))


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
