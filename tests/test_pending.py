"""First start: the page answers while the model is being prepared, and says how long is left."""

from __future__ import annotations

import threading

import gradio as gr
import pytest
from PIL import Image

from app.pending import ModelBuildError, ModelNotReadyError, PendingModel


def _gated(model, gate: threading.Event, expected_s: float = 100.0) -> PendingModel:
    """A build that returns `model` once `gate` is set."""
    return PendingModel(lambda: gate.wait(30) and model, expected_s=expected_s, what="The test model")


def test_a_pending_model_says_how_long_is_left_then_serves_it(untrained_model):
    gate = threading.Event()
    pending = _gated(untrained_model, gate).start()
    assert not pending.ready
    with pytest.raises(
        ModelNotReadyError, match=r"The test model is being prepared: \d+ s done, about \d+ s left"
    ):
        pending.get()
    gate.set()
    assert pending.wait(30) is untrained_model and pending.ready
    assert pending.status() == "The test model is ready."


def test_a_build_that_outruns_its_estimate_says_so_instead_of_a_negative_time(untrained_model):
    gate = threading.Event()
    pending = _gated(untrained_model, gate, expected_s=0.0).start()
    assert "longer than usual" in pending.status()
    gate.set()
    pending.wait(30)


def test_a_failed_build_is_reported_to_every_request():
    pending = PendingModel(lambda: 1 / 0, expected_s=1.0).start()
    for _ in range(2):
        with pytest.raises(ModelBuildError, match="could not be prepared: division by zero.*--model"):
            pending.wait(30)


def test_the_page_answers_while_the_model_is_prepared_then_explains(untrained_model, astronaut, tmp_path):
    from app.ui import banner_text, build_demo

    photo = tmp_path / "astronaut.png"
    Image.fromarray(astronaut).save(photo)
    gate = threading.Event()
    pending = _gated(untrained_model, gate).start()
    demo = build_demo(pending, methods=("gradcam",))
    (explain_face,) = [f.fn for f in demo.fns.values() if f.api_name == "explain"]
    assert "being prepared" in banner_text(pending)
    with pytest.raises(gr.Error, match=r"being prepared: \d+ s done, about \d+ s left"):
        explain_face(str(photo), 1, False)
    # The banner refreshes itself on a timer until the model is ready.
    assert any(type(block).__name__ == "Timer" for block in demo.blocks.values())
    gate.set()
    pending.wait(30)
    boxed, probs, *_ = explain_face(str(photo), 1, False)
    assert set(probs) == set(untrained_model.labels)
    assert banner_text(pending).startswith("Model:")


def test_a_ready_model_gets_no_timer(untrained_model):
    from app.ui import build_demo

    demo = build_demo(untrained_model, methods=("gradcam",))
    assert not any(type(block).__name__ == "Timer" for block in demo.blocks.values())
