"""The `explain` contract: shapes, ranges, probabilities, errors, determinism."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from emotion import EMOTIONS, NoFaceError, explain
from emotion.errors import FaceIndexError, UnknownMethodError
from emotion.explainers.lime import LIME, LimeConfig, segment_face
from emotion.explainers.saliency import GRADCAM_LAST
from emotion.model import build_model

FAST_LIME = LimeConfig(num_samples=120, batch_size=120)


def test_report_follows_the_contract_on_the_astronaut(untrained_model, astronaut):
    report = explain(untrained_model, astronaut, lime=FAST_LIME)
    assert report.image_size == (512, 512) and len(report.boxes) == 1
    (face,) = report.faces
    assert face.source == "detected" and face.face.shape == (100, 100, 3)
    assert list(face.probs) == list(EMOTIONS)
    assert abs(sum(face.probs.values()) - 1) < 1e-5
    for method in ("gradcam", "lime"):
        assert list(face.maps[method]) == list(EMOTIONS)
        for heat in face.maps[method].values():
            assert heat.shape == (100, 100) and heat.dtype == np.float32
            assert heat.min() >= 0.0 and heat.max() <= 1.0
    for step in ("detect", "classify", "gradcam", "lime", "total"):
        assert report.timings_ms[step] >= 0
    assert report.timings_ms["total"] >= report.timings_ms["lime"]
    assert report.to_dict()["faces"][0]["top"] == face.top


def test_classify_then_add_explanations_gives_what_explain_gives(untrained_model, astronaut):
    """The page's two steps: the faces classified with no maps, then the quick method's maps,
    then the rest; each method runs once and the report ends as one `explain` call's."""
    from emotion.photo.pipeline import add_explanations, classify

    whole = explain(untrained_model, astronaut, ["gradcam", "lime"])
    report = classify(untrained_model, astronaut)
    assert report.faces[0].maps == {} and report.faces[0].probs == whole.faces[0].probs
    add_explanations(untrained_model, report, ["gradcam"])
    first = report.faces[0].maps["gradcam"]
    assert list(report.faces[0].maps) == ["gradcam"]
    add_explanations(untrained_model, report, ["lime", "gradcam"])
    face = report.faces[0]
    assert list(face.maps) == ["gradcam", "lime"] and face.maps["gradcam"] is first  # not run again
    for method in ("gradcam", "lime"):
        for label in EMOTIONS:
            np.testing.assert_array_equal(face.maps[method][label], whole.faces[0].maps[method][label])
    assert face.figures == whole.faces[0].figures
    timings = report.timings_ms
    assert timings["total"] >= timings["classify"] + timings["gradcam"] + timings["lime"]


def test_image_can_be_a_path_a_pil_image_or_an_array(untrained_model, astronaut, tmp_path):
    from PIL import Image

    path = tmp_path / "a.png"
    Image.fromarray(astronaut).save(path)
    probs = [
        explain(untrained_model, src, methods=()).faces[0].probs
        for src in (path, Image.fromarray(astronaut), astronaut)
    ]
    assert probs[0] == probs[1] == probs[2]


def test_no_face_is_an_error_unless_the_whole_image_is_allowed(untrained_model):
    blank = np.full((240, 320, 3), 128, np.uint8)
    with pytest.raises(NoFaceError, match="whole_image='if_no_face'"):
        explain(untrained_model, blank, methods=())
    report = explain(untrained_model, blank, methods=("gradcam",), whole_image="if_no_face")
    assert report.faces[0].source == "whole image" and report.boxes == []
    assert report.faces[0].box.as_list() == [40, 0, 240, 240]


def test_unknown_method_and_face_number_are_clear_errors(untrained_model, astronaut):
    with pytest.raises(UnknownMethodError, match="'shap': choose from gradcam, lime"):
        explain(untrained_model, astronaut, methods=("shap",))
    with pytest.raises(UnknownMethodError, match="'limme'"):
        explain(untrained_model, astronaut, limme=LimeConfig())  # a misspelt method's settings
    with pytest.raises(FaceIndexError, match="1 face\\(s\\) found, numbered from 0") as caught:
        explain(untrained_model, astronaut, methods=(), face=3)
    assert (caught.value.index, caught.value.count) == (3, 1)
    with pytest.raises(FaceIndexError):
        explain(untrained_model, astronaut, methods=(), face=-1)


def test_all_faces_are_classified_and_explained_in_one_batch(untrained_model, astronaut):
    two = np.concatenate([astronaut, astronaut[:, ::-1]], axis=1)  # the astronaut and her mirror image
    report = explain(untrained_model, two, methods=("gradcam",), face="all")
    assert len(report.boxes) == 2 and [f.index for f in report.faces] == [0, 1]
    for result in report.faces:
        alone = explain(untrained_model, result.face, methods=("gradcam",), whole_image="always").faces[0]
        np.testing.assert_allclose(list(result.probs.values()), list(alone.probs.values()), atol=1e-5)
        for label in EMOTIONS:
            np.testing.assert_allclose(result.maps["gradcam"][label], alone.maps["gradcam"][label], atol=1e-4)


def test_lime_is_deterministic_for_the_same_face(untrained_model, astronaut):
    face = explain(untrained_model, astronaut, methods=()).faces[0].face
    a = LIME.for_face(untrained_model, face, config=FAST_LIME)
    b = LIME.for_face(untrained_model, face, config=FAST_LIME)
    assert np.array_equal(segment_face(face, FAST_LIME), segment_face(face, FAST_LIME))
    for label in EMOTIONS:
        np.testing.assert_array_equal(a[label], b[label])


def test_segmentation_cuts_a_face_into_feature_sized_pieces(astronaut):
    from emotion.photo.faces import crop_face, detect_faces

    face = crop_face(astronaut, detect_faces(astronaut)[0])
    segments = segment_face(face)
    n = len(np.unique(segments))
    assert 60 <= n <= 110, n  # 96 asked for; 74-90 on the astronaut and on drawn faces
    # No segment is larger than a twentieth of the face, so a mouth cannot share one with the
    # chin, nor a brow with the forehead above it.
    assert np.bincount(segments.ravel()).max() < 100 * 100 / 20


def test_last_stage_gradcam_runs_the_whole_batch_and_releases_its_hooks(untrained_model, astronaut):
    face = explain(untrained_model, astronaut, methods=()).faces[0].face
    # A max-pooled head has no shortcut, so the last stage's Grad-CAM goes through pytorch-grad-cam's
    # hooks (the default head takes the hook-free path and would leave nothing to release; the
    # default Grad-CAM's own hook is checked in tests/test_saliency.py).
    torch.manual_seed(0)
    model = build_model("resnet18", model_args={"output_stride": 16, "global_pool": "max"})
    assert not model.has_pooled_linear_head
    layer = model.last_stage_layer
    before = (len(layer._forward_hooks), len(layer._backward_hooks))
    hooks_seen = []  # how many forward hooks the layer carries while the maps are computed
    probe = layer.register_forward_hook(lambda module, *_: hooks_seen.append(len(module._forward_hooks)))
    try:
        maps = GRADCAM_LAST.for_face(model, face)
    finally:
        probe.remove()
    assert hooks_seen and max(hooks_seen) > 1, hooks_seen  # the library's hooks were attached
    assert (len(layer._forward_hooks), len(layer._backward_hooks)) == before
    assert set(maps) == set(EMOTIONS)
    # Each emotion has its own map: five identical maps would mean the targets were ignored.
    assert len({m.tobytes() for m in maps.values()}) == 5
