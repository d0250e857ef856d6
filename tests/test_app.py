"""End to end: launch `python -m app` on a free port and call `/explain` with gradio_client."""

from __future__ import annotations

import base64
import io
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
from gradio_client import Client, handle_file
from PIL import Image

from bench.video import write_clip
from emotion import EMOTIONS
from emotion.explainers.registry import default_methods, get_explainer, method_names, title_of
from emotion.storage.model_folder import DEMO_MODEL_NAME, SHIPPED_DEMO_DIR

from .conftest import ROOT, method_galleries, running, served_untrained_app

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def app_url(untrained_folder, tmp_path_factory):
    log = tmp_path_factory.mktemp("app") / "app.log"
    with served_untrained_app(untrained_folder, log, "--lime-samples", "200") as url:
        yield url


@pytest.fixture(scope="module")
def client(app_url) -> Client:
    return Client(app_url, verbose=False)


def _check_outputs(result, picked=None):
    # One gallery per registered method (the picker offers them all), in the registry's order;
    # those not picked come back empty.
    boxed, label, *galleries, timings = result
    picked = default_methods() if picked is None else picked
    probs = {c["label"]: c["confidence"] for c in label["confidences"]}
    assert set(probs) == set(EMOTIONS)
    assert abs(sum(probs.values()) - 1) < 1e-4
    assert len(galleries) == len(method_names())
    for name, gallery in zip(method_names(), galleries, strict=True):
        if name not in picked:
            assert not gallery, name
            continue
        assert len(gallery) == 5
        assert {item["caption"].split()[0] for item in gallery} == set(EMOTIONS)
        for item in gallery:
            img = np.asarray(Image.open(item["image"]))
            assert img.ndim == 3 and img.shape[0] >= 100
    assert "ms" in timings and all(name in timings for name in picked)
    return probs, dict(zip(method_names(), galleries, strict=True)), timings


def test_explain_endpoint_on_the_astronaut(client):
    _check_outputs(
        client.predict(handle_file(str(ROOT / "app/examples/astronaut.jpg")), 1, False, api_name="/explain")
    )


def test_the_pages_two_steps_give_the_first_maps_then_the_same_result_as_explain(client):
    """/explain_first (the quick methods, in their own lane) then /explain_rest (the slow ones,
    from the session's state) end where one /explain call does: the same probabilities and the
    same maps for the same photo."""
    photo = handle_file(str(ROOT / "app/examples/astronaut.jpg"))
    boxed, label, *first, summary = client.predict(photo, 1, False, api_name="/explain_first")
    quick = dict(zip(method_names(), first, strict=True))
    assert len(quick["gradcam"]) == 5 and quick["lime"] == []
    assert "LIME to follow" in summary and "ms" in summary
    *slow, full_summary = client.predict(api_name="/explain_rest")  # one gallery per slow method
    slow_names = [name for name in method_names() if not get_explainer(name).quick]
    assert len(slow) == len(slow_names)
    rest = [dict(zip(slow_names, slow, strict=True)).get(name, quick[name]) for name in method_names()]
    probs, galleries, _ = _check_outputs((boxed, label, *rest, full_summary))
    assert "to follow" not in full_summary
    once_probs, once, _ = _check_outputs(client.predict(photo, 1, False, api_name="/explain"))
    assert once_probs == pytest.approx(probs, abs=1e-6)
    for name in default_methods():
        for a, b in zip(galleries[name], once[name], strict=True):
            assert a["caption"] == b["caption"]
            np.testing.assert_array_equal(
                np.asarray(Image.open(a["image"])), np.asarray(Image.open(b["image"]))
            )


def test_explain_rest_before_explain_first_says_what_to_do(app_url):
    with pytest.raises(Exception, match="Press Explain first"):
        Client(app_url, verbose=False).predict(api_name="/explain_rest")


def test_explain_endpoint_takes_the_image_alone_and_captions_each_map_with_its_figures(client):
    """Callers that pass only the image get the defaults: face 1, the default methods, no
    faithfulness figures."""
    probs, galleries, summary = _check_outputs(
        client.predict(handle_file(str(ROOT / "app/examples/astronaut.jpg")), api_name="/explain")
    )
    for item in galleries["gradcam"]:
        assert "% background" in item["caption"] and "R²" not in item["caption"]
    for item in galleries["lime"]:
        assert "% background" in item["caption"] and "R² " in item["caption"]
    assert "Faithfulness" not in summary and "faithfulness" not in summary


def test_explain_endpoint_follows_the_picked_methods_and_adds_faithfulness(client):
    picked = ["gradcam", "saliency"]
    probs, galleries, summary = _check_outputs(
        client.predict(
            handle_file(str(ROOT / "app/examples/astronaut.jpg")), 1, False, picked, True, api_name="/explain"
        ),
        picked=picked,
    )
    top = max(probs, key=probs.get)
    for name in picked:
        captions = {item["caption"].split()[0]: item["caption"] for item in galleries[name]}
        assert "del " in captions[top] and " · ins " in captions[top]
        assert all("del " not in text for label, text in captions.items() if label != top)
    assert f"**Faithfulness** of the {top} maps" in summary
    assert all(f"{title_of(name)} " in summary.split("**Faithfulness**")[1] for name in picked)
    assert "faithfulness" in summary  # its time is in the timings


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


def test_the_picker_offers_every_method_and_shows_the_ticked_ones(untrained_model):
    import gradio as gr

    from app.ui import build_demo

    demo = build_demo(untrained_model, choices=method_names())
    (picker,) = [b for b in demo.blocks.values() if isinstance(b, gr.CheckboxGroup)]
    assert [name for _, name in picker.choices] == list(method_names())
    assert picker.value == list(default_methods())
    galleries = method_galleries(demo)
    assert [g.visible for g in galleries] == [name in default_methods() for name in method_names()]
    assert any(isinstance(b, gr.Checkbox) and "Faithfulness" in b.label for b in demo.blocks.values())
    (toggle,) = [f for f in demo.fns.values() if f.inputs == [picker] and f.outputs == galleries]
    shown = toggle.fn(["scorecam"])
    assert [update.visible for update in shown] == [name == "scorecam" for name in method_names()]


def test_model_report_tab_says_how_to_make_one_when_the_model_has_none(client):
    text, pictures = client.predict(api_name="/model_report")
    assert "no shortcut report" in text and "python -m training.shortcuts" in text
    assert "<img" not in pictures


@pytest.fixture(scope="module")
def reported_run(untrained_folder, tmp_path_factory):
    """A run folder (the untrained model as its model/) with a shortcut report in report/."""
    import shutil

    from emotion.storage.model_folder import load_model
    from emotion.storage.runs import RunFolder
    from training.shortcuts import ReportConfig, build_report, load_report_faces, write_report

    run = RunFolder(tmp_path_factory.mktemp("reported") / "run")
    shutil.copytree(untrained_folder, run.model_dir)
    run.config.write_text("data: synthetic:6\n")  # what makes a folder a run folder
    model = load_model(run.model_dir, precision="fp32")
    cfg = ReportConfig(max_faces=3, lime_faces=1)
    write_report(
        build_report(model, load_report_faces("synthetic:6", tuple(model.labels), cfg), cfg), run.report_dir
    )
    return run


def test_model_report_tab_shows_the_served_runs_report(reported_run, tmp_path):
    with running(["-m", "app", "--model", str(reported_run.root)], tmp_path / "app.log") as url:
        text, pictures = Client(url, verbose=False).predict(api_name="/model_report")
    report = reported_run.read_report()
    assert f"Flagged: {', '.join(report['flagged']) or 'none'}" in text
    assert all(label in text for label in EMOTIONS) and "strongest background region" in text
    captions = re.findall(r"<figcaption>(.*?)</figcaption>", pictures)
    assert len(captions) >= 3 and captions[0].startswith("What each emotion looks at")
    for data in re.findall(r'src="data:image/png;base64,([^"]+)"', pictures):
        assert np.asarray(Image.open(io.BytesIO(base64.b64decode(data)))).shape[0] > 100


def test_first_start_on_an_empty_cache_explains_with_the_shipped_model_and_trains_nothing(tmp_path):
    """The newcomer's path: no model configured, nothing in the cache. The shipped demo model
    answers the first photo (its time to the first explanation is measured by bench.load, not
    asserted here), its report is on the Model report tab, and nothing is trained."""
    env = {"EMOTION_LENS_CACHE": str(tmp_path / "cache"), "EMOTION_MODEL": ""}
    log = tmp_path / "app.log"
    with running(["-m", "app"], log, env=env, timeout=60) as url:
        client = Client(url, verbose=False)
        probs, _, _ = _check_outputs(
            client.predict(handle_file(str(ROOT / "app/examples/astronaut.jpg")), api_name="/explain")
        )
        text, _ = client.predict(api_name="/model_report")
    assert "Flagged:" in text, "the shipped model's shortcut report is on the Model report tab"
    assert str(SHIPPED_DEMO_DIR) in log.read_text() and "DEMO model" in log.read_text()
    assert "Training" not in log.read_text() and not (tmp_path / "cache" / DEMO_MODEL_NAME).exists()


def test_the_banner_says_where_the_demo_model_comes_from(tmp_path, monkeypatch):
    from app.ui import model_banner
    from emotion import load_model

    monkeypatch.setenv("EMOTION_LENS_CACHE", str(tmp_path))
    shipped = model_banner(load_model(None))
    assert "ships with Emotion Lens" in shipped and "built on this machine" not in shipped
    # a demo model built here: the shipped one's files, in the cache
    shutil.copytree(SHIPPED_DEMO_DIR / "model", tmp_path / DEMO_MODEL_NAME / "model")
    (tmp_path / DEMO_MODEL_NAME / "metrics.json").write_text("{}")
    built = model_banner(load_model(None))
    assert "built on this machine" in built and "ships with" not in built
    assert "will not read real photos well" in shipped and "will not read real photos well" in built


def test_own_demo_serves_the_page_while_the_demo_model_is_built(astronaut, tmp_path):
    """--own-demo on an empty cache: the port answers before the build is done, and a request
    made meanwhile gets "being prepared, about N s left"."""
    from gradio_client.exceptions import AppError

    photo = tmp_path / "astronaut.png"
    Image.fromarray(astronaut).save(photo)
    env = {"EMOTION_LENS_CACHE": str(tmp_path / "cache"), "EMOTION_MODEL": ""}
    with running(["-m", "app", "--own-demo"], tmp_path / "app.log", env=env, timeout=60) as url:
        client = Client(url, verbose=False)
        with pytest.raises(AppError, match=r"being prepared: \d+ s done, about \d+ s left"):
            client.predict(handle_file(str(photo)), api_name="/explain")
        text, _ = client.predict(api_name="/model_report")
        assert "once the model is ready" in text
    # Stopped mid-build: the half-trained model is not left where the next start would use it.
    assert not (tmp_path / "cache" / DEMO_MODEL_NAME).exists()


def test_an_upload_over_the_size_limit_is_refused_and_the_server_keeps_serving(client, tmp_path):
    from app.ui import MAX_UPLOAD

    big = tmp_path / "big.png"
    big.write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(int(MAX_UPLOAD.removesuffix("mb")) * 1024 * 1024))
    with pytest.raises(Exception, match="(?i)file size|too large|exceeds"):
        client.predict(handle_file(str(big)), api_name="/explain")
    _check_outputs(client.predict(handle_file(str(ROOT / "app/examples/astronaut.jpg")), api_name="/explain"))


def test_explain_video_endpoint_tracks_the_faces_and_offers_the_timeline_as_csv(client, tmp_path):
    from bench.video import synthetic_stream

    clip = write_clip(tmp_path / "clip.avi", synthetic_stream(20).frames, fps=10)
    plot, summary, keys, csv_file = client.predict(handle_file(str(clip)), api_name="/explain_video")
    assert np.asarray(Image.open(plot)).shape[1] >= 600  # the timeline plot, wide enough to read
    assert "Face 1: seen 0:00.0" in summary and "ms** in all" in summary
    assert keys and all(re.match(r"\d:\d\d\.\d · face \d+\n\w+ \d+% · ", k["caption"]) for k in keys)
    header = Path(csv_file).read_text(encoding="utf-8").splitlines()[0].split(",")
    assert header[:3] == ["time_s", "frame", "face"] and header[-1] == "dominant"
    assert csv_file.endswith("clip-timeline.csv")
    # A photo sent to the video tab is told where to go, and photos are still served.
    with pytest.raises(Exception, match="is an image \\(JPEG\\), not a video"):
        client.predict(handle_file(str(ROOT / "app/examples/astronaut.jpg")), api_name="/explain_video")
    _check_outputs(client.predict(handle_file(str(ROOT / "app/examples/astronaut.jpg")), api_name="/explain"))


@pytest.mark.parametrize(
    "name, content",
    [
        ("page.html", b"<html><script>alert(1)</script></html>"),
        ("notes.png", b"this is not a photo"),  # the name says image; the bytes do not
        ("sound.mp4", b"RIFF\x24\x00\x00\x00WAVEfmt " + bytes(64)),  # audio only
        ("empty.jpg", b""),
    ],
)
def test_an_upload_that_is_neither_image_nor_video_is_refused_at_the_door(
    app_url, client, tmp_path, name, content
):
    import httpx

    path = tmp_path / name
    path.write_bytes(content)
    with open(path, "rb") as f:
        response = httpx.post(f"{app_url.rstrip('/')}/gradio_api/upload", files={"files": (name, f)})
    assert response.status_code == 415
    assert response.text.startswith(f"{name}: not an image or a video. The page accepts images (JPEG")
    _check_outputs(client.predict(handle_file(str(ROOT / "app/examples/astronaut.jpg")), api_name="/explain"))


def test_a_photo_request_past_its_time_limit_stops_with_a_message(untrained_model, astronaut, monkeypatch):
    import gradio as gr

    from app import ui
    from app.pending import PendingModel
    from emotion import explain
    from emotion.errors import TimeLimitError
    from emotion.timing import Deadline

    with pytest.raises(TimeLimitError, match=r"limit of 0 s \(while starting Grad-CAM\)"):
        explain(untrained_model, astronaut, ["gradcam", "lime"], deadline=Deadline(0.0))
    assert explain(untrained_model, astronaut, ["gradcam"], deadline=Deadline(None)).faces  # no limit
    monkeypatch.setattr(ui, "PHOTO_TIME_LIMIT_S", 0.0)
    fn = ui.make_explain_fn(PendingModel.ready_now(untrained_model), ui.resolve_methods(None), {})
    with pytest.raises(gr.Error, match="ran past its limit of 0 s"):
        fn(str(ROOT / "app/examples/astronaut.jpg"))
