"""The explainer registry: a method registered once appears in the Report, the CLI, the figures and
the page; unknown names and face numbers past the last face are errors of their own."""

from __future__ import annotations

import json
from dataclasses import dataclass

import gradio as gr
import numpy as np
import pytest
from PIL import Image

from emotion import EMOTIONS, explain
from emotion.errors import FaceIndexError, UnknownMethodError
from emotion.explainers.lime import LimeConfig
from emotion.explainers.registry import (
    Explainer,
    default_methods,
    explainer_notes,
    method_names,
    register,
    resolve_methods,
    title_of,
    unregister,
)

from .conftest import method_galleries

FAST_LIME = LimeConfig(num_samples=64, batch_size=64)


@dataclass(frozen=True)
class Gain:
    gain: float = 1.0  # the brightness map is multiplied by this


@pytest.fixture
def brightness():
    """A test-only method: every label's map is the face's brightness times the gain, so a map
    says which face the method was given. Registered for the test, removed after."""
    calls = []

    def run(model, faces, features, progress, config):
        calls.append({"faces": faces.shape, "features": tuple(features.shape), "config": config})
        if progress:
            progress(1.0, "brightness done")
        return [
            {
                label: np.clip(face.mean(axis=2) / 255 * config.gain, 0, 1).astype(np.float32)
                for label in model.labels
            }
            for face in faces
        ]

    def describe(model, config):
        return f"Brightness of the {model.preprocessing.input_size}-px face times {config.gain}."

    entry = register(Explainer("brightness", "Brightness", run, describe, config=Gain()))
    yield entry, calls
    unregister("brightness")


def _brightness(face: np.ndarray) -> np.ndarray:
    return (face.mean(axis=2) / 255).astype(np.float32)


def test_a_registered_method_is_in_the_report_in_registry_order(untrained_model, astronaut, brightness):
    _, calls = brightness
    assert method_names()[:2] == ("gradcam", "lime") and method_names()[-1] == "brightness"
    assert default_methods() == ("gradcam", "lime", "brightness")
    report = explain(untrained_model, astronaut, lime=FAST_LIME)  # no methods named: the default ones
    (face,) = report.faces
    assert list(face.maps) == ["gradcam", "lime", "brightness"]
    assert list(face.maps["brightness"]) == list(EMOTIONS)
    np.testing.assert_allclose(face.maps["brightness"]["happy"], _brightness(face.face), atol=1e-6)
    # The forward's features came along: one face, the last block's K×h×w.
    assert calls[-1]["faces"] == (1, 100, 100, 3) and calls[-1]["features"][:1] == (1,)
    assert len(calls[-1]["features"]) == 4 and calls[-1]["config"] == Gain()
    assert report.timings_ms["brightness"] >= 0
    assert report.to_dict()["faces"][0]["methods"] == ["gradcam", "lime", "brightness"]


def test_settings_go_by_method_name_and_must_be_of_its_type(untrained_model, astronaut, brightness):
    report = explain(untrained_model, astronaut, methods=("brightness",), brightness=Gain(0.5))
    face = report.faces[0]
    assert list(face.maps) == ["brightness"]
    np.testing.assert_allclose(face.maps["brightness"]["sad"], _brightness(face.face) * 0.5, atol=1e-6)
    with pytest.raises(TypeError, match="takes a Gain, not a LimeConfig"):
        explain(untrained_model, astronaut, methods=("brightness",), brightness=LimeConfig())


def test_unknown_methods_are_named_with_the_registered_ones(brightness):
    with pytest.raises(UnknownMethodError, match=f"'shap': choose from {', '.join(method_names())}"):
        resolve_methods(("gradcam", "shap"))
    assert [e.name for e in resolve_methods(("brightness", "gradcam"))] == ["gradcam", "brightness"]
    assert [e.name for e in resolve_methods("lime")] == ["lime"]  # one name, not its letters
    with pytest.raises(ValueError, match="already registered"):
        register(brightness[0])
    with pytest.raises(ValueError, match="lower-case"):
        register(Explainer("Bright Ness", "x", brightness[0].run, brightness[0].describe))


def test_a_method_that_is_not_default_runs_only_when_named(untrained_model, astronaut):
    def flat(model, faces, features, progress, config):
        return [{label: np.zeros(face.shape[:2], np.float32) for label in model.labels} for face in faces]

    register(Explainer("flat", "Flat", flat, lambda model, config: "Nothing.", default=False))
    try:
        assert "flat" in method_names() and "flat" not in default_methods()
        assert "flat" not in explain(untrained_model, astronaut, methods=None, lime=FAST_LIME).faces[0].maps
        assert "flat" in explain(untrained_model, astronaut, methods=("flat",)).faces[0].maps
    finally:
        unregister("flat")
    assert title_of("flat") == "flat"  # a map made before the method went away still has a title


def test_notes_are_built_from_the_model_and_the_settings(untrained_model, brightness):
    notes = explainer_notes(untrained_model)
    assert list(notes) == list(method_names()) and list(notes)[-1] == "brightness"
    # resnet18 at output_stride 16 on 100×100 faces: layer2 is 13×13; layer4, 7×7, from the
    # forward's features.
    assert "`layer2`" in notes["gradcam"] and "13×13" in notes["gradcam"] and "stride 8" in notes["gradcam"]
    last = notes["gradcam_last"]
    assert "`layer4`" in last and "7×7" in last and "stride 16" in last and "forward's features" in last
    assert "SLIC for 96 superpixels" in notes["lime"] and "256 perturbed faces" in notes["lime"]
    assert notes["brightness"] == "Brightness of the 100-px face times 1.0."
    other = explainer_notes(untrained_model, ("lime",), lime=LimeConfig(n_segments=30, num_samples=64))
    assert list(other) == ["lime"] and "SLIC for 30" in other["lime"] and "64 perturbed" in other["lime"]


@pytest.fixture
def photo_path(astronaut, tmp_path):
    path = tmp_path / "astronaut.png"
    Image.fromarray(astronaut).save(path)
    return path


def test_the_cli_reports_and_draws_a_registered_method(
    untrained_folder, photo_path, tmp_path, capsys, brightness
):
    from emotion.__main__ import main

    out = tmp_path / "out"
    argv = ["explain", str(photo_path), "--model", str(untrained_folder), "--json", "--out", str(out)]
    assert main([*argv, "--lime-samples", "64"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["faces"][0]["methods"] == ["gradcam", "lime", "brightness"]
    assert report["timings_ms"]["brightness"] >= 0
    for label in EMOTIONS:
        assert (out / f"face0_brightness_{label}.png").is_file()
    assert json.loads((out / "report.json").read_text())["faces"][0]["methods"][-1] == "brightness"

    assert main([*argv, "--methods", "brightness"]) == 0
    assert json.loads(capsys.readouterr().out)["faces"][0]["methods"] == ["brightness"]


def test_the_cli_says_each_user_error_in_one_line(untrained_folder, photo_path, tmp_path, capsys, brightness):
    from emotion.__main__ import main

    model = ["--model", str(untrained_folder)]
    cases = {
        f"choose from {', '.join(method_names())}": [
            "explain",
            str(photo_path),
            *model,
            "--methods",
            "gradcam,shap",
        ],
        "Face 3 does not exist: 1 face(s) found": ["explain", str(photo_path), *model, "--face", "3"],
        "No image file": ["explain", str(tmp_path / "missing.jpg"), *model, "--methods", ""],
        "neither a model folder nor a Hub id": [
            "explain",
            str(photo_path),
            "--model",
            str(tmp_path / "no-model"),
            "--methods",
            "",
        ],
    }
    for expected, argv in cases.items():
        assert main(argv) == 2, argv
        err = capsys.readouterr().err
        assert err.startswith("error: ") and err.count("\n") == 1 and expected in err, err


def _gallery_labels(demo: gr.Blocks) -> list[str]:
    return [gallery.label for gallery in method_galleries(demo)]


def _explain_fn(demo: gr.Blocks):
    (fn,) = [f for f in demo.fns.values() if f.api_name == "explain"]
    return fn


def test_the_page_has_one_gallery_per_method_and_explain_fills_each(untrained_model, photo_path, brightness):
    from app.ui import build_demo

    demo = build_demo(untrained_model, lime=FAST_LIME)
    assert _gallery_labels(demo) == ["Grad-CAM per emotion", "LIME per emotion", "Brightness per emotion"]
    notes = " ".join(block.value or "" for block in demo.blocks.values() if isinstance(block, gr.Markdown))
    assert "**Brightness**: Brightness of the 100-px face" in notes and "SLIC for 96 superpixels" in notes
    endpoint = _explain_fn(demo)
    assert len(endpoint.outputs) == 2 + 3 + 1  # boxes, probabilities, one gallery per method, timings
    boxed, probs, *galleries, timings = endpoint.fn(str(photo_path), 1, False)
    assert len(galleries) == 3 and set(probs) == set(EMOTIONS) and "brightness" in timings
    for gallery in galleries:
        assert [caption.split()[0] for _, caption in gallery] == list(EMOTIONS)
        assert all(image.shape == (200, 200, 3) for image, _ in gallery)

    only = build_demo(untrained_model, methods=("brightness",))
    assert _gallery_labels(only) == ["Brightness per emotion"]
    assert len(_explain_fn(only).fn(str(photo_path), 1, False)) == 2 + 1 + 1


def test_the_page_numbers_faces_from_1_in_its_own_words(untrained_model, photo_path):
    from app.ui import build_demo

    explain_face = _explain_fn(build_demo(untrained_model, methods=())).fn
    for number in (2, 0):
        with pytest.raises(
            gr.Error, match=f"no face {number}: 1 face\\(s\\) found, numbered from 1"
        ) as caught:
            explain_face(str(photo_path), number, False)
        assert "from 0" not in str(caught.value)
        assert isinstance(caught.value.__cause__, FaceIndexError)
    assert len(explain_face(str(photo_path), 1, False)) == 3  # boxes, probabilities, timings
