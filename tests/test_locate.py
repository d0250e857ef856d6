"""Following faces between detections finds the faces the cascade finds, in fewer cascade runs,
and lets go of a face that is gone (emotion/video/locate.py)."""

from __future__ import annotations

import numpy as np
import pytest

from bench.video import detection_counts, synthetic_stream
from emotion.photo.faces import detect_faces
from emotion.video.frames import VIDEO_DETECT, analyze_frame, analyze_frames, batches
from emotion.video.locate import FaceLocator, LocateConfig


@pytest.fixture(scope="module")
def stream():
    return synthetic_stream(30)


def _located(frames, config: LocateConfig) -> tuple[list, FaceLocator]:
    locator = FaceLocator(VIDEO_DETECT, config)
    return [locator.boxes(frame) for frame in frames], locator


def test_following_finds_the_planted_faces_with_a_quarter_of_the_cascade_runs(stream):
    every_frame = detection_counts([detect_faces(f, VIDEO_DETECT) for f in stream.frames], stream.faces)
    boxes, locator = _located(stream.frames, LocateConfig())
    followed = detection_counts(boxes, stream.faces)
    assert followed["false_positives"] == 0, followed
    assert followed["hits"] >= every_frame["hits"], (followed, every_frame)
    assert locator.detections <= len(stream.frames) // LocateConfig().detect_every + 3


def test_detect_every_frame_runs_the_cascade_on_every_frame_and_keeps_its_boxes(stream):
    boxes, locator = _located(stream.frames[:8], LocateConfig(detect_every=1))
    assert locator.detections == 8
    for found, frame in zip(boxes, stream.frames[:8], strict=True):
        assert set(detect_faces(frame, VIDEO_DETECT)) <= set(found)


def test_a_face_that_is_gone_is_let_go_and_a_blind_follower_keeps_a_stale_box(stream):
    """Halfway, the faces are painted over with the backdrop. The locator must not keep boxes
    where nothing is; the control, a locator that accepts any match, does."""
    frames = [f.copy() for f in stream.frames[:12]]
    rng = np.random.default_rng(0)
    for frame, planted in zip(frames[6:], stream.faces[6:12], strict=True):
        for box in planted:
            pad = box.w // 2
            ys = slice(max(box.y - pad, 0), box.y + box.h + pad)
            xs = slice(max(box.x - pad, 0), box.x + box.w + pad)
            patch = frame[ys, xs]
            frame[ys, xs] = np.clip(rng.normal(128, 12, patch.shape), 0, 255).astype(np.uint8)

    def stale(config: LocateConfig) -> int:
        boxes, _ = _located(frames, config)
        return detection_counts(boxes[7:], [[] for _ in boxes[7:]])["false_positives"]

    assert stale(LocateConfig()) == 0
    assert stale(LocateConfig(min_score=-1.0)) > 0  # the control: nothing checks the match


def test_frames_analysed_together_give_each_frames_own_answers(untrained_model, stream):
    frames = stream.frames[:5]
    together = analyze_frames(untrained_model, frames)
    for frame, result in zip(frames, together, strict=True):
        alone = analyze_frame(untrained_model, frame)
        assert result.boxes == alone.boxes
        np.testing.assert_allclose(result.probabilities, alone.probabilities, atol=1e-5)
        np.testing.assert_allclose(result.last_stage_gradcams, alone.last_stage_gradcams, atol=1e-4)
        assert {"detect", "classify", "gradcam", "total"} <= set(result.timings_ms)
    assert sum(len(r.boxes) for r in together) > 0
    assert analyze_frames(untrained_model, []) == []


def test_batches_keep_every_item_in_order():
    assert list(batches(range(10), 4)) == [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9]]
    assert list(batches([], 4)) == []
