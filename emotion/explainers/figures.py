"""Figures beside every map: how much of it lies outside the face, how faithful it is to the
model, and what a method measured about its own fit (LIME's R²).

- **Background share**: the share of a map's mass (the sum of its values) that lies outside the
  face. The crop the model sees is a square around the Haar box with a margin
  (`emotion.photo.faces.crop_face`), so where the box lies inside the 100×100 crop is known geometry,
  and the face is an ellipse around it that takes in the chin and jaw a Haar box leaves out
  (`face_mask_in_crop`); a "whole image" face has no box, so no share. Above 0.5 for the top
  emotion, the page and the CLI say so in a sentence (`evidence_sentence`): the emotion is read
  mostly from hair, background or clothes, a shortcut worth knowing about. Cost: 20-50 µs
  per map (two numpy sums over 100×100), nothing next to the maps themselves.
- **Deletion / insertion AUC** (Petsiuk et al. 2018, RISE): pixels are removed from the face, or
  inserted into a blurred copy of it, in the order of the map (highest first), and the model's
  probability of the label is read after each step; the area under that curve over the fraction
  of pixels changed. A faithful map points at what the model reads: removing those pixels first
  makes the probability fall fast (low deletion AUC), inserting them first makes it rise fast
  (high insertion AUC). Every step of both curves goes through the model in one batch of
  2·(steps + 1) faces (42 by default), so it costs what a LIME run of that many samples does;
  hence on request only (`explain(..., faithfulness=True)`). Not pytorch-grad-cam's ROAD: it
  needs one forward per removal step too, plus a noisy fill per image solved as a sparse system,
  for the same kind of number.
- **Surrogate R²** (LIME only): the weighted R² of LIME's per-label linear fit on its perturbed
  samples. Low R² means the linear story the map tells explains little of how the model's
  probability moved. It comes free with the fit (`MapsWithFigures`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

import cv2
import numpy as np

from emotion.errors import EmotionLensError
from emotion.photo.faces import FACE_SIZE, Box, square_around

if TYPE_CHECKING:
    from emotion.model import EmotionModel

BACKGROUND_SHARE = "background_share"  # {label: share of the map's mass outside the face}
FIT_R2 = "fit_r2"  # {label: R² of the method's own surrogate fit} (LIME)
DELETION_AUC = "deletion_auc"  # {top label: AUC of its probability as pixels are removed}, lower = better
INSERTION_AUC = "insertion_auc"  # {top label: AUC as pixels are inserted}, higher = better

Figures = dict[str, dict[str, float]]  # figure name → label → value


class FigureError(EmotionLensError, ValueError):
    """A figure was asked of inputs that do not fit together (a map and a mask of other shapes)."""


class MapsWithFigures(dict):
    """A method's {label: map} plus figures it measured while making them, e.g. LIME's
    {"fit_r2": {label: R²}}. A plain dict to every caller that only wants the maps, so the
    registry's signature stays the same for every method."""

    def __init__(self, maps: dict[str, np.ndarray], figures: Figures | None = None) -> None:
        super().__init__(maps)
        self.figures: Figures = dict(figures or {})


@dataclass(frozen=True)
class FaithfulnessConfig:
    steps: int = 20  # points per curve after the start: 5 % of the pixels per step
    # Insertion starts from the face blurred by this sigma, as a share of the face side (5 px on
    # 100 px): eyes, brows and mouth (10-15 px) are gone, colours and layout stay, so the start is
    # a face-like image with little evidence rather than an image the model never saw.
    blur_sigma: float = 0.05
    seed: int = 0  # ties in a map (LIME's flat segments, zero areas) are broken in a fixed random order


def box_in_crop(box: Box, *, margin: float, size: int = FACE_SIZE) -> tuple[float, float, float, float]:
    """(x0, y0, x1, y1): where the detected `box` lies, in pixels, inside the size×size crop
    `crop_face(photo, box, margin=margin, size=size)` made of it. `crop_face` cuts
    `square_around(box, margin)` and resizes it, so the place follows from that square alone."""
    square = square_around(box, margin)
    scale = size / square.w
    x0, y0 = (box.x - square.x) * scale, (box.y - square.y) * scale
    return x0, y0, x0 + box.w * scale, y0 + box.h * scale


# The face around a Haar box: an ellipse on the box's centre whose half-axes are these shares of
# the box's width and height. A Haar box runs from the brows to about the mouth; the chin, the jaw
# and a wide smile overflow it (drawn faces' skin reaches 0.62 of the box's height below and above
# its centre), so the ellipse takes them in and leaves as background only what no face reaches: the
# crop's corners and its outer rim. One definition for every reader: the per-map background share,
# the shortcut report's tests and the training option against background shortcuts.
FACE_ELLIPSE = (0.55, 0.62)
# The face's core: the ellipse inscribed in the Haar box, brows, eyes and mouth with no rim. What
# training against background shortcuts keeps of a crop, everything else coming from another face:
# a superset of the background FACE_ELLIPSE leaves, so every pixel the report tests is swapped, and
# so is a cue inside FACE_ELLIPSE's rim (a caption or a letterbox bar at the crop's bottom or top
# centre, a colour cast around the head), which the swap would otherwise leave for the model to read.
FACE_CORE_ELLIPSE = (0.5, 0.5)


def face_mask_in_crop(
    box: Box, *, margin: float, source: str = "detected", size: int = FACE_SIZE,
    ellipse: tuple[float, float] = FACE_ELLIPSE,
) -> np.ndarray | None:  # fmt: skip
    """size×size bool: True on the face of a crop cut around the detected `box` (`ellipse` around
    the box, half-axes as shares of its sides; a pixel is in it if its centre is); None for a
    "whole image" face, which has no known face."""
    if source != "detected":
        return None
    x0, y0, x1, y1 = box_in_crop(box, margin=margin, size=size)
    half_w, half_h = ellipse[0] * (x1 - x0), ellipse[1] * (y1 - y0)
    centres = np.arange(size) + 0.5
    dx, dy = (centres - (x0 + x1) / 2) / half_w, (centres - (y0 + y1) / 2) / half_h
    return dy[:, None] ** 2 + dx[None, :] ** 2 <= 1.0


def crop_face_mask(size: int, margin: float, ellipse: tuple[float, float] = FACE_ELLIPSE) -> np.ndarray:
    """The face on any crop made by `crop_face` with `margin` (only the box's place in its own
    crop matters, and that is the same for every box): for face crops that come without a box,
    as an ImageFolder of extracted faces does."""
    return face_mask_in_crop(Box(0, 0, 1000, 1000), margin=margin, size=size, ellipse=ellipse)


def background_share(heat: np.ndarray, face_mask: np.ndarray) -> float:
    """Share of the map's mass (sum of its values) outside `face_mask`, in [0, 1]; nan for a map
    that is zero everywhere (it points nowhere, so it has no share; JSON writes null)."""
    if heat.shape != face_mask.shape:
        raise FigureError(
            f"The map is {heat.shape} but the face mask {face_mask.shape}: build the mask at the map's "
            "size (face_mask_in_crop(..., size=heat.shape[0]))."
        )
    heat = heat.astype(np.float64)
    total = heat.sum()
    if total <= 0:
        return math.nan
    return float(heat[~face_mask].sum() / total)


def evidence_sentence(method_title: str, label: str, share: float) -> str | None:
    """A sentence when more than half of `label`'s map lies outside the face, else None."""
    if not share > 0.5:  # nan (an empty map) says nothing either
        return None
    return (
        f"{label} is read mostly from the background: {_percent(share)} of its {method_title} lies "
        "outside the face"
    )


def deletion_insertion(
    model: EmotionModel,
    face: np.ndarray,
    heat: np.ndarray,
    label: str,
    *,
    config: FaithfulnessConfig = FaithfulnessConfig(),
) -> tuple[float, float]:
    """(deletion AUC, insertion AUC) of `heat` as an explanation of `label` on the H×W×3 uint8
    `face` (Petsiuk et al. 2018). Lower deletion and higher insertion = more faithful; both in
    [0, 1], the area under the probability of `label` over the fraction of pixels changed.

    Deleted pixels take the normalisation mean colour (`model.preprocessing.mean`), which the
    network's input normalisation turns into 0: the absence of signal for the first layer, as in
    RISE's deletion (zeros of the normalised image). Insertion starts from the blurred face
    (RISE's insertion substrate). Pixels go in the map's order, highest first, ties in a fixed
    random order; all 2·(steps + 1) faces go through the model in one batch.
    """
    if heat.shape != face.shape[:2]:
        raise FigureError(
            f"The map is {heat.shape} but the face {face.shape[:2]}: pass the map at face resolution."
        )
    if config.steps < 1:
        raise FigureError(f"FaithfulnessConfig.steps must be at least 1, not {config.steps}.")
    mean = np.asarray(model.preprocessing.mean, np.float64)
    removed = np.broadcast_to(np.round(255 * mean).astype(np.uint8), face.shape)
    sigma = config.blur_sigma * max(face.shape[:2])
    blurred = cv2.GaussianBlur(face, (0, 0), sigmaX=sigma, sigmaY=sigma, borderType=cv2.BORDER_REFLECT)

    order = _pixel_order(heat, config.seed)
    fractions = np.linspace(0.0, 1.0, config.steps + 1)
    counts = np.round(fractions * order.size).astype(np.int64)
    # rank[p] = when pixel p changes; pixel p has changed at step k once rank[p] < counts[k].
    rank = np.empty(order.size, np.int64)
    rank[order] = np.arange(order.size)
    changed = (rank[None, :] < counts[:, None]).reshape(len(counts), *heat.shape, 1)
    deletion = np.where(changed, removed[None], face[None])
    insertion = np.where(changed, face[None], blurred[None])
    batch = np.concatenate([deletion, insertion]).astype(np.uint8)
    probs = model.predict(batch, batch_size=len(batch))[:, model.labels.index(label)]
    return _auc(fractions, probs[: len(counts)]), _auc(fractions, probs[len(counts) :])


def _percent(share: float) -> str:
    return f"{100 * share:.0f} %"


def _pixel_order(heat: np.ndarray, seed: int) -> np.ndarray:
    """Flat pixel indices, highest map value first; equal values in a seeded random order (not
    row by row, which would remove the top of the face first wherever a map is flat)."""
    tiebreak = np.random.default_rng(seed).permutation(heat.size)
    return np.lexsort((tiebreak, -heat.ravel().astype(np.float64)))


def _auc(x: np.ndarray, y: np.ndarray) -> float:
    """Trapezoidal area under y(x)."""
    return float(np.sum((y[1:] + y[:-1]) * np.diff(x)) / 2)


def map_figures(
    maps: dict[str, np.ndarray],
    face_mask: np.ndarray | None,
) -> Figures:
    """The figures every map gets for free: its background share per label (when the face box
    is known) and whatever the method measured itself (`MapsWithFigures.figures`)."""
    figures: Figures = {}
    if face_mask is not None:
        figures[BACKGROUND_SHARE] = {label: background_share(heat, face_mask) for label, heat in maps.items()}
    figures.update({name: dict(values) for name, values in getattr(maps, "figures", {}).items()})
    return figures


def figure_caption(figures: Figures, label: str) -> str:
    """The free figures of one label's map in a few words, for a caption: '12 % background ·
    R² 0.41' ('' when it has none)."""
    parts = []
    share = figures.get(BACKGROUND_SHARE, {}).get(label)
    if share is not None and not math.isnan(share):
        parts.append(f"{_percent(share)} background")
    r2 = figures.get(FIT_R2, {}).get(label)
    if r2 is not None and not math.isnan(r2):
        parts.append(f"R² {r2:.2f}")
    return " · ".join(parts)


def faithfulness_caption(figures: Figures, label: str) -> str:
    """'del 0.20 · ins 0.63' for a map whose faithfulness was measured, else ''."""
    if label not in figures.get(DELETION_AUC, {}):
        return ""
    return f"del {figures[DELETION_AUC][label]:.2f} · ins {figures[INSERTION_AUC][label]:.2f}"
