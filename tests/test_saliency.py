"""The gradient family beside Grad-CAM and LIME: registered, off by default, maps of the right
shape and range for every label, computed from the image, and the model left as it was."""

from __future__ import annotations

import copy
import json

import numpy as np
import pytest
import torch

from emotion import EMOTIONS, explain
from emotion.evaluation.agreement import map_correlation
from emotion.explainers.registry import default_methods, get_explainer, method_names
from emotion.explainers.saliency import guided_backprop, input_gradients
from emotion.model import build_model
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
    assert untrained_model.gradcam_layer_name == "layer2" and untrained_model.gradcam_grid == (13, 13)
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


def _library_cam(model, cam_class, face: np.ndarray, label: str, layer: torch.nn.Module) -> np.ndarray:
    """pytorch-grad-cam's `cam_class` called directly, as its README does: one face, one
    `ClassifierOutputTarget`, `layer` as the target layer, fp32."""
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    target = [ClassifierOutputTarget(model.labels.index(label))]
    with torch.autocast("cpu", enabled=False), cam_class(model=model.net, target_layers=[layer]) as cam:
        return cam(input_tensor=model.to_tensor(face), targets=target)[0]


def _same_map(ours: np.ndarray, theirs: np.ndarray, atol: float) -> bool:
    return float(np.abs(ours - theirs).max()) <= atol


def test_gradcam_pp_is_the_librarys_gradcam_plus_plus_at_the_last_stage(untrained_model, two_faces):
    """Known answer: the registered Grad-CAM++ equals pytorch-grad-cam's `GradCAMPlusPlus` on the
    last stage (`model.last_stage_layer`), called per face and label. Control through the same
    assertion: the library's Grad-CAM++ at `layer3` (measured 0.14-0.24 away) fails it."""
    from pytorch_grad_cam import GradCAMPlusPlus

    net = untrained_model.net
    assert untrained_model.last_stage_layer is net.layer4
    maps = get_explainer("gradcam_pp")(untrained_model, two_faces)
    for face, face_maps in zip(two_faces, maps, strict=True):
        for label in ("sad", "angry"):
            want = _library_cam(untrained_model, GradCAMPlusPlus, face, label, net.layer4)
            assert _same_map(face_maps[label], want, atol=1e-5), label
            other_layer = _library_cam(untrained_model, GradCAMPlusPlus, face, label, net.layer3)
            assert not _same_map(face_maps[label], other_layer, atol=1e-5), label


@pytest.fixture(scope="module")
def narrow_model():
    """A randomly initialised resnet18 with narrow stages (8, 16, 24, 32 channels): Score-CAM
    makes one forward per channel of its layer per label, 160 for five labels here against 2560
    for the standard resnet18."""
    torch.manual_seed(0)
    model = build_model("resnet18", model_args={"output_stride": 16, "channels": (8, 16, 24, 32)})
    model.net.eval()
    return model


def test_score_cam_is_the_librarys_score_cam_at_the_last_stage(narrow_model, two_faces):
    """Known answer: the registered Score-CAM (batched, 64 masked faces per forward) equals
    pytorch-grad-cam's `ScoreCAM` on the last stage, called per label with its own batch size.
    Control through the same assertion: the library's Score-CAM at `layer3` (measured 0.11 away)
    fails it. A random network's maps are smooth blobs (correlation 0.995 with `layer3`'s), so
    the maps are compared pixel by pixel, not by correlation."""
    from pytorch_grad_cam import ScoreCAM

    model, face = narrow_model, two_faces[0]
    assert model.last_stage_layer is model.net.layer4
    maps = get_explainer("scorecam").for_face(model, face)
    for label in ("sad", "angry"):
        want = _library_cam(model, ScoreCAM, face, label, model.net.layer4)
        assert _same_map(maps[label], want, atol=1e-5), label
        other_layer = _library_cam(model, ScoreCAM, face, label, model.net.layer3)
        assert not _same_map(maps[label], other_layer, atol=1e-5), label


def _guided_times_cam(guided: np.ndarray, cam: np.ndarray) -> np.ndarray:
    """pytorch-grad-cam's README's Guided Grad-CAM, `cam_mask * gb` (H×W×3), as one map the way
    the project draws pixel gradients: |·| largest over the colour channels, min-max scaled."""
    from pytorch_grad_cam.utils.image import scale_cam_image

    return scale_cam_image(np.abs(cam[..., None] * guided).max(axis=2)[None])[0]


def test_guided_gradcam_is_guided_backprop_times_the_librarys_gradcam(untrained_model, two_faces):
    """Known answer, computed here from the library's parts: guided backprop
    (`GuidedBackpropReLUModel`) × `GradCAM` at the last stage, per label. Within 1e-3, not
    exactly: the project min-max scales |guided backprop| before the product, which shifts it by
    its minimum (measured 2-4e-4 away, correlation 1 - 1e-12). Controls through the same
    assertion: the product with the Grad-CAM at `layer3`, and guided backprop alone (0.19-0.99
    away)."""
    from pytorch_grad_cam import GradCAM, GuidedBackpropReLUModel
    from pytorch_grad_cam.utils.image import scale_cam_image

    model, net = untrained_model, untrained_model.net
    maps = get_explainer("guided_gradcam")(model, two_faces)
    guided = GuidedBackpropReLUModel(copy.deepcopy(net).eval(), device=model.device)  # it swaps ReLUs
    for face, face_maps in zip(two_faces, maps, strict=True):
        for label in ("sad", "angry"):
            with torch.autocast("cpu", enabled=False):
                gb = guided(model.to_tensor(face), target_category=model.labels.index(label))
            want = _guided_times_cam(gb, _library_cam(model, GradCAM, face, label, net.layer4))
            assert _same_map(face_maps[label], want, atol=1e-3), label
            other_layer = _guided_times_cam(gb, _library_cam(model, GradCAM, face, label, net.layer3))
            assert not _same_map(face_maps[label], other_layer, atol=1e-3), label
            alone = scale_cam_image(np.abs(gb).max(axis=2)[None])[0]
            assert not _same_map(face_maps[label], alone, atol=1e-3), label


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
