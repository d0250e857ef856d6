"""A live stream's frames: the right box and emotion on a drawn face, the map where the face is,
the largest face's probabilities smoothed over a second, and frames dropped, not queued, while
one is being processed. The shipped demo model reads the drawn faces; nothing is trained."""

from __future__ import annotations

import json
import threading
import time

import numpy as np
import pytest

from bench.live import SIDE, frame_with_face
from bench.video import noisy_backdrop
from emotion.photo.faces import Box
from emotion.storage.model_folder import load_model
from emotion.video.live import LiveStream

AT = (240, 150)  # where its top-left corner sits


@pytest.fixture(scope="module")
def model():
    return load_model(None, precision="fp32")


def backdrop() -> np.ndarray:
    return noisy_backdrop(np.random.default_rng(0))


def frame_with(label: str) -> tuple[np.ndarray, Box]:
    """A 640×480 frame with one drawn face showing `label`, and the square it fills."""
    return frame_with_face(label, *AT), Box(*AT, SIDE, SIDE)


def inside(box: Box, square: Box) -> bool:
    cx, cy = box.x + box.w / 2, box.y + box.h / 2
    return square.x <= cx <= square.x + square.w and square.y <= cy <= square.y + square.h


@pytest.mark.parametrize("label", ["happy", "angry", "surprised"])
def test_the_drawn_face_is_boxed_and_its_emotion_read(model, label):
    frame, square = frame_with(label)
    result = LiveStream().process(model, frame)
    assert len(result.boxes) == 1 and inside(result.boxes[0], square), result.boxes
    assert max(result.probabilities, key=result.probabilities.get) == label, result.probabilities
    assert sum(result.probabilities.values()) == pytest.approx(1.0, abs=1e-4)


def test_without_a_face_the_frame_comes_back_as_it_was(model):
    # the control for the tests above and below: nothing found, nothing drawn
    frame = backdrop()
    result = LiveStream().process(model, frame)
    assert result.boxes == [] and result.probabilities == {}
    np.testing.assert_array_equal(result.image, frame)


def test_the_map_and_the_box_are_drawn_where_the_face_is_and_follow_the_chosen_emotion(model):
    frame, square = frame_with("happy")
    stream = LiveStream()
    happy = stream.process(model, frame, emotion="happy").image
    angry = stream.process(model, frame, emotion="angry").image
    changed = np.any(happy != frame, axis=2)
    ys, xs = np.nonzero(changed)
    # the map over the square the face was cut from, the box and the caption just above it
    margin = SIDE // 2
    assert xs.min() >= square.x - margin and xs.max() <= square.x + square.w + margin
    assert ys.min() >= square.y - margin and ys.max() <= square.y + square.h + margin
    assert changed[square.y : square.y + square.h, square.x : square.x + square.w].mean() > 0.5
    # another emotion's map over the same face draws another picture there
    region = (slice(square.y, square.y + square.h), slice(square.x, square.x + square.w))
    assert np.abs(happy[region].astype(int) - angry[region].astype(int)).mean() > 1.0


def test_an_unknown_emotion_is_refused_with_the_known_ones(model):
    frame, _ = frame_with("happy")
    with pytest.raises(ValueError, match="happy, sad"):
        LiveStream().process(model, frame, emotion="furious")


def test_the_probabilities_are_averaged_over_the_last_second_and_forgotten_with_the_face(model):
    now = [0.0]
    stream = LiveStream(clock=lambda: now[0])
    happy_frame, _ = frame_with("happy")
    angry_frame, _ = frame_with("angry")
    happy = LiveStream().process(model, happy_frame).probabilities
    angry = LiveStream().process(model, angry_frame).probabilities

    # Between detections the face is followed, so its box (and so its numbers) may move a little:
    # 0.01 is far below what keeping or dropping the other frame would change.
    stream.process(model, happy_frame)
    now[0] = 0.5
    both = stream.process(model, angry_frame).probabilities
    assert both["happy"] == pytest.approx((happy["happy"] + angry["happy"]) / 2, abs=0.01)
    now[0] = 1.6  # the happy frame is more than a second old now
    assert stream.process(model, angry_frame).probabilities["angry"] == pytest.approx(
        angry["angry"], abs=0.01
    )
    now[0] = 1.7
    stream.process(model, backdrop())  # the face left: its history goes with it
    now[0] = 1.8
    assert stream.process(model, happy_frame).probabilities["happy"] == pytest.approx(
        happy["happy"], abs=0.01
    )


def test_a_frame_that_comes_while_one_is_processed_is_dropped_not_queued(monkeypatch):
    slow = load_model(None, precision="fp32")
    real = slow.predict_with_features

    def slowly(faces):
        time.sleep(0.5)
        return real(faces)

    monkeypatch.setattr(slow, "predict_with_features", slowly)
    frame, _ = frame_with("happy")
    stream = LiveStream()
    first: list = []
    worker = threading.Thread(target=lambda: first.append(stream.process(slow, frame)))
    worker.start()
    time.sleep(0.2)  # the first frame is in the network now
    second = stream.process(slow, frame)
    worker.join()
    assert second.dropped and second.image is None
    assert not first[0].dropped and first[0].image is not None
    assert (stream.processed, stream.dropped) == (1, 1)
    # the control: frames one after the other are all processed
    for _ in range(2):
        assert not stream.process(slow, frame).dropped
    assert (stream.processed, stream.dropped) == (3, 1)


@pytest.mark.slow
def test_bench_live_runs_and_says_its_figures(tmp_path, capsys):
    from bench.live import main

    out = tmp_path / "live.json"
    assert main(["--frames", "5", "--json", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "frames/s" in printed and "fe a frame" in printed and "images/s" in printed
    result = json.loads(out.read_text())
    assert result["frames_with_the_face"] == 5 and result["frames_per_s"] > 0


def test_a_run_of_frames_stops_at_its_time_limit_and_a_pause_starts_a_new_one(model):
    from emotion.errors import TimeLimitError

    now = [0.0]
    stream = LiveStream(limit_s=2.0, clock=lambda: now[0])
    frame, _ = frame_with("happy")
    for t in np.arange(0.0, 2.01, 0.5):  # frames half a second apart: one run, within its limit
        now[0] = float(t)
        assert stream.process(model, frame).image is not None
    now[0] = 2.3
    with pytest.raises(TimeLimitError, match="stopped after 2 s"):
        stream.process(model, frame)
    now[0] = 2.6  # frames still in flight when the limit was said belong to the same run
    with pytest.raises(TimeLimitError):
        stream.process(model, frame)
    now[0] = 2.6 + stream.pause_s + 0.1  # the viewer stopped and pressed Record again
    assert stream.process(model, frame).image is not None
    # the control: without a limit the same frames run on
    unlimited = LiveStream(clock=lambda: now[0])
    for t in np.arange(0.0, 10.0, 0.5):
        now[0] = float(t)
        assert unlimited.process(model, frame).image is not None


@pytest.mark.slow
def test_bench_live_beside_times_photo_and_video_with_and_without_streams(tmp_path, capsys):
    from bench.live_beside import main

    out = tmp_path / "beside.json"
    assert main(["--streams", "1", "--repeats", "1", "--json", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "× alone" in printed and "images/s" in printed
    rows = json.loads(out.read_text())["rows"]
    assert [row["streams"] for row in rows] == [0, 1, 0]
    assert rows[1]["live_frames_per_s"] > 5  # the stream flowed while the requests were timed
    assert all(row["photo"] > 0 and row["video"] > 0 for row in rows)


def test_the_caption_names_the_maps_emotion_where_it_is_not_the_top_one(model):
    frame, square = frame_with("happy")
    stream = LiveStream()
    result = stream.process(model, frame)  # the top emotion's map: the caption is "happy 97%"
    box = result.boxes[0]
    other = stream.process(model, frame, emotion="angry").image  # "happy 97% (map: angry 1%)"
    caption_rows = slice(max(0, box.y - 24), box.y - 2)

    def caption_right_end(image):
        drawn = np.any(image[caption_rows] != frame[caption_rows], axis=2)
        drawn[:, square.x : square.x + square.w] = False  # the map's square, not the text, is there
        return np.nonzero(drawn.any(axis=0))[0].max(initial=square.x + square.w)

    assert caption_right_end(other) > caption_right_end(result.image) + 60
