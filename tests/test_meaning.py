"""Meaning checks on the real demo recipe: it learns, and its maps look where the emotion is.

The demo model is trained once per session with `training.demo` (the same code `python -m app`
runs on first start); synthetic faces come with masks of the regions that define each emotion,
so "where it looked" can be checked against ground truth.
"""

from __future__ import annotations

import numpy as np
import pytest

from emotion import EMOTIONS
from emotion.explainers.gradcam import GRADCAM
from emotion.explainers.lime import LIME, LimeConfig, segment_face
from emotion.runs import MEAN_GRADCAM, RunFolder
from training.demo import ensure_demo_model
from training.synthetic import make_dataset

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


def _region_means(heat: np.ndarray, masks: dict[str, np.ndarray], i: int) -> tuple[float, float]:
    background = ~masks["face"][i]
    return float(heat[masks["mouth"][i]].mean()), float(heat[background].mean())


def test_happy_gradcam_weighs_the_mouth_above_the_background(demo_model, fresh_faces):
    happy = [i for i, y in enumerate(fresh_faces.labels) if EMOTIONS[y] == "happy"]
    wins = []
    for i in happy:
        maps = GRADCAM.for_face(demo_model, fresh_faces.images[i])
        mouth, background = _region_means(maps["happy"], fresh_faces.masks, i)
        wins.append(mouth > background)
    assert np.mean(wins) >= 0.75, wins


def test_gradcam_maps_concentrate_on_the_face_for_the_true_emotion(demo_model, fresh_faces):
    inside = []
    for i, y in enumerate(fresh_faces.labels):
        heat = GRADCAM.for_face(demo_model, fresh_faces.images[i])[EMOTIONS[y]]
        face = fresh_faces.masks["face"][i]
        inside.append(heat[face].sum() / max(heat.sum(), 1e-6))
    # The face covers roughly half the crop; the evidence should sit mostly on it.
    assert np.median(inside) >= 0.6, inside


def test_lime_top_segments_overlap_the_emotion_regions(demo_model, fresh_faces):
    config = LimeConfig(num_samples=400)
    hits, chance = [], []
    for i in range(0, len(fresh_faces.labels), 2):
        face = fresh_faces.images[i]
        top = EMOTIONS[int(demo_model.predict(face).argmax())]
        maps = LIME.for_face(demo_model, face, config=config)
        segments = segment_face(face, config)
        regions = fresh_faces.masks["brows"][i] | fresh_faces.masks["eyes"][i] | fresh_faces.masks["mouth"][i]
        seg_weight = {s: maps[top][segments == s].mean() for s in np.unique(segments)}
        top5 = sorted(seg_weight, key=seg_weight.get, reverse=True)[:5]
        touches = {s: bool(regions[segments == s].any()) for s in seg_weight}
        hits.append(np.mean([touches[s] for s in top5]))
        chance.append(np.mean(list(touches.values())))
    # Top segments land on brows/eyes/mouth clearly more often than a random segment does.
    assert np.mean(hits) >= 0.6 and np.mean(hits) > np.mean(chance) + 0.15, (hits, chance)
