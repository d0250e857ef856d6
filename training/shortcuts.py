"""The shortcut detector: ``python -m training.shortcuts --model SRC --data SRC --out DIR [--compare OLD]``.

The original project's lesson: a ResNet learned "angry" from a corner of the background, and only per-class
maps showed it. This report makes that visible and checks it causally, class by class:

- the mean Grad-CAM (the last stage's, `emotion.explainers.gradcam.last_stage_gradcams`: no backward
  pass, so cheap over hundreds of faces) and LIME of each class over its correctly classified
  faces, with the share of each map's mass that lies outside the face and its spread over them;
- two causal tests per class, each against a control made on the same faces: covering the
  class's strongest background region (from its mean Grad-CAM) against covering random background
  regions of the same area, and replacing the whole background with other emotions' backgrounds
  against other faces of the same emotion's. A map can look at the background without the
  prediction needing it; the drops say whether it does. The first finds a local cue, the second
  also one spread over the background (a tint, a texture) that no one region holds;
- a class is **flagged**, in words, when a test's drop beats its control's face for face (a
  corrected one-sided Wilcoxon test) by a margin worth acting on; a class with too few faces,
  or no room for a control, is said to be untested, never clean;
- a flagged class comes with what to run: retrain with `--against-background`
  (`training.augment.swap_backgrounds`), then report on the new model with ``--compare OLD``,
  which shows both models side by side and what changed, class by class;
- per class, whether it reads one side of the picture (covering each half of the face, on the
  faces and on the same faces mirrored), its maps' lean, and how localized they are;
- the accuracy with every face on another emotion's background, which a model reading faces
  keeps and one reading backgrounds loses;
- the most confident mistakes with their maps, and the confusion matrix.

It writes ``report.html`` (with PNGs beside it) and ``report.json`` (the same figures, the flagged
classes under ``flagged``). With no ``--out`` and a run folder as ``--model``, it writes into the
run folder's ``report/``, where the model card and the page's "Model report" tab read it.
"""

from __future__ import annotations

import argparse
import html
import json
import logging
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from emotion.cli import command, program_name
from emotion.errors import EmotionLensError
from emotion.evaluation.shortcut_view import test_cell
from emotion.explainers.figures import background_share
from emotion.explainers.gradcam import default_gradcams, last_stage_gradcams
from emotion.explainers.registry import get_explainer, parse_methods
from emotion.explainers.render import overlay
from emotion.model import EmotionModel
from emotion.storage.files import pyplot, rounded_for_json, save_figure, write_file_atomically
from emotion.storage.runs import REPORT_FILES, RunFolder

log = logging.getLogger(__name__)


class ReportError(EmotionLensError, ValueError):
    """A report that cannot be made: no faces, labels the model does not know."""


@dataclass(frozen=True)
class ReportConfig:
    split: str = "val"  # "val": the faces training held out (same rule and seed), or "all"
    seed: int = 0  # the data's split seed (synthetic: the drawing seed), as in training
    val_fraction: float = 0.15  # as in training, so "val" is the run's own validation split
    max_faces: int = 32  # correctly classified faces per class for the mean maps and occlusion
    lime_faces: int = 4  # of those, how many LIME explains (about 0.3 s a face on 2 CPU cores)
    # The covered region: around the mean Grad-CAM's background peak, where the map stays at
    # this share of the peak (half maximum: the blob a reader sees on the picture).
    region_level: float = 0.5
    # ... but never more than this share of the background, so that random regions of the same
    # area (the control) still fit beside it: a region as large as the background has no control.
    max_region_share: float = 0.25
    random_regions: int = 8  # random background regions of the same area: the region test's control
    donors: int = 2  # backgrounds each other emotion lends a face (twice that from its own emotion)
    min_background: float = 0.95  # a pixel is background if it is off the face on this share of faces
    # A class is tested only on at least this many correctly classified faces (below, "too few
    # faces"): with 8, the paired test's smallest p-value (1/2^8) survives the correction below.
    min_faces: int = 8
    # The flag: a test's drop beats its control's on the same faces, by a one-sided Wilcoxon
    # signed-rank test whose p-value, Bonferroni-corrected for every test the report makes (two per
    # class), is below `alpha`, AND by at least `min_effect` of probability on average. The p-value
    # says the difference is not chance; the minimum effect says it is large enough to act on.
    alpha: float = 0.05
    min_effect: float = 0.10
    # Reading one side of the picture: a class is named when covering one half of its faces drops
    # its probability more than covering the other half, on the faces and on the same faces
    # mirrored alike (a two-sided Wilcoxon test against 0, corrected over classes, p < alpha), by
    # at least this much probability on average. Covering half a face is a large change (drops of
    # 0.4-0.6 on the flip-trained demo model), so small asymmetries of a model that reads both
    # sides reach 0.1; the figures behind the choice are in docs/findings.md.
    min_side: float = 0.15
    top_share: float = 0.10  # localization: the map's mass in this share of its strongest face pixels
    mistakes: int = 6  # most confident mistakes shown
    methods: tuple[str, ...] = ("gradcam", "lime")  # mean maps drawn; Grad-CAM also locates the region
    # The sanity check section (cascading randomisation, emotion.evaluation.sanity): these methods
    # on this many faces; () leaves it out. Guided backprop costs ~2.6 s a face per network copy
    # (7 copies) on 2 CPU cores, Grad-CAM next to nothing, LIME ~3.5 s: hence opt-in.
    sanity_methods: tuple[str, ...] = ()
    sanity_faces: int = 5


@dataclass
class ReportFaces:
    """The faces a report reads: images, labels indexing the model's labels, where the face is."""

    images: np.ndarray  # N×100×100×3 uint8
    labels: np.ndarray  # N int, index into model.labels
    face_masks: np.ndarray  # N×100×100 bool, True on the face
    source: str
    masks_from: str  # "synthetic face masks" or "crop geometry (margin 0.15)"


@dataclass
class ClassFigures:
    label: str
    faces: int  # correctly classified faces the figures are over
    recall: float
    background_share: dict[str, dict[str, float]] = field(default_factory=dict)  # method → mean/std/n
    occlusion_region: list[int] | None = None  # x, y, w, h: bounding box of the covered region
    occlusion_area: int = 0  # its pixels
    occlusion_where: str = ""
    occlusion_drop: float | None = None  # mean drop of P(label) when that region is covered
    random_drop: float | None = None  # the same for random background regions: the control
    occlusion_p: float | None = None  # corrected p-value of drop > control over the faces
    swap_drop: float | None = None  # mean drop when the whole background is other emotions' faces'
    swap_control_drop: float | None = None  # the same with other faces of this emotion: the control
    swap_p: float | None = None
    status: str = ""  # "flagged", "clean", "too few faces" or "not testable"
    flagged_by: list[str] = field(default_factory=list)  # "region test", "whole-background test"
    not_testable: list[str] = field(default_factory=list)  # why a test could not be made
    flagged: bool = False
    sentence: str = ""
    # Which side of the face: the (stride-8) Grad-CAM's lean (L − R) / (L + R) over the face, split
    # at the face's centre, on the faces and on the same faces mirrored (mean and spread over the
    # faces); the mean drops of P(label) when the face's left or right half in the picture is
    # covered, on the faces and mirrored ("left", "right", "mirrored_left", "mirrored_right"), the
    # p-value and the verdict of the one-side test; and how much mirroring the faces drops P(label).
    lean: dict[str, float] | None = None
    mirrored_lean: dict[str, float] | None = None
    half_drops: dict[str, float] | None = None
    side_p: float | None = None
    one_sided: bool = False
    mirror_drop: dict[str, float] | None = None
    # Localization: the share of the (stride-8) Grad-CAM's face mass in its top cfg.top_share face pixels.
    localization: dict[str, float] | None = None
    region_mask: np.ndarray | None = field(default=None, repr=False)  # H×W bool, not in JSON


# --- data ---------------------------------------------------------------------------------
def load_report_faces(source: str, labels: tuple[str, ...], cfg: ReportConfig) -> ReportFaces:
    """The faces of `source` (a training data source) in the chosen split, labels mapped to the
    model's, the face where training against background shortcuts puts it
    (`training.data.FaceData.face_masks`: drawn masks, or the crop's geometry)."""
    from training.data import load_source

    data = load_source(source, cfg.split, seed=cfg.seed, val_fraction=cfg.val_fraction, face_masks=True)
    missing = sorted(set(data.label_names) - set(labels))
    if missing:
        raise ReportError(
            f"The data has labels the model does not know: {missing} (the model's: {list(labels)}). "
            "Report on data with the model's labels."
        )
    to_model = np.array([labels.index(n) for n in data.label_names])
    if len(data) == 0:
        raise ReportError(f"No faces in {source} ({cfg.split} split): give data with faces.")
    return ReportFaces(
        data.images, to_model[data.labels], np.asarray(data.face_masks(), bool), source, data.face_masks_from
    )


# --- figures ------------------------------------------------------------------------------
def background_pixels(face_masks: np.ndarray, min_background: float) -> np.ndarray:
    """H×W bool: the pixels that are background on at least `min_background` of these faces."""
    return (~face_masks).mean(axis=0) >= min_background


def strongest_region(
    mean_map: np.ndarray, background: np.ndarray, level: float, max_share: float = 1.0
) -> np.ndarray:
    """H×W bool: the connected background region around `mean_map`'s strongest background pixel
    where the map stays at `level` of that peak or above, cut to its `max_share` × background
    strongest pixels. A region, not a fixed square: a coarse Grad-CAM (a 7×7 grid on a 100-px
    face) puts a corner cue's peak a cell inwards, and the blob around the peak reaches the corner
    where a square centred on the peak would not. The cut leaves room for the control regions."""
    masked = np.where(background, mean_map, 0.0)
    y, x = np.unravel_index(int(np.argmax(masked)), masked.shape)
    blob = (masked >= level * masked[y, x]) & background
    _, components = cv2.connectedComponents(blob.astype(np.uint8), connectivity=8)
    region = components == components[y, x]
    cap = max(1, int(max_share * background.sum()))
    if region.sum() > cap:
        # The strongest pixels of a blob that grows from its peak: still one piece around it.
        order = np.argsort(-np.where(region, masked, -np.inf), axis=None, kind="stable")[:cap]
        region = np.zeros_like(region)
        region.flat[order] = True
    return region


def random_regions(
    region: np.ndarray, background: np.ndarray, count: int, rng: np.random.Generator
) -> list[np.ndarray]:
    """`count` background regions of the same area as `region`, away from it: the control. Each
    is the `area` background pixels nearest a random background pixel, so it is compact and fits
    wherever the background is (the same shape moved would not fit beside a face on most crops)."""
    elsewhere = background & ~cv2.dilate(region.astype(np.uint8), np.ones((5, 5), np.uint8)).astype(bool)
    ys, xs = np.nonzero(elsewhere)
    area = int(region.sum())
    if len(ys) < area:
        return []
    found = []
    for k in rng.choice(len(ys), size=min(count, len(ys)), replace=False):
        nearest = np.argsort(np.hypot(ys - ys[k], xs - xs[k]), kind="stable")[:area]
        moved = np.zeros_like(region)
        moved[ys[nearest], xs[nearest]] = True
        found.append(moved)
    return found


def cover(faces: np.ndarray, region: np.ndarray) -> np.ndarray:
    """A copy of the faces with `region` filled, face by face, with the mean colour of a 2-px
    ring around it: the fudge colour of what surrounds the region, so whatever it held (a bright
    stamp, say) is gone without leaving a brighter or darker patch in its place."""
    ring = cv2.dilate(region.astype(np.uint8), np.ones((5, 5), np.uint8)).astype(bool) & ~region
    colour = faces[:, ring].astype(np.float32).mean(axis=1).round().astype(np.uint8)
    out = faces.copy()
    out[:, region] = colour[:, None, :]
    return out


def occlusion_drops(
    model: EmotionModel, faces: np.ndarray, base: np.ndarray, index: int, regions: list[np.ndarray]
) -> np.ndarray:
    """Per face, the drop of P(label `index`) from `base` (its value on the faces as they are)
    when each region is covered in turn, averaged over the regions."""
    covered = np.concatenate([cover(faces, region) for region in regions])
    after = model.predict(covered)[:, index].reshape(len(regions), len(faces))
    return (base[None] - after).mean(0)


def swap_background(faces: np.ndarray, donors: np.ndarray, background: np.ndarray) -> np.ndarray:
    """Each face with every `background` pixel taken from each of its donors in turn:
    N×H×W×3 faces and N×K×H×W×3 donors → (K·N)×H×W×3, donor k of every face in block k."""
    out = np.repeat(faces[None], donors.shape[1], axis=0)
    out[:, :, background] = donors.transpose(1, 0, 2, 3, 4)[:, :, background]
    return out.reshape(-1, *faces.shape[1:])


def swap_drops(
    model: EmotionModel, faces: np.ndarray, base: np.ndarray, index: int, donors: np.ndarray,
    background: np.ndarray,
) -> np.ndarray:  # fmt: skip
    """Per face, the mean drop of P(label `index`) from `base` when its whole background is a
    donor's."""
    after = model.predict(swap_background(faces, donors, background))[:, index]
    return (base[None] - after.reshape(donors.shape[1], len(faces))).mean(0)


def pick_donors(
    labels: np.ndarray, own: np.ndarray, donor_class: int, count: int, rng: np.random.Generator
) -> np.ndarray | None:
    """len(own)×count indices of faces of `donor_class` to take backgrounds from, never the face
    itself; None when that class has no other face."""
    rows = []
    for i in own:
        pool = np.flatnonzero((labels == donor_class) & (np.arange(len(labels)) != i))
        if len(pool) == 0:
            return None
        rows.append(rng.choice(pool, size=count, replace=len(pool) < count))
    return np.array(rows)


def whole_background_drops(
    model: EmotionModel, faces: ReportFaces, own: np.ndarray, base: np.ndarray, index: int,
    background: np.ndarray, count: int, rng: np.random.Generator,
) -> tuple[np.ndarray, np.ndarray] | None:  # fmt: skip
    """Per face of `own` (of class `index`, whose P(class) as it is is `base`): the drop of
    P(class) when its whole background is another emotion's, and the control, when it is another
    face's of its own emotion. Each other emotion lends `count` backgrounds and the face takes the
    median of their drops: a class whose own background carries no cue must not be flagged because
    one other class's does (its backgrounds would pull every face towards that class). None when
    there are no donors."""
    images = faces.images[own]
    same = pick_donors(faces.labels, own, index, 2 * count, rng)
    others = [pick_donors(faces.labels, own, k, count, rng) for k in np.unique(faces.labels) if k != index]
    others = [donors for donors in others if donors is not None]
    if same is None or not others:
        return None
    drops = np.median(
        [swap_drops(model, images, base, index, faces.images[donors], background) for donors in others],
        axis=0,
    )
    return drops, swap_drops(model, images, base, index, faces.images[same], background)


@dataclass(frozen=True)
class PairedTest:
    """One test of a class: the mean drop of its probability under a change of the background,
    against a control change on the same faces, and whether the difference is a flag."""

    drop: float
    control: float
    p: float  # one-sided Wilcoxon signed-rank p of drop > control over faces, Bonferroni-corrected
    n: int
    flagged: bool

    @property
    def effect(self) -> float:
        return self.drop - self.control


def paired_test(drops: np.ndarray, controls: np.ndarray, corrections: int, cfg: ReportConfig) -> PairedTest:
    """Does the change drop P(class) more than its control, face for face? Flagged when the
    corrected p-value is below cfg.alpha and the mean difference is at least cfg.min_effect."""
    from scipy.stats import wilcoxon

    differences = drops - controls
    # Wilcoxon drops zero differences; with none left there is no evidence either way.
    raw = (
        1.0
        if np.all(np.abs(differences) < 1e-9)
        else float(wilcoxon(differences, alternative="greater").pvalue)
    )
    p = min(1.0, raw * corrections)
    effect = float(differences.mean())
    flagged = p < cfg.alpha and effect >= cfg.min_effect
    return PairedTest(float(drops.mean()), float(controls.mean()), p, len(drops), flagged)


def where_in_face(region: np.ndarray) -> str:
    """'lower-right corner', 'top edge', … : where the region's centre lies in the crop."""
    ys, xs = np.nonzero(region)
    cy, cx = ys.mean() / region.shape[0], xs.mean() / region.shape[1]
    row = "top" if cy < 1 / 3 else "bottom" if cy > 2 / 3 else ""
    col = "left" if cx < 1 / 3 else "right" if cx > 2 / 3 else ""
    if row and col:
        return f"{'upper' if row == 'top' else 'lower'}-{col} corner"
    return f"{row or col} edge" if row or col else "centre"


def shares(maps: np.ndarray, masks: np.ndarray) -> dict[str, float]:
    return spread(np.array([background_share(m, k) for m, k in zip(maps, masks, strict=True)]))


@dataclass
class ModelReport:
    """Everything one model's report says; `to_dict` is report.json's content."""

    model: str
    data: str
    masks_from: str
    config: ReportConfig
    metrics: dict[str, Any]
    classes: list[ClassFigures]
    mean_maps: dict[str, dict[str, np.ndarray]]  # method → label → mean map (for the figures)
    mean_faces: dict[str, np.ndarray]  # label → mean face
    mistakes: list[dict[str, Any]]
    mistake_tiles: list[tuple[np.ndarray, str]]
    sanity: Any = None  # emotion.evaluation.sanity.SanityResult, when asked for
    remedy: Remedy | None = None  # what to do when a class is flagged

    @property
    def flagged(self) -> list[str]:
        return [c.label for c in self.classes if c.flagged]

    def summary(self) -> str:
        """The report in words: what is flagged and what to do, or that nothing is; which classes
        could not be tested; and which read one side of the picture."""
        sides = "".join(f" {side_sentence(c)}" for c in self.classes if c.one_sided)
        return self._background_summary() + sides

    def _background_summary(self) -> str:
        untested = [c.label for c in self.classes if c.status in ("too few faces", "not testable")]
        caveat = f" Not tested: {', '.join(untested)} (see their rows)." if untested else ""
        if not self.flagged:
            clean = [c.label for c in self.classes if c.status == "clean"]
            if not clean:
                return f"No class could be tested, so there is no verdict.{caveat}"
            return (
                f"No tested class depends on the background ({', '.join(clean)}): neither covering its "
                "strongest background region nor replacing its whole background drops its probability "
                f"clearly more than the same change made at random or within the class.{caveat}"
            )
        return " ".join(c.sentence for c in self.classes if c.flagged) + caveat

    @property
    def one_sided(self) -> list[str]:
        return [c.label for c in self.classes if c.one_sided]

    def to_dict(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "data": self.data,
            "face_masks": self.masks_from,
            "flagged": self.flagged,
            "summary": self.summary(),
            "remedy": asdict(self.remedy) if self.remedy else None,
            "one_sided": self.one_sided,
            "accuracy": self.metrics["accuracy"],
            "swapped_accuracy": self.metrics["swapped_accuracy"],
            "macro_f1": self.metrics["macro_f1"],
            "confusion_matrix": self.metrics["confusion_matrix"],
            "label_names": self.metrics["label_names"],
            "classes": {c.label: class_json(c) for c in self.classes},
            "mistakes": self.mistakes,
            "sanity": self.sanity.to_dict() if self.sanity is not None else None,
            "config": asdict(self.config),
        }


def build_report(model: EmotionModel, faces: ReportFaces, cfg: ReportConfig = ReportConfig()) -> ModelReport:
    """Every figure of the report for one model on these faces."""
    from tqdm.auto import tqdm

    from training.metrics import compute_metrics

    probs = model.predict(faces.images)
    pred = probs.argmax(1)
    metrics = compute_metrics(faces.labels, pred, tuple(model.labels))
    background = background_pixels(faces.face_masks, cfg.min_background)
    rng = np.random.default_rng(cfg.seed)
    classes, mean_maps, mean_faces = [], {m: {} for m in cfg.methods}, {}
    for index, label in enumerate(tqdm(model.labels, desc="classes", unit="class")):
        mine = np.flatnonzero(faces.labels == index)
        own = mine[pred[mine] == index][: cfg.max_faces]
        figures = ClassFigures(label, len(own), float((pred[mine] == index).mean()) if len(mine) else 0.0)
        classes.append(figures)
        if len(own) == 0:
            figures.status = "too few faces"
            figures.sentence = f"{label}: no correctly classified face, so no figures and no test."
            continue
        images, masks = faces.images[own], faces.face_masks[own]
        mean_faces[label] = images.astype(np.float32).mean(0).round().astype(np.uint8)
        cams = last_stage_gradcams(model, images)[:, index]
        # The lean and the localization read the stride-8 Grad-CAM: the last stage's coarse grid,
        # anchored at the crop's top-left corner, tilts every class's map to one side.
        fine = default_gradcams(model, images)[:, index]
        figures.localization = spread(localization(fine, masks, cfg.top_share))
        for method in cfg.methods:
            if method != "gradcam" and cfg.lime_faces == 0:
                continue
            maps = (
                cams if method == "gradcam" else _method_maps(model, method, images[: cfg.lime_faces], label)
            )
            figures.background_share[method] = shares(maps, masks[: len(maps)])
            mean_maps[method][label] = _peak_one(maps.mean(0))
        if len(own) < cfg.min_faces:
            figures.status = "too few faces"
            figures.sentence = (
                f"{label}: not tested, only {len(own)} correctly classified faces (the tests need "
                f"{cfg.min_faces}): neither clean nor flagged."
            )
            continue
        base = probs[own, index]  # the faces as they are: every test's drops start here
        side_tests(model, figures, index, images, masks, fine, len(model.labels), cfg, base)
        if not background.any():
            figures.status = "not testable"
            figures.not_testable.append(
                f"no pixel is background on {cfg.min_background:.0%} of the faces, so there is none to change"
            )
            figures.sentence = f"{label}: not tested: {figures.not_testable[0]}."
        else:
            background_tests(model, figures, index, own, faces, cams.mean(0), background, rng, cfg, base)
    metrics["swapped_accuracy"] = swapped_accuracy(model, faces, background, rng)
    mistakes, tiles = _mistakes(model, faces, probs, cfg.mistakes)
    sanity = None
    if cfg.sanity_methods:
        from emotion.evaluation.sanity import cascading_randomisation

        picks = classes_in_turn(faces.labels)[: cfg.sanity_faces]
        sanity = cascading_randomisation(model, faces.images[picks], cfg.sanity_methods)
    return ModelReport(
        model.source,
        faces.source,
        faces.masks_from,
        cfg,
        metrics,
        classes,
        mean_maps,
        mean_faces,
        mistakes,
        tiles,
        sanity,
        remedy_for(model, faces.source, cfg.seed) if any(c.flagged for c in classes) else None,
    )


def classes_in_turn(labels: np.ndarray) -> np.ndarray:
    """Indices ordered first face of each class, then second of each, …: a few faces taken from
    the front are not all of one emotion."""
    within = np.zeros(len(labels), np.int64)
    seen: dict[int, int] = {}
    for i, label in enumerate(labels.tolist()):
        within[i] = seen.get(label, 0)
        seen[label] = within[i] + 1
    return np.argsort(within, kind="stable")


def _method_maps(model: EmotionModel, method: str, images: np.ndarray, label: str) -> np.ndarray:
    return np.stack([maps[label] for maps in get_explainer(method)(model, images)])


def _peak_one(heat: np.ndarray) -> np.ndarray:
    peak = float(heat.max())
    return (heat / peak if peak > 0 else heat).astype(np.float32)


def side_sentence(c: ClassFigures) -> str:
    """What the one-side test found for a class, in words."""
    d = c.half_drops
    side = "left" if d["left"] + d["mirrored_left"] > d["right"] + d["mirrored_right"] else "right"
    return (
        f"{c.label} reads the {side} side of the picture: covering the left or the right half of its "
        f"faces drops P({c.label}) by {d['left']:.2f} or {d['right']:.2f}, and on the same faces "
        f"mirrored by {d['mirrored_left']:.2f} or {d['mirrored_right']:.2f}, where a model that "
        f"follows the face would swap them (p = {c.side_p:.2g} corrected); its Grad-CAM leans "
        f"{c.lean['mean']:+.2f} ({c.mirrored_lean['mean']:+.2f} mirrored)."
    )


@dataclass(frozen=True)
class Remedy:
    """What to do about a flagged class: a sentence, and the commands to run, in order."""

    sentence: str
    commands: tuple[str, ...] = ()


def remedy_for(model: EmotionModel, data: str, seed: int = 0) -> Remedy:
    """Retrain against the background, then report on the new model beside the old one."""
    run = RunFolder.holding(model.folder) if model.folder is not None else None
    if model.info.get("against_background"):
        return Remedy(
            "This model was already trained against the background (on "
            f"{model.info['against_background']:.0%} of the faces), which keeps only the face's core: "
            "what the class reads lies on the face itself (make-up, glasses, a mark). Look at the "
            "mean maps for where it is."
        )
    old = model.source
    if run is not None:
        old, new = str(run.root), f"{run.root}-against-background"
        train = f"python -m training.train --config {run.config} --out {new} --against-background"
    else:
        new = "NEW"
        train = f"python -m training.train --data {data} --out {new} --against-background"
    split_seed = f" --seed {seed}" if seed else ""
    return Remedy(
        "To remove it, retrain against the background (every training face on other faces' "
        "backgrounds), then see the classes before and after:",
        (train, f"python -m training.shortcuts --model {new} --data {data}{split_seed} --compare {old}"),
    )


def swapped_accuracy(model: EmotionModel, faces: ReportFaces, background: np.ndarray, rng) -> float | None:
    """The accuracy when every face wears the background of a face of another emotion: what a
    model that reads faces keeps and one that reads backgrounds loses. None without a background
    or a second emotion."""
    labels = faces.labels
    if not background.any() or len(np.unique(labels)) < 2:
        return None
    donors = np.array([rng.choice(np.flatnonzero(labels != label)) for label in labels])
    swapped = swap_background(faces.images, faces.images[donors][:, None], background)
    return float((model.predict(swapped).argmax(1) == labels).mean())


def spread(values: np.ndarray) -> dict[str, float]:
    return {"mean": float(np.mean(values)), "std": float(np.std(values)), "n": len(values)}


def localization(maps: np.ndarray, masks: np.ndarray, top: float) -> np.ndarray:
    """Per map, the share of its mass on the face that lies in its strongest `top` share of face
    pixels: 1 for a map on a few pixels, `top` for a flat one."""
    values = []
    for heat, mask in zip(maps, masks, strict=True):
        on_face = np.sort(heat[mask])[::-1]
        keep = max(1, int(round(top * len(on_face))))
        total = on_face.sum()
        values.append(on_face[:keep].sum() / total if total > 0 else np.nan)
    return np.array(values)


def centre_column(mask: np.ndarray) -> float:
    """The face's centre column: the mean x of its mask, where its left and right halves meet."""
    return float(np.nonzero(mask)[1].mean())


def lean(maps: np.ndarray, masks: np.ndarray) -> np.ndarray:
    """Per map, (L − R) / (L + R) of its mass on the face, L and R the face's halves left and right
    of its centre column (the mask's mean x) in the picture: +1 all left, −1 all right, 0 even."""
    xs = np.arange(maps.shape[2])
    values = []
    for heat, mask in zip(maps, masks, strict=True):
        centre = centre_column(mask)
        on_face = np.where(mask, heat, 0.0)
        left, right = on_face[:, xs < centre].sum(), on_face[:, xs > centre].sum()
        values.append((left - right) / (left + right) if left + right > 0 else 0.0)
    return np.array(values)


def cover_half(images: np.ndarray, masks: np.ndarray, left: bool) -> np.ndarray:
    """Copies of the faces with the face's left (or right) half in the picture, split at its
    centre column, filled with the face's mean colour."""
    out = images.copy()
    xs = np.arange(images.shape[2])
    for face, mask in zip(out, masks, strict=True):
        side = xs < centre_column(mask) if left else xs > centre_column(mask)
        face[mask & side[None, :]] = face[mask].mean(axis=0).round().astype(np.uint8)
    return out


def half_drops(
    model: EmotionModel, images: np.ndarray, masks: np.ndarray, index: int, base: np.ndarray
) -> np.ndarray:  # fmt: skip
    """2×N: per face, the drop of P(label `index`) from `base` (its value on the faces as they are)
    when the face's left half in the picture is covered (row 0) and when its right half is (row 1)."""
    covered = np.concatenate([cover_half(images, masks, True), cover_half(images, masks, False)])
    return base[None] - model.predict(covered)[:, index].reshape(2, len(images))


def side_test(
    drops: np.ndarray, mirrored: np.ndarray, corrections: int, cfg: ReportConfig
) -> tuple[float, bool]:  # fmt: skip
    """(corrected p, one-sided?) from `half_drops` on the faces and on the same faces mirrored,
    each in its own picture. A model that follows the face (an eyebrow raised higher on one side)
    needs the other half of the picture once the face is mirrored, and its left-minus-right
    differences cancel; one that reads a side of the picture needs that side on both, and their
    mean is tested against 0 (two-sided Wilcoxon, Bonferroni over `corrections`)."""
    from scipy.stats import wilcoxon

    side = ((drops[0] - drops[1]) + (mirrored[0] - mirrored[1])) / 2
    if np.all(np.abs(side) < 1e-9):
        return 1.0, False
    p = min(1.0, float(wilcoxon(side).pvalue) * corrections)
    return p, p < cfg.alpha and abs(float(side.mean())) >= cfg.min_side


def side_tests(
    model: EmotionModel, figures: ClassFigures, index: int, images: np.ndarray, masks: np.ndarray,
    cams: np.ndarray, classes: int, cfg: ReportConfig, base: np.ndarray | None = None,
) -> None:  # fmt: skip
    """Does the class read one side of the picture? Covering each half of the face, on the faces
    and on the same faces mirrored (`side_test`); beside it the maps' lean on both, and the drop
    of P(class) when the faces are mirrored. `base`: P(class) on the faces, if already known."""
    mirrored, mirrored_masks = np.ascontiguousarray(images[:, :, ::-1]), masks[:, :, ::-1]
    base = model.predict(images)[:, index] if base is None else base
    mirrored_base = model.predict(mirrored)[:, index]
    figures.lean = spread(lean(cams, masks))
    figures.mirrored_lean = spread(lean(default_gradcams(model, mirrored)[:, index], mirrored_masks))
    drops = half_drops(model, images, masks, index, base)
    mirrored_drops = half_drops(model, mirrored, mirrored_masks, index, mirrored_base)
    figures.half_drops = {
        "left": float(drops[0].mean()),
        "right": float(drops[1].mean()),
        "mirrored_left": float(mirrored_drops[0].mean()),
        "mirrored_right": float(mirrored_drops[1].mean()),
    }
    figures.side_p, figures.one_sided = side_test(drops, mirrored_drops, classes, cfg)
    figures.mirror_drop = spread(base - mirrored_base)


def background_tests(
    model, figures: ClassFigures, index: int, own: np.ndarray, faces: ReportFaces, mean_cam, background, rng,
    cfg: ReportConfig, base: np.ndarray | None = None,
) -> None:  # fmt: skip
    """The two tests of one class on its correctly classified faces `own`, each against its
    control on the same faces: covering its strongest background region (against random regions
    of the same area), and replacing its whole background (with other emotions' faces' against
    other faces of its own emotion's). `base`: P(class) on those faces, if already known."""
    corrections = 2 * len(model.labels)  # every test the report makes: two per class
    images = faces.images[own]
    # Once: every test's drops are from these.
    base = model.predict(images)[:, index] if base is None else base
    region = strongest_region(mean_cam, background, cfg.region_level, cfg.max_region_share)
    ys, xs = np.nonzero(region)
    figures.occlusion_region = [int(xs.min()), int(ys.min()), int(np.ptp(xs)) + 1, int(np.ptp(ys)) + 1]
    figures.occlusion_area = int(region.sum())
    figures.occlusion_where = where_in_face(region)
    figures.region_mask = region
    tests: dict[str, PairedTest] = {}
    controls = random_regions(region, background, cfg.random_regions, rng)
    if controls:
        tests["region test"] = paired_test(
            occlusion_drops(model, images, base, index, [region]),
            occlusion_drops(model, images, base, index, controls),
            corrections,
            cfg,
        )
    else:
        figures.not_testable.append(
            f"no room for a control: no random background region of {figures.occlusion_area} px fits "
            "beside the strongest one"
        )
    swapped = whole_background_drops(model, faces, own, base, index, background, cfg.donors, rng)
    if swapped is not None:
        tests["whole-background test"] = paired_test(*swapped, corrections, cfg)
    else:
        figures.not_testable.append("no faces to take backgrounds from (one emotion, or one face of it)")
    if (region_test := tests.get("region test")) is not None:
        figures.occlusion_drop, figures.random_drop = region_test.drop, region_test.control
        figures.occlusion_p = region_test.p
    if (swap_test := tests.get("whole-background test")) is not None:
        figures.swap_drop, figures.swap_control_drop, figures.swap_p = (
            swap_test.drop,
            swap_test.control,
            swap_test.p,
        )
    figures.flagged_by = [name for name, test in tests.items() if test.flagged]
    figures.flagged = bool(figures.flagged_by)
    figures.status = "flagged" if figures.flagged else "clean" if len(tests) == 2 else "not testable"
    figures.sentence = _class_sentence(figures, tests, cfg)


def _class_sentence(figures: ClassFigures, tests: dict[str, PairedTest], cfg: ReportConfig) -> str:
    """What the tests found for one class, in words a user reads without the README."""
    label = figures.label
    if figures.flagged:
        head = f"{label} depends on the background (flagged by the {' and the '.join(figures.flagged_by)})"
    elif figures.status == "clean":
        head = f"{label} does not depend on the background"
    else:
        head = f"{label} could not be tested fully ({'; '.join(figures.not_testable)})"
    parts = []
    if (t := tests.get("region test")) is not None:
        parts.append(
            f"covering its strongest background region ({figures.occlusion_area} px, "
            f"{figures.occlusion_where}) drops P({label}) by {t.drop:.2f} on average over {t.n} faces, "
            f"against {t.control:.2f} for random background regions of the same area ({_evidence(t, cfg)})"
        )
    if (t := tests.get("whole-background test")) is not None:
        parts.append(
            f"giving them other emotions' backgrounds drops it by {t.drop:.2f}, against {t.control:.2f} "
            f"with other {label} faces' backgrounds ({_evidence(t, cfg)})"
        )
    if figures.not_testable and figures.status != "not testable":
        parts.append(f"a test could not be made ({'; '.join(figures.not_testable)})")
    return f"{head}: {'; '.join(parts)}." if parts else f"{head}."


def _evidence(test: PairedTest, cfg: ReportConfig) -> str:
    verdict = "a flag" if test.flagged else "no flag"
    return (
        f"difference {test.effect:+.2f}, p = {test.p:.2g} corrected; {verdict}: a flag needs "
        f"p < {cfg.alpha:g} and a difference ≥ {cfg.min_effect:.2f}"
    )


def _mistakes(model: EmotionModel, faces: ReportFaces, probs: np.ndarray, k: int):
    pred = probs.argmax(1)
    wrong = np.flatnonzero(pred != faces.labels)
    wrong = wrong[np.argsort(-probs[wrong, pred[wrong]])][:k]
    if len(wrong) == 0:
        return [], []
    cams = last_stage_gradcams(model, faces.images[wrong])
    rows, tiles = [], []
    for j, i in enumerate(wrong):
        true, guess, p = model.labels[faces.labels[i]], model.labels[pred[i]], float(probs[i, pred[i]])
        rows.append({"index": int(i), "true": true, "predicted": guess, "probability": round(p, 4)})
        tiles.append((overlay(faces.images[i], cams[j, pred[i]]), f"{true} → {guess} {p:.0%}"))
    return rows, tiles


def class_json(figures: ClassFigures) -> dict[str, Any]:
    values = rounded_for_json({k: v for k, v in asdict(figures).items() if k != "region_mask"})
    # p-values to 3 significant digits: 4 decimals would turn p = 2e-06 into a p of 0.
    values.update({k: float(f"{v:.3g}") for k in P_VALUES if (v := getattr(figures, k)) is not None})
    return values


P_VALUES = ("occlusion_p", "swap_p")


# --- pictures -----------------------------------------------------------------------------
def _save_figure(fig, path: Path) -> None:
    save_figure(fig, path, dpi=110, bbox_inches="tight")


def save_mean_maps(report: ModelReport, path: Path) -> None:
    """A row per method, a column per class: the mean map over the class's mean face, the
    covered region outlined, its background share in the title (red when flagged)."""
    from emotion.explainers.registry import title_of

    plt = pyplot()
    # A method with no map at all (no correctly classified face anywhere) still gets its row.
    methods = [m for m in report.config.methods if report.mean_maps.get(m)] or list(report.config.methods[:1])
    fig, axes = plt.subplots(
        len(methods),
        len(report.classes),
        figsize=(2.3 * len(report.classes), 2.6 * len(methods)),
        squeeze=False,
    )
    for row, method in enumerate(methods):
        for col, figures in enumerate(report.classes):
            ax = axes[row, col]
            ax.axis("off")
            heat = report.mean_maps.get(method, {}).get(figures.label)
            if heat is None:
                ax.set_title(f"{figures.label}\n(no faces)", fontsize=9)
                continue
            face = report.mean_faces[figures.label]
            ax.imshow(overlay(face, heat, size=face.shape[0]))
            share = figures.background_share[method]
            ax.set_title(
                f"{title_of(method)}: {figures.label}\n"
                f"{share['mean']:.0%} ± {share['std']:.0%} outside (n={share['n']})",
                fontsize=9,
                color="#b00020" if figures.flagged else "black",
            )
            if figures.region_mask is not None and method == "gradcam":
                edge = "#b00020" if figures.flagged else "white"
                ax.contour(figures.region_mask, levels=[0.5], colors=[edge], linewidths=1.5, linestyles="--")
    _save_figure(fig, path)


def save_occlusion_plot(report: ModelReport, path: Path) -> None:
    """Per class and test: the drop of P(class) under the test's change beside its control's,
    the corrected p-value above, flagged pairs in red."""
    plt = pyplot()
    panels = (
        ("Cover the strongest background region", "occlusion_drop", "random_drop", "occlusion_p",
         "random regions of the same area"),
        ("Replace the whole background", "swap_drop", "swap_control_drop", "swap_p",
         "backgrounds of the same emotion"),
    )  # fmt: skip
    fig, axes = plt.subplots(1, 2, figsize=(10.5, 3.4), sharey=True)
    for ax, (title, drop, control, p_key, control_name) in zip(axes, panels, strict=True):
        rows = [c for c in report.classes if getattr(c, drop) is not None]
        xs = np.arange(len(rows))
        colours = ["#b00020" if c.flagged else "#1f77b4" for c in rows]
        ax.bar(xs - 0.2, [getattr(c, drop) for c in rows], 0.4, color=colours, label="test")
        ax.bar(
            xs + 0.2,
            [getattr(c, control) for c in rows],
            0.4,
            color="#aaaaaa",
            label=f"control: {control_name}",
        )
        for x, c in zip(xs, rows, strict=True):
            top = max(getattr(c, drop), getattr(c, control), 0.0)
            ax.text(x, top + 0.02, f"p={getattr(c, p_key):.1g}", ha="center", fontsize=7)
        ax.set_xticks(xs, [c.label for c in rows], fontsize=8)
        ax.set_title(title, fontsize=10)
        # Below the axes: above them it would sit on the tall bars a flag has.
        ax.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.12), ncol=2, frameon=False)
    lowest = min([0.0, *(v for c in report.classes for v in (c.random_drop, c.swap_control_drop) if v)])
    axes[0].set_ylim(lowest - 0.05, 1.12)  # room for the p-values over a drop of 1
    axes[0].set_ylabel("mean drop of P(class)")
    fig.suptitle("Does the prediction need the background? (red: flagged)", fontsize=11)
    _save_figure(fig, path)


def save_tiles(tiles: list[tuple[np.ndarray, str]], path: Path, *, columns: int = 6) -> None:
    plt = pyplot()
    rows = max(1, -(-len(tiles) // columns))
    fig, axes = plt.subplots(rows, columns, figsize=(2.2 * columns, 2.4 * rows), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for ax, (image, text) in zip(axes.flat, tiles, strict=False):
        ax.imshow(image)
        ax.set_title(text, fontsize=9)
    _save_figure(fig, path)


def write_pictures(report: ModelReport, out: Path, prefix: str = "") -> dict[str, str]:
    """The report's PNGs in `out`, names prefixed; {what: file name}."""
    from training.metrics import save_confusion_matrix

    files = {
        "mean_maps": f"{prefix}{REPORT_FILES['mean_maps']}",
        "occlusion": f"{prefix}{REPORT_FILES['occlusion']}",
        "confusion_matrix": f"{prefix}{REPORT_FILES['confusion_matrix']}",
    }
    save_mean_maps(report, out / files["mean_maps"])
    save_occlusion_plot(report, out / files["occlusion"])
    save_confusion_matrix(report.metrics, out / files["confusion_matrix"])
    if report.mistake_tiles:
        files["mistakes"] = f"{prefix}{REPORT_FILES['mistakes']}"
        save_tiles(report.mistake_tiles, out / files["mistakes"])
    if report.sanity is not None:
        from emotion.evaluation.sanity import save_sanity_plot

        files["sanity"] = f"{prefix}{REPORT_FILES['sanity']}"
        save_sanity_plot(report.sanity, out / files["sanity"])
    return files


# --- comparison ---------------------------------------------------------------------------
def differences(before: ModelReport, after: ModelReport, *, marked: float = 0.1) -> list[dict[str, Any]]:
    """Per class, what changed from `before` to `after`: the flag, the drops, the background
    share, the lean and the localization of the maps and the recall; `marked` is set where the flag
    or the one-side verdict changed or a figure moved by ≥ `marked`."""
    rows = []
    for a, b in zip(before.classes, after.classes, strict=True):
        row: dict[str, Any] = {"label": a.label, "flagged": [a.flagged, b.flagged]}
        row["one_sided"] = [a.one_sided, b.one_sided]
        for key, x, y in (
            ("occlusion_drop", a.occlusion_drop, b.occlusion_drop),
            ("swap_drop", a.swap_drop, b.swap_drop),
            ("background_share", _share(a), _share(b)),
            ("lean", _mean(a.lean), _mean(b.lean)),
            ("localization", _mean(a.localization), _mean(b.localization)),
            ("recall", a.recall, b.recall),
        ):
            row[key] = [rounded_for_json(x), rounded_for_json(y)]
            row[f"{key}_change"] = None if x is None or y is None else round(y - x, 4)
        changes = [abs(v) for k, v in row.items() if k.endswith("_change") and v is not None]
        flips = a.flagged != b.flagged or a.one_sided != b.one_sided
        row["marked"] = flips or any(c >= marked for c in changes)
        rows.append(row)
    return rows


def _share(c: ClassFigures) -> float | None:
    return c.background_share.get("gradcam", {}).get("mean")


def _mean(figure: dict[str, float] | None) -> float | None:
    return None if figure is None else figure["mean"]


# --- html ---------------------------------------------------------------------------------
_STYLE = """
body{font-family:system-ui,sans-serif;margin:1.5rem auto;max-width:1200px;padding:0 1rem;color:#222}
table{border-collapse:collapse;margin:.5rem 0 1rem;font-size:.9rem}
td,th{border:1px solid #ccc;padding:.25rem .5rem;text-align:right}
th:first-child,td:first-child{text-align:left}
.flag{color:#b00020;font-weight:600} .marked{background:#fff3c4}
.cols{display:flex;gap:1rem;flex-wrap:wrap} .cols>div{flex:1 1 480px;min-width:0}
img{max-width:100%;height:auto}
.wide{overflow-x:auto}
pre{white-space:pre-wrap;overflow-wrap:anywhere;background:#f4f4f4;padding:.5rem}
"""


def _class_table(report: ModelReport) -> str:
    methods = report.config.methods
    head = "".join(f"<th>{html.escape(m)}: outside face</th>" for m in methods)
    rows = []
    for c in report.classes:
        cells = "".join(
            f"<td>{c.background_share[m]['mean']:.0%} ± {c.background_share[m]['std']:.0%}</td>"
            if m in c.background_share
            else "<td>–</td>"
            for m in methods
        )
        region = test_cell(c.occlusion_drop, c.random_drop, c.occlusion_p)
        swap = test_cell(c.swap_drop, c.swap_control_drop, c.swap_p)
        status = f'<span class="flag">{c.status}</span>' if c.flagged else html.escape(c.status or "–")
        rows.append(
            f"<tr><td>{html.escape(c.label)}</td><td>{c.faces}</td><td>{c.recall:.0%}</td>{cells}"
            f"<td>{region}</td><td>{swap}</td><td>{status}</td></tr>"
        )
    return (
        '<div class="wide"><table><tr><th>class</th><th>faces</th><th>recall</th>'
        f"{head}<th>cover strongest region: drop / control (p)</th>"
        "<th>replace whole background: drop / control (p)</th><th>verdict</th></tr>"
        f"{''.join(rows)}</table></div>"
    )


def _side_table(report: ModelReport) -> str:
    def figure(value: dict[str, float] | None, fmt: str = "+.2f") -> str:
        return "–" if value is None else f"{value['mean']:{fmt}} ± {value['std']:.2f}"

    def halves(c: ClassFigures, prefix: str) -> str:
        d = c.half_drops
        return "–" if d is None else f"{d[prefix + 'left']:.2f} / {d[prefix + 'right']:.2f}"

    rows = "".join(
        f"<tr><td>{html.escape(c.label)}</td><td>{halves(c, '')}</td><td>{halves(c, 'mirrored_')}</td>"
        f"<td>{'–' if c.side_p is None else f'{c.side_p:.2g}'}</td><td>{_side_verdict(c)}</td>"
        f"<td>{figure(c.lean)}</td><td>{figure(c.mirrored_lean)}</td><td>{figure(c.mirror_drop)}</td>"
        f"<td>{figure(c.localization, '.2f')}</td></tr>"
        for c in report.classes
    )
    cfg = report.config
    return (
        "<p>Which part of the face. <b>One side</b>: the drop of P(class) when the face's left or "
        "right half in the picture is covered (filled with the face's mean colour), on the faces "
        "and on the same faces mirrored. A model that follows the face needs the other half once "
        "the face is mirrored; one that reads a side of the picture needs the same half on both, "
        f"and is named when its left-minus-right difference, averaged over the two, is ≥ "
        f"{cfg.min_side:.2f} away from 0 (two-sided Wilcoxon test corrected for the "
        f"{len(report.classes)} classes, p < {cfg.alpha:g}). Beside it: the (stride-8) Grad-CAM's "
        "<i>lean</i> over the face, (left − right) / (left + right), on the faces and mirrored; how "
        "much mirroring drops P(class); and <i>localization</i>, the map's face mass in its "
        f"strongest {cfg.top_share:.0%} of face pixels (mean ± spread over the faces).</p>"
        '<div class="wide"><table><tr><th>class</th><th>cover left / right</th>'
        "<th>mirrored: cover left / right</th><th>p</th><th>verdict</th><th>map lean</th>"
        "<th>map lean, mirrored</th><th>mirroring drops P by</th><th>localization</th></tr>"
        f"{rows}</table></div>"
    )


def _remedy_html(report: ModelReport) -> str:
    if report.remedy is None:
        return ""
    commands = "\n".join(report.remedy.commands)
    return f"<p><b>What to do:</b> {html.escape(report.remedy.sentence)}</p>" + (
        f"<pre>{html.escape(commands)}</pre>" if commands else ""
    )


def _side_verdict(c: ClassFigures) -> str:
    if c.one_sided:
        return '<span class="flag">one side</span>'
    return "–" if c.lean is None else "both sides"


def _model_section(report: ModelReport, files: dict[str, str], title: str) -> str:
    flagged = ", ".join(report.flagged) or "none"
    pictures = "".join(
        f"<h3>{html.escape(what.replace('_', ' ').capitalize())}</h3>"
        f'<img src="{html.escape(name)}" alt="{html.escape(what)}">'
        for what, name in files.items()
    )
    sentences = "".join(f"<li>{html.escape(c.sentence)}</li>" for c in report.classes if c.sentence)
    if report.sanity is not None:
        failing = ", ".join(report.sanity.flagged_methods()) or "none"
        sentences += (
            f"<li>Sanity check (cascading randomisation): methods whose maps barely change when the "
            f"network's top layers are re-initialised: {html.escape(failing)}. "
            f"{html.escape(report.sanity.rule_text())}</li>"
        )
    return (
        f"<div><h2>{html.escape(title)}</h2><p><code>{html.escape(report.model)}</code> · accuracy "
        f"{report.metrics['accuracy']:.1%} · macro-F1 {report.metrics['macro_f1']:.3f} · flagged: "
        f'<span class="{"flag" if report.flagged else ""}">{html.escape(flagged)}</span></p>'
        f"<p>Accuracy with every face on another emotion's background: "
        f"{_percent_or_dash(report.metrics.get('swapped_accuracy'))}.</p>"
        f"<p>{html.escape(report.summary())}</p>{_remedy_html(report)}{_class_table(report)}<ul>{sentences}</ul>"
        f"{_side_table(report)}{pictures}</div>"
    )


def _percent_or_dash(value: float | None) -> str:
    return "–" if value is None else f"{value:.1%}"


def _difference_table(before: ModelReport, after: ModelReport) -> str:
    def pair(values, change):
        a, b = ("–" if v is None else f"{v:.2f}" if isinstance(v, float) else str(v) for v in values)
        return f"{a} → {b}" + (f" ({change:+.2f})" if change is not None else "")

    def verdicts(values, word):
        return " → ".join(word if v else "no" for v in values)

    body = "".join(
        f'<tr class="{"marked" if r["marked"] else ""}"><td>{html.escape(r["label"])}</td>'
        f"<td>{verdicts(r['flagged'], 'flagged')}</td>"
        f"<td>{pair(r['occlusion_drop'], r['occlusion_drop_change'])}</td>"
        f"<td>{pair(r['swap_drop'], r['swap_drop_change'])}</td>"
        f"<td>{pair(r['background_share'], r['background_share_change'])}</td>"
        f"<td>{pair(r['lean'], r['lean_change'])}</td><td>{verdicts(r['one_sided'], 'one side')}</td>"
        f"<td>{pair(r['localization'], r['localization_change'])}</td>"
        f"<td>{pair(r['recall'], r['recall_change'])}</td></tr>"
        for r in differences(before, after)
    )
    accuracy = " ".join(
        f"{name} {b.metrics[key]:.1%} → {a.metrics[key]:.1%}."
        for name, key, b, a in (
            ("Accuracy on these faces:", "accuracy", before, after),
            ("With every face on another emotion's background:", "swapped_accuracy", before, after),
        )
        if b.metrics.get(key) is not None and a.metrics.get(key) is not None
    )
    return (
        f"<h2>What changed</h2><p>{accuracy} The second is what a model keeps when no background can "
        "help it: a model that reads faces loses little of its accuracy there, one that reads "
        "backgrounds loses much.</p><p>Per class; highlighted: a verdict changed, or a figure moved by "
        "0.10 or more. <i>Lean</i>: of the Grad-CAM over the face, (left − right) / (left + right) in "
        "the picture. <i>Localization</i>: its face mass in its strongest 10 % of face pixels.</p>"
        '<div class="wide"><table><tr><th>class</th><th>flag</th><th>region drop</th>'
        "<th>whole-background drop</th><th>Grad-CAM outside face</th><th>lean</th><th>one side</th>"
        f"<th>localization</th><th>recall</th></tr>{body}</table></div>"
    )


def render_html(report: ModelReport, files: dict[str, str], before=None) -> str:
    """report.html: one model, or (`before`: its report and pictures) the model before it beside
    it, with the differences marked."""
    cfg = report.config
    note = (
        f"<p>Data: <code>{html.escape(report.data)}</code> ({cfg.split} split); the face from "
        f"{html.escape(report.masks_from)}; background: the pixels off the face on "
        f"{cfg.min_background:.0%} of the faces. Each class with at least {cfg.min_faces} correctly "
        "classified faces gets two tests, each against a control made on the same faces: "
        "<b>cover the strongest background region</b> (around its mean Grad-CAM's background peak, "
        f"down to half of it, at most {cfg.max_region_share:.0%} of the background; filled with the "
        f"colour around it) against {cfg.random_regions} random background regions of the same area, "
        "and <b>replace the whole background</b> with other emotions' faces' backgrounds "
        f"({cfg.donors} from each other emotion, the median of the emotions' drops, so that one "
        "emotion's own cue cannot flag another) against other faces of the same emotion's. A test "
        "flags its class "
        "when its drop beats the control's face for face (one-sided Wilcoxon signed-rank test, "
        f"p-value Bonferroni-corrected for the {2 * len(report.classes)} tests of this report, "
        f"below {cfg.alpha:g}) and by at least {cfg.min_effect:.2f} of probability on average. The "
        "region test finds a local cue (a logo, a caption); the whole-background test also finds "
        "one spread over the background (a colour cast, a texture) that no single region holds. "
        "Grad-CAM here is the last stage's (from the forward, cheap over hundreds of faces), not the "
        "page's default at the stride-8 stage. The tests change only the background: a cue inside "
        "the face region (on crops, the part of a caption or a bar that reaches into the ellipse) "
        "is beyond their reach.</p>"
    )
    if before is None:
        body = _model_section(report, files, "Model")
    else:
        other, other_files = before
        body = _difference_table(other, report) + (
            f'<div class="cols">{_model_section(other, other_files, "Before")}'
            f"{_model_section(report, files, 'After')}</div>"
        )
    return (
        '<!doctype html><html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width,initial-scale=1">'
        f"<title>Shortcut report</title><style>{_STYLE}</style></head><body>"
        f"<h1>Shortcut report</h1>{note}{body}</body></html>"
    )


def write_report(report: ModelReport, out: Path, before: ModelReport | None = None) -> dict[str, Any]:
    """report.json, report.html and the PNGs into `out`, with the report of the model `before` it
    (e.g. before retraining against the background) beside it when given; returns report.json's
    content (the model before under "before", what changed under "differences")."""
    out.mkdir(parents=True, exist_ok=True)
    files = write_pictures(report, out)
    content = report.to_dict() | {"files": files}
    other = None
    if before is not None:
        other_files = write_pictures(before, out, prefix="before_")
        other = (before, other_files)
        content["before"] = before.to_dict() | {"files": other_files}
        content["differences"] = differences(before, report)
    write_file_atomically(out / REPORT_FILES["json"], (json.dumps(content, indent=2) + "\n").encode())
    write_file_atomically(out / REPORT_FILES["html"], render_html(report, files, other).encode())
    return content


def report_model(
    model_source: str,
    data: str,
    out: Path | None = None,
    *,
    compare: str | None = None,
    cfg: ReportConfig = ReportConfig(),
) -> dict[str, Any]:
    """Load, compute and write; `out` None means the run folder's report/ (a run folder is needed).
    `compare`: the model before this one, reported on the same faces and shown beside it."""
    from emotion.storage.model_folder import load_model

    if out is None:
        run = RunFolder.holding(model_source)
        if run is None:
            raise ReportError(f"--model {model_source} is not a run folder: give --out DIR for the report.")
        out = run.report_dir
    model = load_model(model_source)
    faces = load_report_faces(data, tuple(model.labels), cfg)
    report = build_report(model, faces, cfg)
    other = build_report(load_model(compare), faces, cfg) if compare else None
    content = write_report(report, Path(out), other)
    log.info("%s", report.summary())
    if report.remedy:
        log.info("What to do: %s\n  %s", report.remedy.sentence, "\n  ".join(report.remedy.commands))
    log.info("Report written to %s", Path(out) / REPORT_FILES["html"])
    return content


@command
def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog=program_name("training.shortcuts"),
        description=__doc__.split("\n\n")[0] + " Flags classes whose predictions depend on the background.",
    )
    parser.add_argument("--model", required=True, help="run folder, model folder or Hub id")
    parser.add_argument(
        "--data", required=True, help="data source as for training (folder, CSV, synthetic:N…)"
    )
    parser.add_argument("--out", type=Path, help="output folder (default: the run folder's report/)")
    parser.add_argument(
        "--compare",
        metavar="OLD",
        help="the model before this one (e.g. before retraining with --against-background): both "
        "reports side by side, before and after, with what changed",
    )
    parser.add_argument("--split", choices=("val", "all"), default="val", help="the held-out faces, or all")
    parser.add_argument("--seed", type=int, default=0, help="the split seed used in training")
    parser.add_argument(
        "--lime-faces", type=int, default=ReportConfig.lime_faces, help="LIME faces per class (0: no LIME)"
    )
    parser.add_argument(
        "--sanity",
        default="",
        metavar="METHODS",
        help="add the sanity check (cascading randomisation) of these methods, e.g. gradcam,guided_backprop",
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    methods = ("gradcam", "lime") if args.lime_faces > 0 else ("gradcam",)
    cfg = ReportConfig(
        split=args.split,
        seed=args.seed,
        lime_faces=args.lime_faces,
        methods=methods,
        sanity_methods=parse_methods(args.sanity),
    )
    content = report_model(args.model, args.data, args.out, compare=args.compare, cfg=cfg)
    if "before" in content:
        print(f"flagged before: {', '.join(content['before']['flagged']) or 'none'}")
    print(f"flagged: {', '.join(content['flagged']) or 'none'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
