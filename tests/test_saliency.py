"""The gradient family beside Grad-CAM and LIME: registered, off by default, maps of the right
shape and range for every label, computed from the image, and the model left as it was."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from emotion import EMOTIONS, explain
from emotion.explainers.compare import map_correlation
from emotion.explainers.registry import default_methods, get_explainer, method_names
from emotion.explainers.saliency import guided_backprop, input_gradients
from training.synthetic import make_dataset

FAST = ("gradcam_last", "gradcam_pp", "guided_backprop", "guided_gradcam", "saliency", "smoothgrad")


@pytest.fixture(scope="module")
def two_faces() -> np.ndarray:
    return make_dataset(1, seed=5).images[:2]  # a happy and a sad face


def _check_maps(maps: list[dict[str, np.ndarray]], n_faces: int) -> None:
    assert len(maps) == n_faces
    for face_maps in maps:
        assert list(face_maps) == list(EMOTIONS)
        for heat in face_maps.values():
            assert heat.shape == (100, 100) and heat.dtype == np.float32
            assert heat.min() >= 0.0 and heat.max() <= 1.0 and heat.max() > 0.5  # scaled, not flat


def test_the_family_is_registered_but_not_run_by_default():
    for name in (*FAST, "scorecam"):
        assert name in method_names() and name not in default_methods()
    assert default_methods() == ("gradcam", "lime")


@pytest.mark.parametrize("name", FAST)
def test_each_method_maps_every_label_of_every_face(untrained_model, two_faces, name):
    _check_maps(get_explainer(name)(untrained_model, two_faces), len(two_faces))


def test_the_default_gradcam_is_the_librarys_gradcam_at_layer2(untrained_model, two_faces):
    """Known answer: pytorch-grad-cam's own GradCAM on `layer2` (the stride-8 stage), called
    directly, face by face and one label at a time; the project's batches faces and labels."""
    from pytorch_grad_cam import GradCAM
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    net = untrained_model.net
    assert untrained_model.fine_cam_layer_name == "layer2" and untrained_model.fine_cam_grid == (13, 13)
    hooks = len(net.layer2._forward_hooks)
    maps = get_explainer("gradcam")(untrained_model, two_faces)
    assert len(net.layer2._forward_hooks) == hooks  # its hook is gone
    for face, face_maps in zip(two_faces, maps, strict=True):
        x = untrained_model.to_tensor(face)
        for label in ("sad", "angry"):
            with torch.autocast("cpu", enabled=False), GradCAM(model=net, target_layers=[net.layer2]) as cam:
                want = cam(input_tensor=x, targets=[ClassifierOutputTarget(EMOTIONS.index(label))])[0]
            np.testing.assert_allclose(face_maps[label], want, atol=1e-5)
        assert map_correlation(face_maps["sad"], face_maps["happy"]) < 0.999  # each label its own target
    assert map_correlation(maps[0]["sad"], maps[1]["sad"]) < 0.999  # each face its own maps


@pytest.mark.slow
def test_score_cam_maps_every_label(untrained_model, two_faces):
    # One forward per channel of layer4 per label: 2560 masked faces, ~15 s here.
    _check_maps(get_explainer("scorecam")(untrained_model, two_faces[:1]), 1)


def test_input_gradients_read_the_image(untrained_model, two_faces):
    a, b = (input_gradients(untrained_model, face) for face in two_faces)
    # A map that ignored the image would be the same for two different faces.
    assert map_correlation(a[0], b[0]) < 0.9
    # SmoothGrad is seeded: the same face gives the same map.
    once = input_gradients(untrained_model, two_faces[0], noise=0.15, samples=4, seed=3)
    again = input_gradients(untrained_model, two_faces[0], noise=0.15, samples=4, seed=3)
    np.testing.assert_array_equal(once, again)


def test_guided_backprop_leaves_the_model_as_it_was(untrained_model, two_faces):
    before = untrained_model.predict(two_faces)
    kinds = [type(m) for m in untrained_model.net.modules()]
    guided_backprop(untrained_model, two_faces[0])
    assert [type(m) for m in untrained_model.net.modules()] == kinds  # its ReLUs were not swapped
    np.testing.assert_array_equal(untrained_model.predict(two_faces), before)
    assert all(p.grad is None for p in untrained_model.net.parameters())


def test_selectable_in_explain_and_the_cli(untrained_model, untrained_folder, astronaut, tmp_path, capsys):
    from PIL import Image

    from emotion.__main__ import main

    report = explain(untrained_model, astronaut, ("saliency", "gradcam"))
    assert list(report.faces[0].maps) == ["gradcam", "saliency"]  # registry order
    photo = tmp_path / "astronaut.png"
    Image.fromarray(astronaut).save(photo)
    assert (
        main(["explain", str(photo), "--model", str(untrained_folder), "--json", "--methods", "smoothgrad"])
        == 0
    )
    assert json.loads(capsys.readouterr().out)["faces"][0]["methods"] == ["smoothgrad"]
