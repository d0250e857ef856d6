"""Meaning checks on the real demo recipe: it learns, and its maps look where the emotion is.

The demo model is trained once per session with `training.demo` (the same code `python -m app`
runs on first start); synthetic faces come with masks of the regions that define each emotion,
so "where it looked" can be checked against ground truth.
"""

from __future__ import annotations

import shutil

import numpy as np
import pytest
import torch
from scipy.stats import wilcoxon

from emotion import EMOTIONS
from emotion.evaluation.groundtruth import centred_blob, pointing_score, region_share
from emotion.explainers.gradcam import GRADCAM
from emotion.explainers.lime import LIME, LimeConfig, segment_face
from emotion.storage.model_folder import SHIPPED_DEMO_DIR, load_model
from emotion.storage.runs import MEAN_GRADCAM, RunFolder
from training.demo import ensure_demo_model
from training.synthetic import make_dataset
from training.train import demo_preset

pytestmark = pytest.mark.slow


@pytest.fixture(scope="session")
def fresh_faces():
    # Seed 99: faces the demo model never saw (it trains on seed 0).
    return make_dataset(8, seed=99)


def test_demo_preset_reaches_95_percent_and_says_it_is_synthetic(demo_folder, demo_model):
    run = RunFolder(demo_folder)
    metrics = run.read_metrics()
    assert metrics["accuracy"] >= 0.95, metrics
    assert demo_model.is_demo and "synthetic" in demo_model.info["trained_on"]
    assert run.plot(MEAN_GRADCAM) and metrics["mean_gradcam_faces"] > 0


def test_demo_model_generalises_to_faces_from_another_seed(demo_model, fresh_faces):
    pred = demo_model.predict(fresh_faces.images).argmax(1)
    assert (pred == fresh_faces.labels).mean() >= 0.85


def test_demo_model_is_reused_not_retrained(demo_folder):
    weights = RunFolder(demo_folder).model_dir / "model.safetensors"
    stamp = weights.stat().st_mtime_ns
    assert ensure_demo_model(demo_folder) == demo_folder
    assert weights.stat().st_mtime_ns == stamp


def _mouth_beats_brows_and_eyes(heat: np.ndarray, masks: dict[str, np.ndarray], i: int) -> bool:
    """The map weighs the mouth above brows + eyes (per pixel): a comparison inside the face, so
    a map that only knows where the face is cannot pass it."""
    return float(heat[masks["mouth"][i]].mean()) > float(heat[masks["brows"][i] | masks["eyes"][i]].mean())


def _happy_faces(faces) -> list[int]:
    return [i for i, y in enumerate(faces.labels) if EMOTIONS[y] == "happy"]


def _happy_mouth_wins(explainer, model, faces) -> list[bool]:
    """Per happy face: does `explainer`'s happy map weigh the mouth above brows + eyes?"""
    return [
        _mouth_beats_brows_and_eyes(explainer.for_face(model, faces.images[i])["happy"], faces.masks, i)
        for i in _happy_faces(faces)
    ]


# Measured on the demo model (issue 10): it reads happy from the mouth. Swapping the mouth for
# the same face's neutral one drops P(happy) by 0.85, the brows by 0.00 and the eyes by 0.03
# (`python -m bench.truth --parts pointing`, region swaps). The default Grad-CAM reads the
# stride-8 stage for this: the last stage's map, each of whose cells sees the whole face, is a
# blob near the nose that weighed the mouth above brows + eyes on 1 of 8 happy faces, as often as
# a centred blob does (the control below).
def test_happy_gradcam_weighs_the_mouth_above_brows_and_eyes(demo_model, fresh_faces):
    wins = _happy_mouth_wins(GRADCAM, demo_model, fresh_faces)
    assert np.mean(wins) >= 0.75, wins


@pytest.fixture(scope="module")
def right_faces(demo_model, fresh_faces) -> np.ndarray:
    """Indices of the fresh faces the demo model classifies correctly (the pointing game's faces)."""
    return np.flatnonzero(demo_model.predict(fresh_faces.images).argmax(1) == fresh_faces.labels)


def _pointing_score(heat_of, faces, right) -> float:
    """The pointing game over the faces `right`: the mean `pointing_score` of the true emotion's
    map against the regions that define it (a peak within 4 px scores 1; a flat top, the share of
    it within 4 px)."""
    scores = []
    for i in right:
        label = EMOTIONS[faces.labels[i]]
        scores.append(pointing_score(heat_of(i, label), faces.defining_mask(i, label)))
    return float(np.mean(scores))


# The bar is 0.8, not the 90 % target: that is measured by `bench.seeds` on the shipped demo model
# over 450 unseen faces, while this model is retrained on the machine that runs the tests (another
# kind of CPU trains another model from the same seed), and some builds of the recipe score 75-87 %
# (bench/results/demo-seeds.txt).
def test_gradcam_points_at_the_defining_regions_and_a_blob_does_not(demo_model, fresh_faces, right_faces):
    score = _pointing_score(
        lambda i, label: GRADCAM.for_face(demo_model, fresh_faces.images[i])[label], fresh_faces, right_faces
    )
    blob = _pointing_score(lambda i, label: centred_blob(100), fresh_faces, right_faces)
    assert score >= 0.8 and score - blob >= 0.25, (score, blob)
    assert not (blob >= 0.8)  # the control fails the same bar


@pytest.fixture(scope="module")
def lime_maps(demo_model, fresh_faces):
    """The default LIME's maps of every fresh face, with the app's own LimeConfig."""
    return LIME(demo_model, fresh_faces.images)


def test_lime_points_at_the_defining_regions_and_a_blob_does_not(fresh_faces, right_faces, lime_maps):
    score = _pointing_score(lambda i, label: lime_maps[i][label], fresh_faces, right_faces)
    blob = _pointing_score(lambda i, label: centred_blob(100), fresh_faces, right_faces)
    assert score >= 0.8 and score - blob >= 0.25, (score, blob)
    assert not (blob >= 0.8)  # the control fails the same bar


def test_a_centred_blob_fails_the_happy_mouth_test(fresh_faces):
    """The control through the same assertion: a map that knows only where faces are."""
    blob = centred_blob(100)
    happy = _happy_faces(fresh_faces)
    assert np.mean([_mouth_beats_brows_and_eyes(blob, fresh_faces.masks, i) for i in happy]) < 0.75


def _face_share(heat: np.ndarray, face: np.ndarray) -> float:
    return float(heat[face].sum() / max(heat.sum(), 1e-6))


def test_gradcam_maps_concentrate_on_the_face_for_the_true_emotion(demo_model, fresh_faces):
    inside, uniform = [], []
    for i, y in enumerate(fresh_faces.labels):
        heat = GRADCAM.for_face(demo_model, fresh_faces.images[i])[EMOTIONS[y]]
        face = fresh_faces.masks["face"][i]
        inside.append(_face_share(heat, face))
        uniform.append(_face_share(np.ones_like(heat), face))
    # The face covers roughly 40 % of the crop; the evidence should sit mostly on it. A uniform
    # map, which ignores the image, fails the same bar. (A centred blob would pass: this test
    # only says "on the face"; where on the face is the mouth and LIME tests' job.)
    assert np.median(inside) >= 0.6, inside
    assert np.median(uniform) < 0.6, uniform


def _top5_hits(seg_weight: dict[int, float], touches: dict[int, bool]) -> float:
    top5 = sorted(seg_weight, key=seg_weight.get, reverse=True)[:5]
    return float(np.mean([touches[s] for s in top5]))


def _lime_region_scores(demo_model, fresh_faces, lime_maps):
    """Per face (every other one): the top-5 hit rate of LIME's segments and of a ranking by
    distance from the centre, chance over the segments inside the face, and the mass share in
    the predicted emotion's regions of LIME, the centred blob and the face mask."""
    config = LimeConfig()  # the app's own settings
    rows = []
    centre = np.hypot(*np.mgrid[-49.5:50.5, -49.5:50.5])
    blob = centred_blob(100)
    masks = fresh_faces.masks
    for i in range(0, len(fresh_faces.labels), 2):
        face = fresh_faces.images[i]
        top = EMOTIONS[int(demo_model.predict(face).argmax())]
        maps = lime_maps[i]
        segments = segment_face(face, config)
        regions = fresh_faces.defining_mask(i, top)
        ids = np.unique(segments)
        in_face = [s for s in ids if masks["face"][i][segments == s].mean() > 0.5]
        touches = {s: bool(regions[segments == s].any()) for s in ids}
        rows.append(
            {
                "lime_top5": _top5_hits({s: maps[top][segments == s].mean() for s in ids}, touches),
                "centre_top5": _top5_hits({s: -centre[segments == s].mean() for s in ids}, touches),
                "chance": float(np.mean([touches[s] for s in in_face])),
                "lime_mass": region_share(maps[top], regions),
                "blob_mass": region_share(blob, regions),
                "face_mass": region_share(masks["face"][i].astype(np.float32), regions),
            }
        )
    return {key: float(np.nanmean([r[key] for r in rows])) for key in rows[0]}


@pytest.fixture(scope="module")
def lime_scores(demo_model, fresh_faces, lime_maps):
    return _lime_region_scores(demo_model, fresh_faces, lime_maps)


def _beats_chance(top5: float, chance: float) -> bool:
    return top5 >= 0.6 and top5 >= chance + 0.15


# Measured on the demo model (issue 10), default LimeConfig: LIME's top-5 segments touch the
# emotion's regions 0.79 of the time, chance inside the face is 0.59, and a ranking by distance
# from the centre scores 0.69. With the 48 segments asked for before, they scored 0.72 against a
# chance of 0.73 (most of those larger face segments touched a feature) and the centre 0.88:
# then the test could not tell LIME from a map that knows only where the face is.
def test_lime_top_segments_beat_chance_inside_the_face_and_the_centre_does_not(lime_scores):
    assert _beats_chance(lime_scores["lime_top5"], lime_scores["chance"]), lime_scores
    assert not _beats_chance(lime_scores["centre_top5"], lime_scores["chance"]), lime_scores


def _concentrates(mass: float, face_mass: float) -> bool:
    # 1.5× what the face mask puts there: the face mask is the map that knows where the face is
    # and nothing more, so the bar is "clearly more than knowing the face".
    return mass >= 1.5 * face_mass


def test_lime_mass_sits_in_the_emotion_regions_and_the_blob_does_not(lime_scores):
    """With the app's own LimeConfig: LIME's evidence lies in the predicted emotion's regions
    clearly more than the face mask's; the centred blob fails the same bar.

    This bar says "more than knowing where the face is", not "read from this face": LIME's maps
    of other faces of the same emotion, shuffled onto these faces, pass it too (measured 2.0-2.1×
    the face mask's share, LIME's own 2.8×, the bar 1.5×). The next test asks that question."""
    s = lime_scores
    assert _concentrates(s["lime_mass"], s["face_mass"]), s
    assert not _concentrates(s["blob_mass"], s["face_mass"]), s


def _region_masses(model, faces, lime_maps, shift: int) -> np.ndarray:
    """Per fresh face, the share of a LIME map's mass in the regions that define the face's
    predicted emotion, measured as `lime_mass` is. The map is the face's own for `shift` 0, else
    the same emotion's map of the face `shift` places on among the faces predicted that emotion
    (in turn): a LIME map that knows where that emotion's features lie on faces, not this image."""
    pred = model.predict(faces.images).argmax(1)
    masses = []
    for i, c in enumerate(pred):
        group = np.flatnonzero(pred == c)
        other = group[(np.searchsorted(group, i) + shift) % len(group)]
        label = EMOTIONS[c]
        masses.append(region_share(lime_maps[other][label], faces.defining_mask(i, label)))
    return np.array(masses)


def _p_above(masses: np.ndarray, controls: np.ndarray) -> float:
    """The p-value that `masses` beat `controls` face by face (one-sided Wilcoxon signed-rank)."""
    return float(wilcoxon(masses, controls, alternative="greater").pvalue)


def test_lime_mass_follows_this_face_and_another_faces_map_does_not(demo_model, fresh_faces, lime_maps):
    """LIME reads the emotion's regions of *this* face: face by face, its map puts more of its mass
    there than the same emotion's LIME map of another face does (measured on the demo model: on
    78 % of the 40 faces, p < 1e-4). Control through the same assertion: one such shuffled map
    against another, both blind to this image, fails it (measured p = 0.18)."""
    own, shuffled, reshuffled = (_region_masses(demo_model, fresh_faces, lime_maps, s) for s in (0, 1, 2))
    p, p_control = _p_above(own, shuffled), _p_above(reshuffled, shuffled)
    seen = {"own": own.mean(), "shuffled": shuffled.mean(), "p": p, "p_control": p_control}
    assert p < 0.05, seen
    assert not (p_control < 0.05), seen


# --- the shipped demo model is the preset's ----------------------------------------------------
@pytest.fixture(scope="module")
def retrained_and_shipped(demo_folder):
    """The preset retrained here (`demo_folder`) and the shipped model, both explaining in fp32,
    scored by bench.truth's pointing game on the same unseen faces."""
    from bench.truth import pointing

    models = {
        "retrained": load_model(demo_folder, precision="fp32"),
        "shipped": load_model(SHIPPED_DEMO_DIR, precision="fp32"),
    }
    faces = make_dataset(12, seed=41, workers=1)
    many = make_dataset(100, seed=42, with_masks=False, workers=1)
    scores = {}
    for name, model in models.items():
        table, _, _ = pointing(model, faces, ("gradcam", "lime"))
        scores[name] = {
            "accuracy": float((model.predict(many.images).argmax(1) == many.labels).mean()),
            "val_accuracy": RunFolder.holding(model.folder).read_metrics()["accuracy"],
            **{method: table[method]["all"]["pointing"] for method in ("gradcam", "lime", "blob")},
        }
    return scores


def test_the_shipped_demo_model_is_what_the_preset_trains(retrained_and_shipped):
    """Accuracy within 1 point (on 500 unseen faces and on the validation split), Grad-CAM and
    LIME pointing within 5 points: the shipped model is the recipe's, not a lucky draw."""
    retrained, shipped = retrained_and_shipped["retrained"], retrained_and_shipped["shipped"]
    assert abs(retrained["accuracy"] - shipped["accuracy"]) <= 0.01, retrained_and_shipped
    assert abs(retrained["val_accuracy"] - shipped["val_accuracy"]) <= 0.01, retrained_and_shipped
    for method in ("gradcam", "lime"):
        assert abs(retrained[method] - shipped[method]) <= 0.05, (method, retrained_and_shipped)
        # the control, scored the same way, is far below: the agreement is not two blobs agreeing
        assert shipped[method] - shipped["blob"] >= 0.25, (method, retrained_and_shipped)


def test_ship_halves_the_weights_and_keeps_the_models_answers(demo_folder, tmp_path):
    """training.demo --ship on the retrained preset: float16 weights, half the bytes, every
    probability within SHIP_TOLERANCE of the fp32 model's on unseen faces, and metrics.json
    saying how it was built and checked."""
    from safetensors import safe_open

    from training.demo import SHIP_TOLERANCE, ship

    check = ship(demo_folder, tmp_path / "shipped")
    full, half = RunFolder(demo_folder), RunFolder(tmp_path / "shipped")
    half_weights, full_weights = half.model_dir / "model.safetensors", full.model_dir / "model.safetensors"
    with safe_open(half_weights, "pt") as f:
        dtypes = {f.get_tensor(k).dtype for k in f.keys()}  # noqa: SIM118  (safe_open is no dict)
    assert torch.float16 in dtypes and torch.float32 not in dtypes
    ratio = half_weights.stat().st_size / full_weights.stat().st_size
    assert 0.49 < ratio < 0.52
    faces = make_dataset(20, seed=43, with_masks=False, workers=1).images
    a = load_model(demo_folder, precision="fp32").predict(faces)
    b = load_model(half.root, precision="fp32").predict(faces)
    assert np.abs(a - b).max() <= SHIP_TOLERANCE and check["max_probability_change"] <= SHIP_TOLERANCE
    metrics = half.read_metrics()
    assert metrics["shipped"] == check and metrics["built_by"]["seed"] == demo_preset().seed
    assert half.read_report()["flagged"] == full.read_report()["flagged"] and half.plots()


def test_ship_refuses_weights_that_half_precision_would_change(demo_folder, tmp_path):
    """The control: a copy of the model whose head is scaled past float16's range must not ship."""
    from safetensors.torch import load_file, save_file

    from training.demo import ShipError, ship

    broken = tmp_path / "broken"
    shutil.copytree(demo_folder, broken, ignore=shutil.ignore_patterns("checkpoints", "tensorboard"))
    weights = RunFolder(broken).model_dir / "model.safetensors"
    state = load_file(weights)
    fc = state["fc.weight"]
    state["fc.weight"] = fc * (1e6 / fc.abs().max())  # most beyond float16's 65504: inf after halving
    save_file(state, weights)
    with pytest.raises(ShipError, match="full precision"):
        ship(broken, tmp_path / "shipped")
    assert not (tmp_path / "shipped").exists()


def test_the_shipped_copy_records_its_build_and_its_check():
    metrics = RunFolder(SHIPPED_DEMO_DIR).read_metrics()
    assert metrics["shipped"]["max_probability_change"] <= 0.01
    assert metrics["built_by"]["command"].startswith("python -m training.demo --seed")
    assert metrics["built_by"]["precision"] == demo_preset().precision
    assert metrics["built_by"]["seed"] == demo_preset().seed
