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


def rank_correlation(a: np.ndarray, b: np.ndarray) -> float:
    """Spearman correlation of two weight vectors; 1.0 when both are constant (nothing to rank)."""
    if np.ptp(a) == 0 or np.ptp(b) == 0:
        return 1.0 if np.ptp(a) == np.ptp(b) else 0.0
    return float(spearmanr(a, b).statistic)


def lime_agreement(a: np.ndarray, b: np.ndarray, k: int = 5) -> dict[str, float]:
    """Mean over labels of top-k overlap and rank correlation of two C×S LIME weight arrays."""
    if a.shape != b.shape:
        raise ValueError(f"LIME weights of different shapes {a.shape} and {b.shape}: use one segmentation.")
    return {
        "top_k_overlap": float(np.mean([top_k_overlap(x, y, k) for x, y in zip(a, b, strict=True)])),
        "rank_correlation": float(np.mean([rank_correlation(x, y) for x, y in zip(a, b, strict=True)])),
    }


def map_correlation(a: np.ndarray, b: np.ndarray) -> float:
    """Pearson correlation of two maps; 1.0 when both are flat (ReLU left nothing) and equal."""
    a, b = np.ravel(a).astype(np.float64), np.ravel(b).astype(np.float64)
    if np.ptp(a) == 0 or np.ptp(b) == 0:
        return 1.0 if np.allclose(a, b) else 0.0
    return float(np.corrcoef(a, b)[0, 1])
