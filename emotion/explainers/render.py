"""Maps → pictures: heat-map overlays on the face and a one-glance summary figure."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from emotion.explainers.registry import title_of
from emotion.photo.report import FaceResult
from emotion.storage.files import pyplot, save_figure


def overlay(face: np.ndarray, heat: np.ndarray, *, alpha: float = 0.45, size: int = 200) -> np.ndarray:
    """The face with `heat` (H×W in [0, 1]) blended on top as a jet colour map, size×size RGB."""
    big_face = cv2.resize(face, (size, size), interpolation=cv2.INTER_CUBIC)
    return blend(big_face, heat, alpha=alpha)


def blend(image: np.ndarray, heat: np.ndarray, *, alpha: float = 0.45) -> np.ndarray:
    """`heat` (any h×w in [0, 1]) stretched over the RGB `image` as a jet colour map."""
    height, width = image.shape[:2]
    big_heat = cv2.resize(heat.astype(np.float32), (width, height), interpolation=cv2.INTER_LINEAR)
    return cv2.addWeighted(image, 1 - alpha, heat_colours(big_heat), alpha, 0)


def heat_colours(heat: np.ndarray) -> np.ndarray:
    """RGB uint8 colours of `heat` (values in [0, 1]) in the maps' jet colour map."""
    colored = cv2.applyColorMap(np.uint8(255 * np.clip(heat, 0, 1)), cv2.COLORMAP_JET)
    return cv2.cvtColor(colored, cv2.COLOR_BGR2RGB)


def colour_scale_html(stops: int = 9) -> str:
    """A horizontal colour bar for the page, drawn from the same colour map as the overlays (so
    the two cannot drift apart), with what its ends mean."""
    rgb = heat_colours(np.linspace(0, 1, stops, dtype=np.float32)[None])[0]
    gradient = ", ".join(f"rgb({r},{g},{b})" for r, g, b in rgb)
    return (
        '<div class="colour-scale">'
        f'<div class="colour-scale-bar" style="background: linear-gradient(to right, {gradient});"></div>'
        '<div class="colour-scale-ends"><span>0: no evidence for that emotion</span>'
        "<span>1: the map's strongest evidence</span></div>"
        "<small>Each map is scaled to its own maximum: compare places within a map, and the "
        "probabilities between maps.</small></div>"
    )


def caption(label: str, prob: float) -> str:
    return f"{label} {prob:.0%}"


def overlays(result: FaceResult, method: str, *, size: int = 200) -> list[tuple[np.ndarray, str]]:
    """(overlay, caption) for every label of one method, in the model's label order."""
    return [
        (overlay(result.face, heat, size=size), caption(label, result.probs[label]))
        for label, heat in result.maps[method].items()
    ]


def save_summary(result: FaceResult, path: str | Path) -> Path:
    """One PNG: the face, then one row per method with a titled overlay per emotion."""
    plt = pyplot()
    methods = list(result.maps)
    labels = list(result.probs)
    rows = max(1, len(methods))
    fig, axes = plt.subplots(
        rows, len(labels) + 1, figsize=(2.1 * (len(labels) + 1), 2.3 * rows), squeeze=False
    )
    for r in range(rows):
        ax = axes[r][0]
        ax.imshow(result.face)
        ax.set_title(f"face: {result.top}" if r == 0 else "")
        ax.set_ylabel(title_of(methods[r]) if methods else "")
        ax.set_xticks([]), ax.set_yticks([])
        for c, label in enumerate(labels, start=1):
            ax = axes[r][c]
            ax.axis("off")
            if methods:
                ax.imshow(overlay(result.face, result.maps[methods[r]][label]))
                ax.set_title(
                    f"{title_of(methods[r])}: {caption(label, result.probs[label])}",
                    fontsize=8,
                )
    fig.tight_layout()
    return save_figure(fig, path, dpi=100)
