"""Figures beside every map, on known answers: background share, deletion/insertion AUC, the
evidence sentence, LIME's R², and their way into the Report, its JSON and the CLI."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from emotion import EMOTIONS, explain
from emotion.explainers.figures import (
    DELETION_AUC,
    FIT_R2,
    INSERTION_AUC,
    FaithfulnessConfig,
    FigureError,
    background_share,
    box_in_crop,
    crop_face_mask,
    deletion_insertion,
    evidence_sentence,
    face_mask_in_crop,
    figure_caption,
)
from emotion.explainers.lime import (
    LimeConfig,
    fill_face,
    lime_kernel_weights,
    orthogonal_patterns,
    perturbed_probabilities,
    segment_face,
)
from emotion.model import Preprocessing
from emotion.photo.faces import Box, crop_face

FAST_LIME = LimeConfig(num_samples=120, batch_size=120)
FAST_FAITHFULNESS = FaithfulnessConfig(steps=5)

SQUARE = (slice(30, 60), slice(30, 60))  # where the toy model looks


class ReadsTheSquare:
    """A toy classifier that reads only the fine texture inside SQUARE: its "happy" logit is 8 ×
    the mean step between neighbouring pixels there (1 for a 1-px black/white checkerboard), every
    other logit 0. Blur and the flat deletion colour both erase that texture."""

    labels = EMOTIONS
    preprocessing = Preprocessing()

    def __init__(self) -> None:
        self.batches: list[int] = []

    def predict(self, faces: np.ndarray, batch_size: int = 256) -> np.ndarray:
        self.batches.append(len(faces))
        patch = faces[:, SQUARE[0], SQUARE[1]].astype(np.float64) / 255
        texture = np.abs(np.diff(patch, axis=2)).mean(axis=(1, 2, 3))
        logits = np.zeros((len(faces), len(self.labels)))
        logits[:, 0] = 8 * texture
        exp = np.exp(logits)
        return (exp / exp.sum(axis=1, keepdims=True)).astype(np.float32)


def _checkered_face() -> np.ndarray:
    face = np.full((100, 100, 3), 128, np.uint8)
    yy, xx = np.mgrid[0:30, 0:30]
    face[SQUARE] = (255 * ((yy + xx) % 2))[..., None].astype(np.uint8)
    return face


def _square_map() -> np.ndarray:
    heat = np.zeros((100, 100), np.float32)
    heat[SQUARE] = 1.0
    return heat


def test_the_box_lies_where_crop_face_puts_it():
    box = Box(100, 120, 100, 100)
    # The 130-px square around the box shrinks to 100 px: the box spans 15..115 of it, 11.54..88.46
    # here, which holds the centres of pixels 12 to 87.
    assert box_in_crop(box, margin=0.15) == pytest.approx((11.538, 11.538, 88.462, 88.462), abs=1e-3)
    # The same box painted white in a photo comes out of crop_face where it says.
    photo = np.zeros((400, 400, 3), np.uint8)
    photo[box.y : box.y + box.h, box.x : box.x + box.w] = 255
    painted = crop_face(photo, box, margin=0.15)[..., 0] > 127
    rows, cols = np.flatnonzero(painted.any(axis=1)), np.flatnonzero(painted.any(axis=0))
    assert (rows[0], rows[-1], cols[0], cols[-1]) == (12, 87, 12, 87)  # the pixels whose centres it holds
    assert face_mask_in_crop(box, margin=0.15, source="whole image") is None


def test_the_face_on_a_crop_holds_faces_that_overflow_the_box_and_leaves_the_corners():
    """Drawn faces stand in for crops whose face overflows the Haar box (chin, jaw, a wide smile):
    the face ellipse holds their skin; the box alone, the control, calls much of it background.
    The crop's corners, where the original project's cue sat, stay background."""
    from training.synthetic import make_dataset

    skin = make_dataset(60, seed=21, workers=1).masks["face"]
    face = face_mask_in_crop(Box(0, 0, 1000, 1000), margin=0.15)
    assert np.array_equal(face, crop_face_mask(100, 0.15))
    x0, y0, x1, y1 = box_in_crop(Box(0, 0, 1000, 1000), margin=0.15)
    centres = np.arange(100) + 0.5
    box = ((centres >= y0) & (centres < y1))[:, None] & ((centres >= x0) & (centres < x1))[None, :]
    outside_face = (skin & ~face).sum((1, 2)) / skin.sum((1, 2))
    outside_box = (skin & ~box).sum((1, 2)) / skin.sum((1, 2))
    assert outside_face.max() < 0.01, outside_face.max()
    assert np.mean(outside_box > 0.01) > 0.3, "the control: the box alone cuts off chins and jaws"
    for corner in (face[:8, :8], face[:8, -8:], face[-8:, :8], face[-8:, -8:]):
        assert not corner.any()
    assert 0.3 < (~face).mean() < 0.4


def test_background_share_known_answers():
    mask = face_mask_in_crop(Box(0, 0, 50, 50), margin=0.2)
    face_map = mask.astype(np.float32)
    assert background_share(face_map, mask) == 0.0
    assert background_share(1 - face_map, mask) == 1.0
    uniform = np.full(mask.shape, 0.3, np.float32)
    assert background_share(uniform, mask) == pytest.approx((~mask).mean())
    assert math.isnan(background_share(np.zeros(mask.shape, np.float32), mask))  # points nowhere
    with pytest.raises(FigureError, match="size=heat.shape"):
        background_share(np.ones((7, 7), np.float32), mask)


def test_the_sentence_appears_only_when_most_of_the_map_is_outside_the_face():
    sentence = evidence_sentence("Grad-CAM", "angry", 0.62)
    assert sentence == (
        "angry is read mostly from the background: 62 % of its Grad-CAM lies outside the face"
    )
    for share in (0.5, 0.12, 0.0, math.nan):
        assert evidence_sentence("Grad-CAM", "angry", share) is None


def test_deletion_and_insertion_prefer_the_map_that_points_at_what_the_model_reads():
    model, face, heat = ReadsTheSquare(), _checkered_face(), _square_map()
    right = deletion_insertion(model, face, heat, "happy")
    inverted = deletion_insertion(model, face, 1 - heat, "happy")
    # Removing the square first drops "happy" from 0.9987 to 0.2 within 10 % of the pixels;
    # removing it last keeps it up for 90 %. Inserting mirrors that.
    assert right[0] < 0.3 < 0.8 < inverted[0]
    assert right[1] > 0.8 > 0.3 > inverted[1]
    assert all(0.0 <= auc <= 1.0 for auc in (*right, *inverted))
    # Both curves, every step, in one model call.
    steps = FaithfulnessConfig().steps
    assert model.batches == [2 * (steps + 1), 2 * (steps + 1)]
    with pytest.raises(FigureError, match="face resolution"):
        deletion_insertion(model, face, np.ones((7, 7), np.float32), "happy")


def test_explain_carries_figures_and_faithfulness_only_on_request(untrained_model, astronaut):
    plain = explain(untrained_model, astronaut, ("gradcam", "lime"), lime=FAST_LIME)
    (face,) = plain.faces
    assert list(face.figures) == ["gradcam", "lime"]
    for method in ("gradcam", "lime"):
        shares = face.figures[method]["background_share"]
        assert list(shares) == list(EMOTIONS) and all(0 <= s <= 1 for s in shares.values())
        assert "deletion_auc" not in face.figures[method]
    r2 = face.figures["lime"]["fit_r2"]
    assert list(r2) == list(EMOTIONS) and all(v <= 1 for v in r2.values())
    assert "fit_r2" not in face.figures["gradcam"]
    assert "figures" in plain.timings_ms and "faithfulness" not in plain.timings_ms

    faithful = explain(
        untrained_model, astronaut, ("gradcam", "lime"), lime=FAST_LIME, faithfulness=FAST_FAITHFULNESS
    )
    result = faithful.faces[0]
    for method in ("gradcam", "lime"):
        for name in ("deletion_auc", "insertion_auc"):
            (label,) = result.figures[method][name]  # the top emotion's map only
            assert label == result.top and 0 <= result.figures[method][name][label] <= 1
    assert faithful.timings_ms["faithfulness"] > 0
    as_json = json.loads(json.dumps(faithful.to_dict()))
    figures = as_json["faces"][0]["figures"]
    assert figures["lime"]["fit_r2"].keys() == set(EMOTIONS)
    assert figures["gradcam"]["deletion_auc"] == {
        result.top: round(result.figures["gradcam"]["deletion_auc"][result.top], 4)
    }
    assert isinstance(as_json["faces"][0]["sentences"], list)
    assert "background" in figure_caption(result.figures["lime"], result.top)
    assert "R² " in figure_caption(result.figures["lime"], result.top)


def test_the_reported_deletion_and_insertion_auc_are_those_of_the_reported_map(untrained_model, astronaut):
    """Known answer: for each method, the report's deletion and insertion AUC are what
    `deletion_insertion` gives, called here on the report's own face and top-emotion map (1e-6).
    Controls through the same assertion: the least likely emotion's map and the inverted map of
    the same method fail it (an untrained model's probabilities hardly move, so the gaps are small,
    1.1-1.9e-3 in the deletion AUC, but a thousand times the tolerance)."""
    report = explain(untrained_model, astronaut, ("gradcam", "lime"), lime=FAST_LIME, faithfulness=True)
    (result,) = report.faces
    last = min(result.probs, key=result.probs.get)
    for method, maps in result.maps.items():
        figures = result.figures[method]
        reported = (figures[DELETION_AUC][result.top], figures[INSERTION_AUC][result.top])
        own = deletion_insertion(untrained_model, result.face, maps[result.top], result.top)
        assert np.allclose(reported, own, rtol=0, atol=1e-6), (method, reported, own)
        for control in (maps[last], 1 - maps[result.top]):
            theirs = deletion_insertion(untrained_model, result.face, control, result.top)
            assert not np.allclose(reported, theirs, rtol=0, atol=1e-6), (method, reported, theirs)


def test_the_reported_lime_r2_is_the_weighted_r2_of_a_ridge_on_lime_s_own_samples(untrained_model, astronaut):
    """Known answer from scikit-learn, not the project's solver: LIME's samples for the report's
    face rebuilt (its patterns, fill and kernel weights), each label's probability fitted with
    `Ridge(alpha=1)` and `sample_weight`, as lime_base fits and scores it; its weighted R² is the
    report's `fit_r2` (1e-6; measured 4e-15 apart). Control through the same assertion: the R²
    of the same ridge fitted and scored without LIME's kernel weights (3e-4 to 1e-2 away on this
    face) fails it."""
    from sklearn.linear_model import Ridge

    report = explain(untrained_model, astronaut, ("lime",), lime=FAST_LIME)
    (result,) = report.faces
    face, config = result.face, FAST_LIME
    segments = segment_face(face, config)
    data = orthogonal_patterns(
        config.num_samples, int(segments.max()) + 1, np.random.RandomState(config.random_state)
    )
    probs = perturbed_probabilities(
        untrained_model, face, fill_face(face, segments, config), segments, data, config.batch_size
    )
    probs = probs.double().cpu().numpy()
    kernel = lime_kernel_weights(data)
    reported = np.array([result.figures["lime"][FIT_R2][label] for label in untrained_model.labels])
    weighted = np.array(
        [
            Ridge(alpha=1.0).fit(data, y, sample_weight=kernel).score(data, y, sample_weight=kernel)
            for y in probs.T
        ]
    )
    unweighted = np.array([Ridge(alpha=1.0).fit(data, y).score(data, y) for y in probs.T])
    assert np.allclose(reported, weighted, rtol=0, atol=1e-6), (reported, weighted)
    assert not np.allclose(reported, unweighted, rtol=0, atol=1e-6), (reported, unweighted)


def test_a_whole_image_face_has_no_background_share(untrained_model):
    blank = np.full((120, 160, 3), 128, np.uint8)
    report = explain(untrained_model, blank, ("gradcam",), whole_image="if_no_face")
    assert report.faces[0].figures == {"gradcam": {}}
    assert report.to_dict()["faces"][0]["sentences"] == []


def test_the_sentence_reaches_the_report_when_a_map_lies_outside_the_face(untrained_model, astronaut):
    from emotion.explainers.registry import Explainer, register, unregister

    def border(model, faces, features, progress, config):
        heat = np.zeros((100, 100), np.float32)
        for rows in (slice(0, 12), slice(88, 100)):  # the crop's corners: no face reaches them
            heat[rows, :12] = heat[rows, 88:] = 1.0
        return [{label: heat for label in model.labels} for _ in faces]

    register(Explainer("border", "Border", border, lambda model, config: "The crop's border.", default=False))
    try:
        report = explain(untrained_model, astronaut, ("border",))
    finally:
        unregister("border")
    (face,) = report.faces
    assert face.figures["border"]["background_share"][face.top] == 1.0
    share = face.figures["border"]["background_share"][face.top]
    assert face.sentences == [
        f"{face.top} is read mostly from the background: {100 * share:.0f} % of its Border lies "
        "outside the face"
    ]


def test_the_cli_json_carries_the_figures(untrained_folder, astronaut, tmp_path, capsys):
    from PIL import Image

    from emotion.__main__ import main

    path = tmp_path / "astronaut.png"
    Image.fromarray(astronaut).save(path)
    argv = ["explain", str(path), "--model", str(untrained_folder), "--json", "--methods", "gradcam"]
    assert main(argv) == 0
    face = json.loads(capsys.readouterr().out)["faces"][0]
    assert face["figures"]["gradcam"]["background_share"].keys() == set(EMOTIONS)
    assert "deletion_auc" not in face["figures"]["gradcam"]
    assert main([*argv, "--faithfulness"]) == 0
    face = json.loads(capsys.readouterr().out)["faces"][0]
    assert list(face["figures"]["gradcam"]["deletion_auc"]) == [face["top"]]
    assert list(face["figures"]["gradcam"]["insertion_auc"]) == [face["top"]]
