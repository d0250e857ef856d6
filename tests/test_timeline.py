"""The video timeline: faces tracked across frames, probabilities smoothed, key frames where the
emotion starts, changes and peaks, the CSV, and the caps."""

from __future__ import annotations

import csv
import io
from pathlib import Path

import cv2
import numpy as np
import pytest

from bench.video import write_clip
from emotion.errors import VideoError
from emotion.photo.faces import Box
from emotion.video.identity import FaceTracker
from emotion.video.timeline import (
    FaceTimeline,
    Timeline,
    VideoInfo,
    VideoLimits,
    analyze_video,
    key_frames,
    moving_average,
    timeline_csv,
    timeline_image,
)

LABELS = ("happy", "sad", "neutral", "angry", "surprised")


def face_clip(labels: list[str], *, side: int = 260, seed: int = 4) -> list[np.ndarray]:
    """One drawn face per entry of `labels`, the same person, centred on a plain 640×480 frame."""
    from training.synthetic import face_and_twin

    faces = {}
    for label in dict.fromkeys(labels):
        face, _ = face_and_twin(label, label, seed=seed, index=0)
        faces[label] = cv2.resize(face.image, (side, side), interpolation=cv2.INTER_CUBIC)
    frames = []
    for label in labels:
        frame = np.full((480, 640, 3), 128, np.uint8)
        y, x = (480 - side) // 2, (640 - side) // 2
        frame[y : y + side, x : x + side] = faces[label]
        frames.append(frame)
    return frames


# -- tracking ------------------------------------------------------------------------------------


def test_two_moving_faces_keep_their_numbers_and_a_returning_face_after_a_long_gap_is_new():
    tracker = FaceTracker(max_gap=2)
    left, right = Box(10, 50, 100, 100), Box(400, 60, 120, 120)
    assert tracker.update(0, [left, right]) == [1, 2]
    # Moved a little, and listed in the other order (the detector sorts by size).
    assert tracker.update(1, [Box(426, 66, 118, 118), Box(22, 52, 100, 100)]) == [2, 1]
    assert tracker.update(2, [Box(30, 55, 100, 100)]) == [1]  # face 2 missed once
    assert tracker.update(3, [Box(440, 70, 120, 120), Box(36, 55, 100, 100)]) == [2, 1]
    for step in range(4, 8):
        tracker.update(step, [Box(40, 55, 100, 100)])  # face 2 gone for 4 > max_gap frames
    assert tracker.update(8, [Box(442, 70, 120, 120), Box(40, 55, 100, 100)]) == [3, 1]


def test_moving_average_is_centred_and_averages_what_there_is_at_the_ends():
    values = np.array([[0.0], [3.0], [6.0], [9.0]])
    assert moving_average(values, 3)[:, 0].tolist() == pytest.approx([1.5, 3.0, 6.0, 7.5])
    assert np.array_equal(moving_average(values, 1), values)


# -- key frames and CSV, on timelines built by hand ----------------------------------------------


def face_timeline(number: int, probs: list[list[float]], times: list[float] | None = None) -> FaceTimeline:
    n = len(probs)
    times = times if times is not None else [0.2 * i for i in range(n)]
    p = np.asarray(probs, np.float32)
    return FaceTimeline(
        number,
        np.arange(n) * 4,
        np.asarray(times),
        [Box(10 * i, 5, 80, 80) for i in range(n)],
        p,
        p.copy(),
        np.zeros((n, 100, 100, 3), np.uint8),
    )


def flat_maps(crops: np.ndarray) -> np.ndarray:
    """Stands in for Grad-CAM where only the choice of key frames is tested."""
    return np.zeros((len(crops), len(LABELS), *crops.shape[1:3]), np.float32)


HAPPY, ANGRY = [0.8, 0.05, 0.05, 0.05, 0.05], [0.1, 0.05, 0.05, 0.75, 0.05]
HAPPIER, ANGRIER = [0.9, 0.025, 0.025, 0.025, 0.025], [0.05, 0.025, 0.025, 0.875, 0.025]


def test_key_frames_are_the_start_each_change_and_each_shown_emotions_peak():
    face = face_timeline(1, [HAPPY, HAPPIER, HAPPY, ANGRY, ANGRIER, ANGRY])
    keys = key_frames([face], LABELS, limit=10, gradcams=flat_maps)
    assert [(k.time_s, k.why) for k in keys] == [
        (0.0, "start: happy"),
        (pytest.approx(0.2), "peak of happy"),
        (pytest.approx(0.6), "happy → angry"),
        (pytest.approx(0.8), "peak of angry"),
    ]
    assert [k.label for k in keys] == ["happy", "happy", "angry", "angry"]
    assert keys[3].probability == pytest.approx(0.875) and keys[3].image.shape == (200, 200, 3)
    # A face whose emotion never changes (the control) has no change among its key frames.
    steady = key_frames([face_timeline(1, [HAPPY, HAPPIER, HAPPY])], LABELS, limit=10, gradcams=flat_maps)
    assert not any("→" in k.why for k in steady)


def test_a_lead_of_a_few_points_is_not_a_change_of_emotion():
    # An untrained model's near-uniform answers: the top emotion flips between sad and angry.
    noise = [[0.2, 0.21, 0.19, 0.2, 0.2], [0.2, 0.2, 0.19, 0.22, 0.19], [0.2, 0.22, 0.19, 0.2, 0.19]]
    face = face_timeline(1, noise * 3)
    assert set(face.dominant()) == {1}  # sad, the first top, kept
    assert not any("→" in k.why for k in key_frames([face], LABELS, limit=10, gradcams=flat_maps))
    # A lead of 10 points or more is one.
    assert face_timeline(1, [HAPPY, [0.3, 0.05, 0.05, 0.55, 0.05]]).dominant().tolist() == [0, 3]


def test_key_frames_are_capped_with_the_longest_seen_face_first():
    short = face_timeline(1, [ANGRY, ANGRIER])
    long = face_timeline(2, [HAPPY, ANGRY, HAPPY, ANGRY, HAPPY])
    keys = key_frames([short, long], LABELS, limit=3, gradcams=flat_maps)
    assert len(keys) == 3 and {k.face for k in keys} == {2}


def test_the_csv_has_one_row_per_face_per_analysed_frame_in_time_order():
    faces = [face_timeline(1, [HAPPY, ANGRY, ANGRY]), face_timeline(2, [HAPPY, HAPPY], [0.2, 0.4])]
    info = VideoInfo(Path("clip.mp4"), 640, 480, 20.0, 12)
    timeline = Timeline(LABELS, info, np.array([0.0, 0.2, 0.4]), faces, [])
    rows = list(csv.DictReader(io.StringIO(timeline_csv(timeline))))
    assert [(r["time_s"], r["face"]) for r in rows] == [
        ("0.000", "1"),
        ("0.200", "1"),
        ("0.200", "2"),
        ("0.400", "1"),
        ("0.400", "2"),
    ]
    assert rows[1]["p_angry"] == "0.7500" and rows[1]["dominant"] == "angry"
    assert set(rows[0]) >= {"x", "y", "w", "h", *(f"smoothed_{label}" for label in LABELS)}
    assert timeline_image(timeline).shape[2] == 3


# -- the whole path, on written videos -----------------------------------------------------------


@pytest.fixture(scope="module")
def two_face_clip(tmp_path_factory) -> Path:
    from bench.video import synthetic_stream

    folder = tmp_path_factory.mktemp("clips")
    return write_clip(folder / "two.avi", synthetic_stream(30).frames, fps=10)


def test_every_face_of_a_clip_is_tracked_and_written_to_the_csv(untrained_model, two_face_clip):
    timeline = analyze_video(untrained_model, two_face_clip)
    assert len(timeline.analysed_times_s) == 15  # 30 frames at 10 frames/s, 5 analysed a second
    # Two planted faces drifting across the frame: two tracks, each found in most frames (the
    # detector finds the drawn face in 6 of 8 frames of this stream: bench.video).
    assert len(timeline.faces) == 2, timeline.summary()
    assert all(len(face.times_s) >= 8 for face in timeline.faces)
    assert all(np.allclose(face.probabilities.sum(axis=1), 1, atol=1e-4) for face in timeline.faces)
    rows = list(csv.DictReader(io.StringIO(timeline_csv(timeline))))
    assert len(rows) == sum(len(face.times_s) for face in timeline.faces)
    assert timeline.key_frames and timeline.notes == []
    assert timeline.summary()[0].startswith("Face 1: seen 0:00.0")


def test_the_length_cap_and_the_time_limit_cut_a_video_short_and_say_so(untrained_model, two_face_clip):
    capped = analyze_video(untrained_model, two_face_clip, VideoLimits(max_seconds=1.0))
    assert capped.analysed_times_s[-1] < 1.0 and "Only the first 1 s" in capped.notes[0]
    stopped = analyze_video(untrained_model, two_face_clip, VideoLimits(time_limit_s=0.0))
    assert len(stopped.analysed_times_s) == 1 and "reached its limit of 0 s" in stopped.notes[0]


def test_a_video_over_the_resolution_cap_is_refused_before_reading(untrained_model, tmp_path):
    clip = write_clip(tmp_path / "big.avi", [np.zeros((240, 400, 3), np.uint8)] * 2)
    with pytest.raises(VideoError, match=r"400×240 pixels.*up to 320 pixels.*Downscale"):
        analyze_video(untrained_model, clip, VideoLimits(max_side=320))


@pytest.mark.slow
def test_the_timeline_sees_a_happy_face_turn_angry_and_shows_the_change(demo_model, tmp_path):
    # Meaning, on the demo model: the same drawn person, happy for 2 s then angry for 2 s.
    clip = write_clip(tmp_path / "turn.avi", face_clip(["happy"] * 20 + ["angry"] * 20), fps=10)
    timeline = analyze_video(demo_model, clip)
    assert len(timeline.faces) == 1, timeline.summary()
    face = timeline.faces[0]
    dominant = [LABELS[i] for i in face.dominant()]
    assert dominant[0] == "happy" and dominant[-1] == "angry", dominant
    changes = [k for k in timeline.key_frames if "→" in k.why]
    assert [k.why for k in changes] == ["happy → angry"]
    assert 1.6 <= changes[0].time_s <= 2.4  # the switch is at 2.0 s; smoothing moves it ≤ 0.4 s
    # The control: the same face kept happy shows no change.
    steady = analyze_video(demo_model, write_clip(tmp_path / "steady.avi", face_clip(["happy"] * 40)))
    assert steady.faces and not any("→" in k.why for k in steady.key_frames)
