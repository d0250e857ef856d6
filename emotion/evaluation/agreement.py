"""How alike two explanations are: the figures the speed-ups are held to.

LIME is compared segment by segment on one segmentation (top-k overlap and rank correlation of
the weights), Grad-CAM pixel by pixel (correlation of the maps).
"""

from __future__ import annotations

import numpy as np
from scipy.stats import spearmanr


def top_k_overlap(a: np.ndarray, b: np.ndarray, k: int = 5) -> float:
    """Share of the k highest-weighted segments two weight vectors have in common (1 = same set)."""
    return len(set(np.argsort(-a)[:k]) & set(np.argsort(-b)[:k])) / k


def flat_agreement(a: np.ndarray, b: np.ndarray) -> float | None:
    """The convention every similarity here follows when a map or weight vector is flat (nothing
    to rank or correlate): 1.0 for two flat, equal ones, 0.0 for a flat one against any other,
    so a map collapsed to a constant counts as different, not as a missing value. None when both
    vary."""
    if np.ptp(a) and np.ptp(b):
        return None
    return 1.0 if np.allclose(a, b) else 0.0


def rank_correlation(a: np.ndarray, b: np.ndarray) -> float:
    """Spearman correlation of two vectors (or maps, pixel by pixel), flat ones as
    `flat_agreement` says."""
    a, b = np.ravel(a).astype(np.float64), np.ravel(b).astype(np.float64)
    flat = flat_agreement(a, b)
    return flat if flat is not None else float(spearmanr(a, b).statistic)


def lime_agreement(a: np.ndarray, b: np.ndarray, k: int = 5) -> dict[str, float]:
    """Mean over labels of top-k overlap and rank correlation of two C×S LIME weight arrays."""
    if a.shape != b.shape:
        raise ValueError(f"LIME weights of different shapes {a.shape} and {b.shape}: use one segmentation.")
    return {
        "top_k_overlap": float(np.mean([top_k_overlap(x, y, k) for x, y in zip(a, b, strict=True)])),
        "rank_correlation": float(np.mean([rank_correlation(x, y) for x, y in zip(a, b, strict=True)])),
    }


def map_correlation(a: np.ndarray, b: np.ndarray) -> float:
    """Pearson correlation of two maps, flat ones (ReLU left nothing) as `flat_agreement` says."""
    a, b = np.ravel(a).astype(np.float64), np.ravel(b).astype(np.float64)
    flat = flat_agreement(a, b)
    return flat if flat is not None else float(np.corrcoef(a, b)[0, 1])
