"""Procedural synthetic faces for tests, the demo model and explanation "meaning" checks.

No labelled face dataset can be downloaded, so we draw our own: 100x100 RGB front-facing
faces where the emotion lives ONLY in the mouth (curve, openness), the brows (angle, height)
and the eyes (openness). Everything else (face shape, pose, skin tone, lighting, hair,
background clutter, noise, blur, JPEG) is random nuisance, so a model that scores well must
look at the features, and region masks let tests check that explanations do too:

    happy      mouth curved up, half the time open with teeth; brows level; eyes normal or narrowed
    sad        mouth curved down; inner brow ends raised; eyes narrowed, outer corners drooping
    neutral    straight mouth; level brows at normal height; normal eyes
    angry      low brows, inner ends pulled down (V); narrowed eyes; tight mouth, straight or down
    surprised  brows raised high and arched; wide eyes; round open "O" mouth

Every image is a pure function of ``(seed, class index, image index)``; generation order
and parallelism never change a pixel.
"""

from __future__ import annotations

import argparse
import io
import logging
import multiprocessing
import os
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import cv2
import numpy as np

from emotion.cli import command, program_name
from emotion.errors import EmotionLensError
from emotion.labels import EMOTIONS
from emotion.storage.files import write_file_atomically

log = logging.getLogger(__name__)

REGIONS: tuple[str, ...] = ("face", "brows", "eyes", "mouth", "shortcut")
# Non-target classes also get the cue now and then, as in real spurious correlations.
OTHER_SHORTCUT_RATE = 0.05
# Background cues a class can be given (`make_face(cue=...)`), the shortcuts films hand a model:
# a bright stamp in a corner ("stamp" is the lower-right one, the original project's), a subtitle-like strip
# of text along the bottom, letterbox bars at the top and bottom, a colour tint over the whole
# background and a striped texture over it. All lie outside the drawn face; a cue on the face
# itself (make-up, glasses) is out of scope: no background test could or should find it.
CUES: tuple[str, ...] = (
    "stamp",
    "stamp-ul",
    "stamp-ur",
    "stamp-ll",
    "subtitle",
    "letterbox",
    "tint",
    "texture",
)
GLOBAL_CUES = ("tint", "texture")  # spread over the whole background: no one region holds them

# Cue ranges (lo, hi) per class, in units of a nominal 100-px face. Single cues overlap
# between classes on purpose (sad and angry mouths both turn down, happy and sad eyes both
# narrow), so only brows + eyes + mouth together identify the emotion.
#   eye_open: half-height of the eye opening; brow_lift: brow centre above eye centre;
#   brow_tilt: inner end raised (+) or pulled down (-); brow_arch: bow of the brow;
#   mouth_w: half-width; mouth_curve: corners up (+) / down (-); mouth_open: gap height.
_CUES = ("eye_open", "brow_lift", "brow_tilt", "brow_arch", "mouth_w", "mouth_curve", "mouth_open")
_RANGES = {
    "happy": ((2.6, 4.0), (9.0, 11.5), (-1.0, 1.2), (0.6, 1.8), (10.0, 13.5), (3.0, 6.5), (3.0, 6.0)),
    "sad": ((2.4, 3.6), (9.0, 11.5), (2.5, 5.0), (-0.5, 0.8), (8.0, 11.0), (-5.5, -2.0), (1.2, 2.5)),
    "neutral": ((3.3, 4.4), (8.5, 10.5), (-0.8, 0.8), (0.3, 1.5), (8.5, 11.5), (-1.0, 1.0), (0.0, 0.0)),
    "angry": ((1.7, 2.8), (5.5, 7.5), (-5.0, -2.5), (-0.5, 0.8), (8.0, 11.0), (-2.5, 0.3), (2.0, 3.2)),
    "surprised": ((4.6, 6.0), (12.5, 15.5), (-0.5, 1.5), (2.5, 4.0), (4.0, 6.5), (0.0, 0.0), (8.0, 12.0)),
}
# Which drawn region each cue moves: what makes a region part of an emotion's evidence.
_CUE_REGION = {
    "eye_open": "eyes",
    "brow_lift": "brows",
    "brow_tilt": "brows",
    "brow_arch": "brows",
    "mouth_w": "mouth",
    "mouth_curve": "mouth",
    "mouth_open": "mouth",
}
# Chance that the mouth is open (teeth or dark inside) for each class.
_P_OPEN = {"happy": 0.5, "sad": 0.15, "neutral": 0.0, "angry": 0.3, "surprised": 1.0}


def defining_regions(label: str, *, max_overlap: float = 0.5) -> tuple[str, ...]:
    """The regions that define `label`, read off the generator's own cue ranges: a region counts
    when one of its cues moves away from neutral, i.e. the label's range overlaps neutral's for
    less than `max_overlap` of its width (a fixed value, like a closed mouth, is a point range).
    Neutral is defined by every region staying put, so all three define it.

    With the ranges above: happy → mouth; sad, angry and surprised → brows, eyes and mouth.
    """
    if label not in EMOTIONS:
        raise ValueError(f"Unknown emotion {label!r}; expected one of {', '.join(EMOTIONS)}.")
    if label == "neutral":
        return _DILATED
    moved = set()
    for cue, (lo, hi), (n_lo, n_hi) in zip(_CUES, _RANGES[label], _RANGES["neutral"], strict=True):
        overlap = max(0.0, min(hi, n_hi) - max(lo, n_lo))
        width = hi - lo
        if (width == 0 and not n_lo <= lo <= n_hi) or (width > 0 and overlap < max_overlap * width):
            moved.add(_CUE_REGION[cue])
    return tuple(r for r in _DILATED if r in moved)


# RGB palettes as hex codes. Skin runs light to dark; a face interpolates between neighbours.
def _rgb(hexes: str) -> np.ndarray:
    return np.float32([[int(h[i : i + 2], 16) for i in (0, 2, 4)] for h in hexes.split()])


_SKIN = _rgb("ffe2c8 f1c4a4 e0ac80 c68860 a06846 764a32 543626")
_HAIR = _rgb("181412 342218 5c3c24 76381e c4a064 969492")  # black, browns, auburn, blond, grey
_HAIR_CDF = np.cumsum([0.32, 0.26, 0.14, 0.1, 0.09, 0.09])[:-1]  # dark hair most often
_IRIS = _rgb("462d19 281c14 3c648c 46693c")
_RANGES_LO_HI = {k: np.array(v, np.float64).T for k, v in _RANGES.items()}
# Nuisance ranges, drawn in one call: scale, rotation (deg), shift x, y, face half-width,
# half-height, skin tone position on _SKIN, hair brightness, eye x, eye y, eye half-width, and a
# wobble that jitters the eye corners and picks the side of the nose shadow.
_POSE_LO = np.array([0.86, -10, -4, -4, 30, 39, 0, 0.8, 12.5, -8, 6.0, -0.6])
_POSE_HI = np.array([1.06, 10, 4, 4, 34, 43, len(_SKIN) - 1.001, 1.15, 14.5, -5, 7.2, 0.6])
# Image effects: brightness, light strength, light angle, noise sigma, blur sigma, JPEG quality, JPEG draw.
_FX_LO = np.array([0.8, 0.0, 0.0, 0.0, 0.0, 35, 0.0])
_FX_HI = np.array([1.12, 0.3, 2 * np.pi, 6.0, 1.1, 96, 1.0])
_CORNER_X = np.float32([[-1, 1], [-1, 1]])[:, :, None].repeat(3, 2)  # corner coordinates of a 2x2 RGB image
_CORNER_Y = np.float32([[-1, -1], [1, 1]])[:, :, None].repeat(3, 2)
_NECK = np.array([[-12, 20], [12, 20], [14, 70], [-14, 70]], np.float32)
_KERNEL = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (5, 5))
_DILATED = ("brows", "eyes", "mouth")
_SHIFT = 4  # sub-pixel bits for cv2 drawing: anti-aliased features stay smooth at 100 px
_CIRCLE = np.stack([np.cos(np.linspace(0, 2 * np.pi, 40)), np.sin(np.linspace(0, 2 * np.pi, 40))], 1)
_BEZ_T = np.linspace(0.0, 1.0, 13, dtype=np.float32)[:, None]
_TAPER = np.sin(np.linspace(0, np.pi, 13, dtype=np.float32))[:, None]
_BEZ_W = np.hstack([(1 - _BEZ_T) ** 2, 2 * (1 - _BEZ_T) * _BEZ_T, _BEZ_T**2])  # Bernstein weights


@dataclass(frozen=True)
class SyntheticFace:
    """One drawn face and where its parts are."""

    image: np.ndarray  # size x size x 3 uint8 RGB
    label: str  # one of EMOTIONS
    # REGIONS -> size x size bool, posed like the drawing; "face" is the skin ellipse
    masks: dict[str, np.ndarray]


@dataclass(frozen=True)
class SyntheticSet:
    """A balanced batch of faces; classes are interleaved (labels 0,1,2,3,4,0,1,...)."""

    images: np.ndarray  # N x 100 x 100 x 3 uint8 RGB
    labels: np.ndarray  # N int64, index into EMOTIONS
    masks: dict[str, np.ndarray]  # REGIONS -> N x 100 x 100 bool

    def defining_mask(self, i: int, label: str) -> np.ndarray:
        """H×W bool: face i's regions that define `label` (`defining_regions`), the ground truth
        the pointing game and the meaning tests score maps against."""
        return np.any([self.masks[r][i] for r in defining_regions(label)], axis=0)


def _bezier(p0, p1, p2) -> np.ndarray:
    """Quadratic Bezier through p0 and p2 whose midpoint lies halfway from the chord to p1."""
    return _BEZ_W @ np.array((p0, p1, p2), np.float32)


def _ellipse(cx: float, cy: float, ax: float, ay: float) -> np.ndarray:
    return _CIRCLE * (ax, ay) + (cx, cy)


@lru_cache(maxsize=1)
def _noise_bank() -> np.ndarray:
    # Fresh Gaussian noise per image costs ~0.35 ms, half the budget of a whole face; a fixed
    # bank cropped at a random offset does the same job for training.
    return np.random.default_rng(12345).standard_normal((256, 256, 3), dtype=np.float32)


def _corners(size: int, corners: np.ndarray) -> np.ndarray:
    # Bilinear gradient from 2x2 corner values: a few us, where numpy broadcasting takes ~100.
    return cv2.resize(corners, (size, size), interpolation=cv2.INTER_LINEAR)


def _col(c) -> tuple[float, ...]:
    return tuple(c.tolist()) if isinstance(c, np.ndarray) else tuple(map(float, c))


class _Canvas:
    """Draws face-frame polygons through one affine pose, onto the image and a region mask."""

    def __init__(self, img: np.ndarray, pose: np.ndarray, scale: float, angle: float):
        self.img, self.scale, self.angle = img, scale, -angle  # cv2.ellipse turns the other way
        # Fixed-point pose (cv2's `shift` bits), +0.5 so the int cast rounds.
        self.lin, self.off = pose[:, :2].T * (1 << _SHIFT), pose[:, 2] * (1 << _SHIFT) + 0.5
        self.masks = {r: np.zeros(img.shape[:2], np.uint8) for r in REGIONS}

    def _pts(self, polys: list[np.ndarray]) -> list[np.ndarray]:
        # One transform for all polygons of a call: left and right features are drawn together.
        if len(polys) == 1:
            return [(polys[0] @ self.lin + self.off).astype(np.int32)]
        xy = (np.concatenate(polys) @ self.lin + self.off).astype(np.int32)
        out, i = [], 0
        for p in polys:
            out.append(xy[i : i + len(p)])
            i += len(p)
        return out

    def fill(self, polys: list[np.ndarray], color, region: str | None = None) -> None:
        p = self._pts(polys)
        cv2.fillPoly(self.img, p, _col(color), cv2.LINE_AA, _SHIFT)
        if region:
            cv2.fillPoly(self.masks[region], p, 1, cv2.LINE_8, _SHIFT)

    def ellipses(self, centres, axes, color, region: str | None = None, width: float = -1) -> None:
        """Axis-aligned (in the face frame) ellipses; cheaper than polygons for small round parts."""
        c = self._pts([np.asarray(centres, np.float64)])[0]
        ax = np.round(np.asarray(axes) * (self.scale * (1 << _SHIFT))).astype(int).tolist()
        w = -1 if width < 0 else max(1, round(width * self.scale))
        color = _col(color)
        for (x, y), (a, b) in zip(c.tolist(), ax, strict=True):
            cv2.ellipse(self.img, (x, y), (a, b), self.angle, 0, 360, color, w, cv2.LINE_AA, _SHIFT)
            if region:
                cv2.ellipse(self.masks[region], (x, y), (a, b), self.angle, 0, 360, 1, w, cv2.LINE_8, _SHIFT)

    def line(self, polys: list[np.ndarray], color, width: float, region: str | None = None) -> None:
        p, w = self._pts(polys), max(1, round(width * self.scale))
        cv2.polylines(self.img, p, False, _col(color), w, cv2.LINE_AA, _SHIFT)
        if region:
            cv2.polylines(self.masks[region], p, False, 1, w, cv2.LINE_8, _SHIFT)


def _uniform(rng: np.random.Generator, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    # rng.uniform with array bounds costs ~15 us through broadcasting; this costs ~2.
    return lo + (hi - lo) * rng.random(len(lo))


def _background(rng: np.random.Generator, size: int) -> np.ndarray:
    img = _corners(size, rng.uniform(20, 235, (2, 2, 3)).astype(np.uint8))
    # One draw for all clutter: per shape a kind, an RGB colour, two points and a radius.
    span = np.array([3, 255, 255, 255, size, size, size, size, size / 4])
    for row in rng.random((int(rng.integers(1, 6)), 9)) * span:
        kind, color, (x, y, x2, y2, r) = int(row[0]), _col(row[1:4]), (row[4:] + 2).astype(int).tolist()
        if kind == 0:
            cv2.rectangle(img, (x - r, y - r // 2), (x + r, y + r), color, -1)
        elif kind == 1:
            cv2.circle(img, (x, y), r, color, -1, cv2.LINE_AA)
        else:
            cv2.line(img, (x, y), (x2, y2), color, 1 + r % 3, cv2.LINE_AA)
    return img


def _hair(cv: _Canvas, rng, fw: float, fh: float, color, front: bool, style: int) -> None:
    """Back hair (behind the head) when front is False, the fringe over the forehead when True."""
    if not front:
        if style == 1:  # long: falls behind the face to below the chin
            back = np.vstack([_ellipse(0, -6, fw + 7, fh + 5)[20:], [[fw + 7, fh + 12], [-fw - 7, fh + 12]]])
        elif style == 2:  # curly / afro
            back = _ellipse(0, -12, fw + 13, fh + 6)
        else:  # short cap
            back = _ellipse(0, -3, fw + 3, fh + 3)[19:]
        cv.fill([back], color)
        return
    line_y = -fh * rng.uniform(0.62, 0.74)  # hairline, always above the highest brows
    part = rng.uniform(-0.6, 0.6) * fw if style == 3 else 0.0
    top = _ellipse(0, 0, fw + 0.5, fh + 0.5)[20:]  # forehead outline, left to right over the top
    edge = _bezier((fw, line_y + 8), (part, line_y - 8 + rng.uniform(-3, 3)), (-fw, line_y + 8))
    cv.fill([np.vstack([top[top[:, 1] < line_y + 8], edge])], color)


def _eyes(cv: _Canvas, rng, x: float, y: float, w: float, h: float, droop: float, skin, iris, dark) -> None:
    """Both eyes; x is the right eye's centre, `droop` lowers the outer corners."""
    gaze, ri = rng.uniform(-1.0, 1.0), min(3.4, 0.52 * w)
    whites, uppers, lowers = [], [], []
    for s in (-1, 1):
        inner, outer = (s * (x - w), y), (s * (x + w), y + droop)
        uppers.append(_bezier(inner, (s * x, y - 2 * h), outer))
        lowers.append(_bezier(outer, (s * x, y + 1.4 * h), inner))
        whites.append(np.vstack([uppers[-1], lowers[-1]]))
    # Sclera in shadow: greyish and tinted by the skin, so the eye band stays darker than the cheeks.
    cv.fill(whites, 0.5 * np.array((235.0, 233.0, 228.0)) + 0.5 * skin, "eyes")
    # Squashing the iris to the opening stands in for clipping it by the lids.
    yc = y + 0.15 * h
    cv.ellipses([(-x + gaze, yc), (x + gaze, yc)], [(ri, min(ri, 0.85 * h))] * 2, iris)
    cv.ellipses([(-x + gaze, yc), (x + gaze, yc)], [(ri * 0.5, min(ri * 0.5, 0.8 * h))] * 2, (12, 10, 10))
    glints = [(-x + gaze + 0.8, yc - 0.45 * h), (x + gaze + 0.8, yc - 0.45 * h)]
    cv.ellipses(glints, [(0.6, 0.6)] * 2, (250, 250, 250))
    cv.line(uppers, dark, 1.8, "eyes")  # lashes: a dark upper edge, as Haar's eye features expect
    cv.line(lowers, skin * 0.7, 0.7)


def _brows(cv: _Canvas, x: float, y: float, w: float, tilt: float, arch: float, thick: float, color) -> None:
    """Both brows centred above (+-x, y); `tilt` > 0 raises the inner ends."""
    half = (thick * (1.0 - 0.55 * _BEZ_T) / 2) * (0, 1)  # tapered towards the temple
    polys = []
    for s in (-1, 1):
        inner, outer = (s * x - s * 0.8 * w, y - tilt / 2), (s * x + s * 1.25 * w, y + tilt / 2 + 0.5)
        mid = ((inner[0] + outer[0]) / 2, (inner[1] + outer[1]) / 2 - 2 * arch)
        centre = _bezier(inner, mid, outer)
        polys.append(np.vstack([centre - half, (centre + half)[::-1]]))
    cv.fill(polys, color, "brows")


def _mouth(cv: _Canvas, rng, label: str, y: float, w: float, curve: float, gap: float, skin, lip) -> None:
    dark, teeth = (45, 15, 20), (236, 232, 220)
    if label == "surprised":  # round "O"
        cv.ellipses([(0, y + 1)], [(w, gap / 2)], dark, "mouth")
        cv.ellipses([(0, y + 1)], [(w, gap / 2)], lip, "mouth", width=2.0)
        return
    mid = _bezier((-w, y - curve), (0, y + curve), (w, y - curve))
    taper = _TAPER * (0, 1)
    if gap <= 0:
        cv.fill([np.vstack([mid, (mid + taper * rng.uniform(2.0, 3.2))[::-1]])], lip, "mouth")
        cv.line([mid], skin * 0.35 + (25, 0, 0), 1.8, "mouth")
        return
    top, bottom = mid - taper * gap * 0.35, mid + taper * gap * 0.65
    cv.fill([np.vstack([top, bottom[::-1]])], teeth if label == "angry" else dark, "mouth")
    if label == "happy":  # upper teeth
        cv.fill([np.vstack([top, (top + taper * gap * 0.4)[::-1]])], teeth)
    elif label == "angry":  # clenched teeth: a dark seam between the rows
        cv.line([mid], (60, 40, 40), 0.8)
    cv.line([np.vstack([top, bottom[::-1], top[:1]])], lip, 1.6, "mouth")


_TINT = np.float32([40, 90, 210])  # a blue cast, as a night scene's grade gives a film


def _paint_global_cue(img: np.ndarray, cue: str) -> None:
    """The tint or the stripes, over the whole background, before the person is drawn on it."""
    size = img.shape[0]
    if cue == "tint":
        img[:] = cv2.addWeighted(img, 0.5, np.broadcast_to(_TINT, img.shape).astype(np.uint8), 0.5, 0)
        return
    # Diagonal stripes, 6 px apart at size 100: a wallpaper no drawn clutter looks like.
    yy, xx = np.mgrid[:size, :size]
    dark = ((xx + yy) * 100 // size) % 6 < 3
    img[dark] = (img[dark] * 0.35).astype(np.uint8)


def _draw_local_cue(img, mask, cue: str, mark: np.ndarray, jx: int, jy: int, k: float) -> None:
    """A stamp in a corner, a caption along the bottom or letterbox bars, into `img` (float32)
    and `mask`; `mark` (a bright colour) and the 0-2 px jitters were drawn for every face."""
    size = img.shape[0]
    if cue.startswith("stamp"):
        # An 8 px square (at size 100) whose inner corner lies beyond the largest, most shifted face.
        corner = cue.partition("-")[2] or "lr"
        sq, far = max(3, round(8 * k)), size - round(11 * k)
        x0 = far + jx if corner[1] == "r" else round(3 * k) - jx
        y0 = far + jy if corner[0] == "l" else round(3 * k) - jy
        cv2.rectangle(img, (x0, y0), (x0 + sq - 1, y0 + sq - 1), _col(mark), -1)
        mask[y0 : y0 + sq, x0 : x0 + sq] = 1
    elif cue == "subtitle":
        # White "words" with a dark outline in the bottom 5 %, below the lowest chin drawn.
        y0, height = size - round(5 * k), max(2, round(3 * k))
        x = round((6 + jx) * k)
        for word in range(7):
            width = round((6 + (3 * word + jx + jy) % 7) * k)
            if x + width > size - round(6 * k):
                break
            cv2.rectangle(img, (x - 1, y0 - 1), (x + width, y0 + height), (20.0, 20.0, 20.0), -1)
            cv2.rectangle(img, (x, y0), (x + width - 1, y0 + height - 1), _col(mark), -1)
            mask[y0 - 1 : y0 + height + 1, x - 1 : x + width + 1] = 1
            x += width + round(3 * k)
    else:  # letterbox: black bars above the hair and below the chin
        bar = round((5 + jy % 2) * k)
        img[:bar], img[size - bar :] = 8.0, 8.0
        mask[:bar], mask[size - bar :] = 1, 1


def make_face(
    label: str, rng: np.random.Generator, *, cue: str | None = None, size: int = 100
) -> SyntheticFace:
    """Draw one `size` x `size` face showing `label`; all randomness comes from `rng`.

    The brows/eyes/mouth masks are dilated by 2 px to cover their feature's soft edge.
    `cue` (one of CUES) adds that background cue; masks["shortcut"] holds its pixels. The cue
    draws nothing from `rng` (its own jitter comes from values drawn for every face), so a face
    with and without it is the same drawing (blur and JPEG carry the cue a pixel or a block further).
    """
    if label not in EMOTIONS:
        raise ValueError(f"Unknown emotion {label!r}; expected one of {', '.join(EMOTIONS)}.")
    if cue is not None and cue not in CUES:
        raise ValueError(f"Unknown cue {cue!r}; expected one of {', '.join(CUES)}.")
    if size < 32:
        raise ValueError(f"size must be at least 32 pixels, got {size}.")
    expr = dict(zip(_CUES, _uniform(rng, *_RANGES_LO_HI[label]), strict=True))
    if rng.random() >= _P_OPEN[label]:
        expr["mouth_open"] = 0.0

    k = size / 100.0
    scale, angle, dx, dy, fw, fh, t, tone, ex, ey, ew, wob = _uniform(rng, _POSE_LO, _POSE_HI)
    pose = cv2.getRotationMatrix2D((0.0, 0.0), angle, scale * k)
    pose[:, 2] = (50.0 + dx) * k, (50.0 + dy) * k
    img = _background(rng, size)
    if cue in GLOBAL_CUES:
        _paint_global_cue(img, cue)
        painted = img.copy()  # what the person does not cover keeps the cue: its mask, below
    cv = _Canvas(img, pose, scale * k, angle)

    i = int(t)
    skin = _SKIN[i] + (_SKIN[i + 1] - _SKIN[i]) * (t - i) + rng.uniform(-8, 8, 3)
    hair = _HAIR[np.searchsorted(_HAIR_CDF, rng.random())] * tone
    style = int(rng.integers(4))
    brow_col = np.minimum(hair, skin) * rng.uniform(0.4, 0.55)
    lip = skin * (0.78, 0.5, 0.5) + (20, 0, 0)

    _hair(cv, rng, fw, fh, hair, False, style)
    cv.fill([_NECK], skin * 0.85)
    cv.ellipses([(-fw + 1, 0), (fw - 1, 0)], [(5, 9), (5, 9)], skin * 0.85)  # ears
    cv.ellipses([(0, 0)], [(fw, fh)], skin, "face")
    _hair(cv, rng, fw, fh, hair, True, style)

    # Eye sockets and nose shading: the dark/light layout Haar's face features expect.
    sock = ew * 0.75 + expr["eye_open"] * 0.3
    cv.ellipses([(-ex, ey - 1), (ex, ey - 1)], [(ew + 3, sock)] * 2, skin * 0.78)
    side = 1 if wob > 0 else -1
    bridge = _bezier((side * 2.5, ey + 2), (side * 3.5, 6), (side * 4.0, 10))
    cv.line([bridge, _bezier((-4.5, 10), (0, 13), (4.5, 10))], skin * 0.75, 1.4)
    cv.ellipses([(-2.6, 10.6), (2.6, 10.6)], [(1.5, 0.9)] * 2, skin * 0.5)
    droop = {"sad": 1.5, "happy": -0.5}.get(label, 0.0) + wob
    _eyes(cv, rng, ex, ey, ew, expr["eye_open"], droop, skin, _IRIS[rng.integers(len(_IRIS))], brow_col * 0.7)
    thick = rng.uniform(2.2, 3.4)
    _brows(cv, ex, ey - expr["brow_lift"], ew, expr["brow_tilt"], expr["brow_arch"], thick, brow_col)
    my = rng.uniform(20, 24)
    _mouth(cv, rng, label, my, expr["mouth_w"], expr["mouth_curve"], expr["mouth_open"], skin, lip)

    if cue in GLOBAL_CUES:
        cv.masks["shortcut"][:] = (img == painted).all(axis=2)
    # Lighting, cue, blur and noise in one float32 pass; convertScaleAbs saturates to uint8.
    bright, light, a, sigma, blur, quality, jpeg = _uniform(rng, _FX_LO, _FX_HI)
    ramp = np.cos(a) * _CORNER_X + np.sin(a) * _CORNER_Y
    img = cv2.multiply(img, _corners(size, np.float32(bright * (1 + light * ramp))), dtype=cv2.CV_32F)

    mark = rng.uniform(225, 255, 3)  # drawn even when unused: see docstring
    jx, jy, ox, oy = (rng.random(4) * (3, 3, 257 - min(size, 256), 257 - min(size, 256))).astype(int)
    if cue is not None and cue not in GLOBAL_CUES:
        # Drawn after the light falls: a stamp or a caption sits on the film, not in the scene.
        _draw_local_cue(img, cv.masks["shortcut"], cue, mark, int(jx), int(jy), k)
    if blur > 0.45:
        img = cv2.GaussianBlur(img, (3, 3), blur)
    if sigma > 1 and size <= 256:
        img = cv2.scaleAdd(_noise_bank()[oy : oy + size, ox : ox + size], sigma, img)
    img = cv2.convertScaleAbs(img)
    if jpeg < 0.35:  # JPEG wants BGR
        _, buf = cv2.imencode(".jpg", img[:, :, ::-1], [cv2.IMWRITE_JPEG_QUALITY, int(quality)])
        img = np.ascontiguousarray(cv2.imdecode(buf, cv2.IMREAD_COLOR)[:, :, ::-1])

    # Dilate so a mask covers the anti-aliased edge of its feature, not just its core.
    masks = {r: (cv2.dilate(m, _KERNEL) if r in _DILATED else m).view(bool) for r, m in cv.masks.items()}
    return SyntheticFace(image=img, label=label, masks=masks)


def face_and_twin(label: str, twin: str, *, seed: int, index: int) -> tuple[SyntheticFace, SyntheticFace]:
    """Face `index` of `label` as `make_dataset(seed=seed)` draws it (without the cue), and its
    twin: the same random numbers drawn as `twin`. Same person, pose, light and background; only
    the cues of the emotion differ, so pasting one of the twin's regions into the face is a
    counterfactual of that region alone. (The mouth's own draws differ between some emotions,
    which can shift the twin's noise and JPEG grain: pasting the background measures that.)"""
    shown = []
    for emotion in (label, twin):
        rng = np.random.default_rng([seed, EMOTIONS.index(label), index])
        rng.random()  # the cue's draw, as _draw makes it
        shown.append(make_face(emotion, rng))
    return shown[0], shown[1]


# Below this many faces, starting worker processes costs more than drawing in this one.
PARALLEL_MIN_FACES = 1000


def make_dataset(
    per_class: int,
    *,
    seed: int = 0,
    shortcut_class: str | None = None,
    shortcut_rate: float = 0.8,
    other_rate: float = OTHER_SHORTCUT_RATE,
    start: int = 0,
    with_masks: bool = True,
    workers: int | None = None,
    cue: str = "stamp",
) -> SyntheticSet:
    """Balanced set of `per_class` faces per emotion, classes interleaved (0,1,2,3,4,0,1,...).

    Image j of class c is drawn from ``default_rng([seed, c, start + j])``, so `start`
    offsets the image index: train/val sets from one seed never share images. With
    `shortcut_class`, that class gets the background `cue` (one of CUES; the lower-right stamp
    by default) on `shortcut_rate` of its images and the other classes on `other_rate` of theirs.
    `with_masks=False` leaves the region masks out (a training set needs none, and they are 5× the
    images' memory). Large sets are drawn by `workers` processes (default: one per core), each a
    contiguous range of image indices: the pixels are the same either way.
    """
    if per_class < 0 or start < 0:
        raise ValueError(f"per_class and start must be >= 0, got {per_class} and {start}.")
    if shortcut_class is not None and shortcut_class not in EMOTIONS:
        raise ValueError(f"Unknown shortcut_class {shortcut_class!r}; expected one of {', '.join(EMOTIONS)}.")
    if cue not in CUES:
        raise ValueError(f"Unknown cue {cue!r}; expected one of {', '.join(CUES)}.")
    for name, rate in (("shortcut_rate", shortcut_rate), ("other_rate", other_rate)):
        if not 0.0 <= rate <= 1.0:
            raise ValueError(f"{name} must be in [0, 1], got {rate}.")
    workers = len(os.sched_getaffinity(0)) if workers is None else workers
    if workers <= 1 or per_class * len(EMOTIONS) < PARALLEL_MIN_FACES:
        return _draw(per_class, seed, shortcut_class, shortcut_rate, other_rate, start, with_masks, cue)
    bounds = np.linspace(0, per_class, workers + 1).round().astype(int)
    jobs = [
        (int(b - a), seed, shortcut_class, shortcut_rate, other_rate, start + int(a), with_masks, cue)
        for a, b in zip(bounds, bounds[1:], strict=False)
    ]
    # spawn, not fork: a forked child of a process whose torch/OpenMP threads are running can hang.
    with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn")) as pool:
        parts = list(pool.map(_draw_job, jobs))
    return SyntheticSet(
        images=np.concatenate([p.images for p in parts]),
        labels=np.concatenate([p.labels for p in parts]),
        masks={r: np.concatenate([p.masks[r] for p in parts]) for r in parts[0].masks},
    )


def _draw_job(job: tuple) -> SyntheticSet:
    return _draw(*job)


def _draw(
    per_class: int,
    seed: int,
    shortcut_class: str | None,
    shortcut_rate: float,
    other_rate: float,
    start: int,
    with_masks: bool,
    cue: str = "stamp",
) -> SyntheticSet:
    n = per_class * len(EMOTIONS)
    images = np.empty((n, 100, 100, 3), np.uint8)
    labels = np.tile(np.arange(len(EMOTIONS), dtype=np.int64), per_class)
    masks = {r: np.empty((n, 100, 100), bool) for r in REGIONS} if with_masks else {}
    for i, c in enumerate(labels):
        rng = np.random.default_rng([seed, int(c), start + i // len(EMOTIONS)])
        # Always drawn, so the faces are the same with or without a shortcut class.
        stamp = rng.random() < (shortcut_rate if EMOTIONS[c] == shortcut_class else other_rate)
        face = make_face(EMOTIONS[c], rng, cue=cue if shortcut_class is not None and stamp else None)
        images[i] = face.image
        for r, mask in masks.items():
            mask[i] = face.masks[r]
    return SyntheticSet(images=images, labels=labels, masks=masks)


@dataclass(frozen=True)
class SyntheticSpec:
    """A `synthetic:N[:CLASS[@CUE][:RATE[:OTHER_RATE]]]` data source: N faces per class; with
    CLASS, a background cue (CUES; the lower-right stamp unless @CUE names another) on RATE of
    that class's faces (default 0.8) and on OTHER_RATE of the others' (default
    OTHER_SHORTCUT_RATE). `synthetic:150:angry:1:0` is the original project's data: the stamp on every angry
    face and on no other; `synthetic:150:sad@tint:1:0` tints every sad face's background."""

    per_class: int
    shortcut_class: str | None = None
    shortcut_rate: float = 0.8
    other_rate: float = OTHER_SHORTCUT_RATE
    cue: str = "stamp"

    @classmethod
    def parse(cls, spec: str) -> SyntheticSpec:
        parts = spec.split(":")
        try:
            if parts[0] != "synthetic" or not 2 <= len(parts) <= 5:
                raise ValueError
            per_class = int(parts[1])
            rates = [float(p) for p in parts[3:]]
        except ValueError:
            raise SyntheticSpecError(spec) from None
        shortcut, at, cue = parts[2].partition("@") if len(parts) > 2 else (None, "", "")
        if per_class < 1 or (shortcut is not None and shortcut not in EMOTIONS):
            raise SyntheticSpecError(spec)
        if any(not 0.0 <= r <= 1.0 for r in rates) or (at and cue not in CUES):
            raise SyntheticSpecError(spec)
        return cls(per_class, shortcut, *rates, cue=cue or "stamp")

    def draw(self, per_class: int, *, seed: int, start: int = 0, with_masks: bool = True) -> SyntheticSet:
        """`per_class` faces per class of this source, image indices from `start`."""
        return make_dataset(
            per_class,
            seed=seed,
            start=start,
            shortcut_class=self.shortcut_class,
            shortcut_rate=self.shortcut_rate,
            other_rate=self.other_rate,
            with_masks=with_masks,
            cue=self.cue,
        )


class SyntheticSpecError(EmotionLensError, ValueError):
    def __init__(self, spec: str) -> None:
        super().__init__(
            f"Bad synthetic data source {spec!r}: write synthetic:N[:CLASS[@CUE][:RATE[:OTHER_RATE]]], N "
            f"faces per class ≥ 1, CLASS one of {', '.join(EMOTIONS)}, CUE one of {', '.join(CUES)}, rates "
            "in [0, 1] (e.g. synthetic:150:angry:1:0 or synthetic:150:sad@tint:1:0)."
        )


def split_range(spec: SyntheticSpec, split: str, *, val_fraction: float) -> tuple[int, int]:
    """(per_class, start) of the `train` or `val` split: N faces per class for training, then
    round(N·val_fraction) (at least 1) more per class for validation. The one place this rule
    lives, so a model card or a report can redraw a run's validation faces exactly."""
    if split == "train":
        return spec.per_class, 0
    return max(1, round(spec.per_class * val_fraction)), spec.per_class


def _write_iter(dataset: SyntheticSet, out: Path, first: int = 0) -> Iterator[Path]:
    """Write sample by sample, yielding each PNG path; `first` offsets the per-class file index."""
    for name in EMOTIONS:
        (out / name).mkdir(parents=True, exist_ok=True)
        (out / "masks" / name).mkdir(parents=True, exist_ok=True)
    counts = dict.fromkeys(EMOTIONS, first)
    for i, c in enumerate(dataset.labels):
        name = EMOTIONS[c]
        stem = f"{name}_{counts[name]}"
        counts[name] += 1
        ok, png = cv2.imencode(".png", dataset.images[i][:, :, ::-1])
        if not ok:
            raise RuntimeError(f"OpenCV could not encode {stem}.png")
        npz = io.BytesIO()
        np.savez_compressed(npz, **{r: dataset.masks[r][i] for r in REGIONS})
        write_file_atomically(out / "masks" / name / f"{stem}.npz", npz.getvalue())
        write_file_atomically(out / name / f"{stem}.png", png.tobytes())
        yield out / name / f"{stem}.png"


def write_imagefolder(dataset: SyntheticSet, out: Path) -> Path:
    """Write out/<emotion>/<emotion>_<i>.png and out/masks/<emotion>/<emotion>_<i>.npz.

    `i` counts from 0 within each class, in dataset order. Each npz holds one bool array per
    region (REGIONS). Every file is written to a temp name, then `os.replace`d. `masks/`
    sits beside the class folders, so an ImageFolder loader must skip it. Returns out.
    """
    out = Path(out)
    for _ in _write_iter(dataset, out):
        pass
    return out


def _per_class(text: str) -> int:
    try:
        n = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if n < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {n}")
    return n


@command
def main(argv: list[str] | None = None) -> int:
    """CLI: ``python -m training.synthetic --out DIR --per-class N [--shortcut CLASS] [--cue C]``."""
    from tqdm import tqdm

    parser = argparse.ArgumentParser(
        prog=program_name("training.synthetic"),
        description="Write synthetic emotion faces (and region masks) as an ImageFolder tree.",
    )
    parser.add_argument("--out", type=Path, required=True, help="output folder (created if missing)")
    parser.add_argument("--per-class", type=_per_class, required=True, help="images per emotion (>= 1)")
    parser.add_argument("--shortcut", choices=EMOTIONS, help="class that gets a background cue")
    parser.add_argument("--cue", choices=CUES, default="stamp", help="the cue (stamp: lower-right corner)")
    parser.add_argument("--shortcut-rate", type=float, default=0.8, help="share of that class with the cue")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--start", type=int, default=0, help="first image index (disjoint train/val sets)")
    args = parser.parse_args(argv)
    if not 0.0 <= args.shortcut_rate <= 1.0:
        parser.error(f"--shortcut-rate must be in [0, 1], got {args.shortcut_rate}")
    if args.start < 0:
        parser.error(f"--start must be >= 0, got {args.start}")
    if args.out.exists() and not args.out.is_dir():
        parser.error(f"--out {args.out} is a file; give a folder (it is created if missing)")
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")

    t0, stamped, chunk = time.perf_counter(), 0, 50
    # Chunks keep memory flat for big sets; per-image seeding makes them identical to one call.
    with tqdm(total=args.per_class * len(EMOTIONS), desc="faces", unit="img") as bar:
        for first in range(0, args.per_class, chunk):
            n = min(chunk, args.per_class - first)
            part = make_dataset(
                n, seed=args.seed, shortcut_class=args.shortcut, shortcut_rate=args.shortcut_rate,
                start=args.start + first, cue=args.cue,
            )  # fmt: skip
            stamped += int(part.masks["shortcut"].any((1, 2)).sum())
            for _ in _write_iter(part, args.out, first):
                bar.update()
    log.info(
        "Wrote %d faces per emotion (%s) to %s in %.1f s; %d carry the shortcut cue.",
        args.per_class, ", ".join(EMOTIONS), args.out, time.perf_counter() - t0, stamped,
    )  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
