"""The page's event functions called directly, without a server: what a press of Explain does
with what the upload already did."""

from __future__ import annotations

import threading
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
    monkeypatch.setattr(faces, "_per_thread", threading.local())  # no cascade loaded yet
    with pytest.raises(gr.Error, match="opencv-python-headless<5"):
        ui.preview_faces({"path": str(path)})


# The live tab's functions, with the shipped demo model, which reads drawn faces.


@pytest.fixture(scope="module")
def shipped():
    from emotion.storage.model_folder import load_model

    return PendingModel.ready_now(load_model(None, precision="fp32"))


def _live_frame(label: str) -> np.ndarray:
    from bench.live import frame_with_face

    return frame_with_face(label, 240, 150)


def test_the_live_function_boxes_the_face_reads_it_and_keeps_the_viewers_stream(shipped):
    live = ui.make_live_fn(shipped)
    frame = _live_frame("angry")
    image, probabilities, status, stream = live(frame, ui.TOP_EMOTION, None)
    assert max(probabilities, key=probabilities.get) == "angry", probabilities
    assert status == "" and image.shape == frame.shape and np.any(image != frame)
    assert live(frame, "happy", stream)[3] is stream  # the same viewer's stream, faces followed
    assert stream.processed == 2
    # the control: no face, nothing drawn and no probabilities
    from bench.video import noisy_backdrop

    empty = noisy_backdrop(np.random.default_rng(0))
    image, probabilities, status, _ = live(empty, ui.TOP_EMOTION, None)
    assert probabilities is None and np.array_equal(image, empty)
    # no frame yet: nothing changes on the page
    assert live(None, ui.TOP_EMOTION, None)[:3] == (ui.gr.skip(),) * 3


def test_the_live_function_stops_a_stream_at_its_time_limit_and_says_so(shipped):
    from emotion.video.live import LiveStream

    now = [0.0]
    stream = LiveStream(limit_s=1.0, clock=lambda: now[0])
    live = ui.make_live_fn(shipped)
    frame = _live_frame("happy")
    for t in (0.0, 0.5, 1.0):  # within the limit: every frame is annotated
        now[0] = t
        image, _, status, _ = live(frame, ui.TOP_EMOTION, stream)
        assert status == "" and image is not ui.gr.skip()
    now[0] = 1.4
    image, probabilities, status, _ = live(frame, ui.TOP_EMOTION, stream)
    assert status.startswith(ui.STOPPED_MARK) and "stopped after 1 s" in status and "Record" in status
    assert image == ui.gr.skip() and probabilities == ui.gr.skip() and stream.processed == 3
    now[0] = 3.0  # the viewer pressed Record again after a pause: a new run
    assert live(frame, ui.TOP_EMOTION, stream)[2] == ""


def test_explain_this_frame_hands_the_latest_frame_to_the_photo_tab(shipped):
    from emotion.video.live import LiveStream

    with pytest.raises(ui.gr.Error, match="Start the live view first"):
        ui.live_snapshot(None)
    with pytest.raises(ui.gr.Error, match="Start the live view first"):
        ui.live_snapshot(LiveStream())  # started, but no frame came yet
    stream = LiveStream()
    frame = _live_frame("surprised")
    ui.make_live_fn(shipped)(frame, ui.TOP_EMOTION, stream)
    path, tabs = ui.live_snapshot(stream)
    np.testing.assert_array_equal(np.asarray(Image.open(path).convert("RGB")), frame)
    assert tabs.selected == ui.PHOTO_TAB


def test_the_live_emotion_picker_offers_the_top_one_then_the_models_labels(shipped):
    assert ui.live_emotion_choices(shipped) == [ui.TOP_EMOTION, *shipped.get().labels]


def test_a_live_stream_before_the_model_is_ready_is_stopped_with_the_time_left(shipped):
    # An error raised would come back with every frame the browser sends: it is said once in the
    # status line (which stops the camera), as the time limit is.
    waiting = PendingModel(shipped.get, expected_s=240, what="The synthetic demo model")
    image, probabilities, status, _ = ui.make_live_fn(waiting)(_live_frame("happy"), ui.TOP_EMOTION, None)
    assert status.startswith(ui.STOPPED_MARK) and "The synthetic demo model" in status, status
    assert image == ui.gr.skip() and probabilities == ui.gr.skip()
