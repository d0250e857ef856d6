"""What each emotion looks at, over a whole dataset: per class, its Grad-CAM averaged over its
own faces, laid over their mean face. The training run writes it beside the confusion matrix;
the model card shows it."""

from __future__ import annotations

import io
from pathlib import Path

import cv2
import numpy as np

from emotion.explainers.gradcam import last_stage_gradcams
from emotion.explainers.render import overlay
from emotion.model import EmotionModel
from emotion.storage.files import write_file_atomically

MAX_FACES_PER_CLASS = 32  # enough for a stable mean map, cheap on 2 CPU cores


def mean_gradcams(
    model: EmotionModel, faces: np.ndarray, labels: np.ndarray, *, max_per_class: int = MAX_FACES_PER_CLASS
) -> dict[str, tuple[np.ndarray, np.ndarray, int]]:
    """{label: (mean map H×W in [0, 1], mean face H×W×3 uint8, faces used)} for every label of
    the model with at least one face; `labels` index `model.labels`."""
    out = {}
    for index, label in enumerate(model.labels):
        own = faces[labels == index][:max_per_class]
        if len(own) == 0:
            continue
        mean_map = last_stage_gradcams(model, own)[:, index].mean(axis=0)  # one batched forward
        peak = float(mean_map.max())
        mean_face = np.mean(own.astype(np.float32), axis=0).round().astype(np.uint8)
        out[label] = (mean_map / peak if peak > 0 else mean_map, mean_face, len(own))
    return out


def save_mean_gradcam(
    model: EmotionModel,
    faces: np.ndarray,
    labels: np.ndarray,
    path: str | Path,
    *,
    max_per_class: int = MAX_FACES_PER_CLASS,
) -> int:
    """One PNG at `path` (written atomically): a captioned tile per label, blank where the label
    has no face. Returns how many faces it used."""
    means = mean_gradcams(model, faces, labels, max_per_class=max_per_class)
    tiles = []
    for label in model.labels:
        if label not in means:
            tiles.append(_caption(np.full((200, 200, 3), 255, np.uint8), f"{label} (no faces)"))
            continue
        heat, face, n = means[label]
        tiles.append(_caption(overlay(face, heat), f"{label} (n={n})"))
    buffer = io.BytesIO()
    from PIL import Image

    Image.fromarray(np.concatenate(tiles, axis=1)).save(buffer, format="PNG")
    write_file_atomically(path, buffer.getvalue())
    return sum(n for _, _, n in means.values())


def _caption(tile: np.ndarray, text: str) -> np.ndarray:
    band = np.full((28, tile.shape[1], 3), 255, np.uint8)
    cv2.putText(band, text, (6, 20), cv2.FONT_HERSHEY_SIMPLEX, 0.55, (0, 0, 0), 1, cv2.LINE_AA)
    return np.concatenate([band, tile], axis=0)
