"""The page's event functions called directly, without a server: what a press of Explain does
with what the upload already did."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest
from PIL import Image

import app.ui as ui
import emotion.photo.pipeline as pipeline
from app.pending import PendingModel
from emotion.explainers.registry import resolve_methods


@pytest.fixture
def counted(monkeypatch) -> Counter:
    """How often the page decodes a photo file and the cascade runs, wherever either is called."""
    calls: Counter = Counter()

    def counting(name, fn):
        def wrapped(*args, **kwargs):
            calls[name] += 1
            return fn(*args, **kwargs)

        return wrapped

    monkeypatch.setattr(ui, "load_image", counting("decode", ui.load_image))
    monkeypatch.setattr(ui, "detect_faces", counting("detect", ui.detect_faces))
    monkeypatch.setattr(pipeline, "detect_faces", counting("detect", pipeline.detect_faces))
    return calls


def test_a_press_after_an_upload_decodes_and_detects_nothing_again(
    untrained_model, astronaut, tmp_path, counted
):
    path = tmp_path / "astronaut.png"
    Image.fromarray(astronaut).save(path)
    first_maps = ui.make_first_maps_fn(
        PendingModel.ready_now(untrained_model), resolve_methods(("gradcam",)), {}
    )
    upload = {"path": str(path)}

    _, _, seen = ui.preview_faces(upload)
    assert counted == {"decode": 1, "detect": 1}
    after_upload = first_maps(upload, 1, False, ["gradcam"], False, seen)
    assert counted == {"decode": 1, "detect": 1}, "the press reused the upload's photo and faces"

    # The control: the same press with no upload state (an API call) decodes and detects itself,
    # and gives the same answer.
    counted.clear()
    alone = first_maps(upload, 1, False, ["gradcam"], False, None)
    assert counted == {"decode": 1, "detect": 1}
    assert alone[1] == after_upload[1]
    np.testing.assert_array_equal(alone[0], after_upload[0])


def test_a_press_on_another_photo_than_the_upload_state_holds_reads_that_photo(
    untrained_model, astronaut, tmp_path, counted
):
    first_maps = ui.make_first_maps_fn(
        PendingModel.ready_now(untrained_model), resolve_methods(("gradcam",)), {}
    )
    old, new = tmp_path / "old.png", tmp_path / "new.png"
    Image.fromarray(astronaut).save(old)
    Image.fromarray(np.ascontiguousarray(astronaut[:, ::-1])).save(new)
    _, _, seen = ui.preview_faces({"path": str(old)})
    counted.clear()
    boxed = first_maps({"path": str(new)}, 1, False, ["gradcam"], False, seen)[0]
    assert counted == {"decode": 1, "detect": 1}
    alone = first_maps({"path": str(new)}, 1, False, ["gradcam"], False, None)[0]
    np.testing.assert_array_equal(boxed, alone)


def test_an_opencv_without_the_cascade_is_a_message_at_the_upload(astronaut, tmp_path, monkeypatch):
    import cv2
    import gradio as gr

    from emotion.photo import faces

    path = tmp_path / "astronaut.png"
    Image.fromarray(astronaut).save(path)
    monkeypatch.delattr(cv2, "CascadeClassifier")
    faces._cascade.cache_clear()
    try:
        with pytest.raises(gr.Error, match="opencv-python-headless<5"):
            ui.preview_faces({"path": str(path)})
    finally:
        faces._cascade.cache_clear()
