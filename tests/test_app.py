"""End to end: launch `python -m app` on a free port and call `/explain` with gradio_client."""

from __future__ import annotations

import numpy as np
import pytest
from gradio_client import Client, handle_file
from PIL import Image

from emotion import EMOTIONS
from emotion.explainers.registry import default_methods

from .conftest import ROOT, serve

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def app_url(untrained_folder, tmp_path_factory):
    log = tmp_path_factory.mktemp("app") / "app.log"
    proc, url = serve(
        ["-m", "app", "--lime-samples", "200"], log, env={"EMOTION_MODEL": str(untrained_folder)}
    )
    yield url
    proc.terminate()
    proc.wait(timeout=30)


@pytest.fixture(scope="module")
def client(app_url) -> Client:
    return Client(app_url, verbose=False)


def _check_outputs(result):
    boxed, label, *galleries, timings = result  # one gallery per method, in the registry's order
    probs = {c["label"]: c["confidence"] for c in label["confidences"]}
    assert set(probs) == set(EMOTIONS)
    assert abs(sum(probs.values()) - 1) < 1e-4
    assert len(galleries) == len(default_methods())
    for gallery in galleries:
        assert len(gallery) == 5
        assert {item["caption"].split()[0] for item in gallery} == set(EMOTIONS)
        for item in gallery:
            img = np.asarray(Image.open(item["image"]))
            assert img.ndim == 3 and img.shape[0] >= 100
    assert "ms" in timings and "lime" in timings
    return probs


def test_explain_endpoint_on_the_astronaut(client):
    _check_outputs(
        client.predict(handle_file(str(ROOT / "app/examples/astronaut.jpg")), 1, False, api_name="/explain")
    )


def test_explain_endpoint_on_a_synthetic_face(client, tmp_path):
    from training.synthetic import make_face

    face = make_face("surprised", np.random.default_rng(3)).image
    path = tmp_path / "face.png"
    Image.fromarray(face).save(path)
    _check_outputs(client.predict(handle_file(str(path)), 1, True, api_name="/explain"))


def test_bad_input_is_a_message_and_the_server_keeps_serving(client, tmp_path):
    from gradio_client.exceptions import AppError

    blank = tmp_path / "blank.png"
    Image.fromarray(np.full((200, 200, 3), 90, np.uint8)).save(blank)
    with pytest.raises(AppError, match="No face found"):
        client.predict(handle_file(str(blank)), 1, False, api_name="/explain")
    text = tmp_path / "notes.png"
    text.write_text("this is not a photo")
    with pytest.raises(AppError, match="not a readable image"):
        client.predict(handle_file(str(text)), 1, False, api_name="/explain")
    truncated = tmp_path / "cut.jpg"
    truncated.write_bytes((ROOT / "app/examples/astronaut.jpg").read_bytes()[:5000])
    with pytest.raises(AppError, match="truncated"):
        client.predict(handle_file(str(truncated)), 1, False, api_name="/explain")
    with pytest.raises(AppError, match="numbered from 1"):
        client.predict(handle_file(str(ROOT / "app/examples/astronaut.jpg")), 4, False, api_name="/explain")
    # Still serving after the errors.
    _check_outputs(
        client.predict(handle_file(str(ROOT / "app/examples/astronaut.jpg")), 1, False, api_name="/explain")
    )
