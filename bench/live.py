"""`python -m bench.live [--frames N] [--model SRC] [--json PATH]`

Frames per second of a live stream as a webcam tab would process it: 640×480 frames with one
drawn face moving a little from frame to frame, each through `emotion.video.live.LiveStream`
(faces located, classified, the top emotion's last-stage Grad-CAM drawn over the face, the
probabilities smoothed), one frame at a time as a browser sends them, in the precision the app
picks. The bare model's images/s, measured before and after, is printed beside the figure, with
each frame's cost in forward-equivalents (fe: ms × images/s ÷ 1000).
"""

from __future__ import annotations

import argparse
import logging
import statistics
import sys
import time
from pathlib import Path

import cv2
import numpy as np

from bench import emit
from bench.explain import model_throughput
from bench.video import noisy_backdrop
from emotion.cli import command
from emotion.storage.model_folder import load_model
from emotion.video.live import LiveStream
from training.synthetic import make_face

SIDE = 160


def frame_with_face(label: str, x: int, y: int, *, face_seed: int = 3, backdrop_seed: int = 0) -> np.ndarray:
    """A 640×480 frame (`noisy_backdrop`) with one drawn face showing `label`, `SIDE` px wide,
    its top-left corner at (x, y)."""
    frame = noisy_backdrop(np.random.default_rng(backdrop_seed))
    face = make_face(label, np.random.default_rng(face_seed)).image
    frame[y : y + SIDE, x : x + SIDE] = cv2.resize(face, (SIDE, SIDE), interpolation=cv2.INTER_CUBIC)
    return frame


def moving_face_frames(n: int, label: str = "happy") -> list[np.ndarray]:
    """`n` frames of `frame_with_face`, the face drifting a little from one to the next."""
    return [
        frame_with_face(label, 220 + int(30 * np.sin(i / 6)), 140 + int(15 * np.cos(i / 9))) for i in range(n)
    ]


def write_y4m(frames: list[np.ndarray], path: Path, fps: int) -> Path:
    """`frames` (RGB, all one size, even sides) as a raw YUV 4:2:0 clip: the format Chromium's
    fake camera plays (`--use-file-for-fake-video-capture`), looping."""
    height, width = frames[0].shape[:2]
    with open(path, "wb") as out:
        out.write(f"YUV4MPEG2 W{width} H{height} F{fps}:1 Ip A1:1 C420jpeg\n".encode())
        for frame in frames:
            out.write(b"FRAME\n")
            out.write(cv2.cvtColor(frame, cv2.COLOR_RGB2YUV_I420).tobytes())
    return path


def run(frames: list[np.ndarray], model_source: str | None) -> dict:
    model = load_model(model_source)
    model.warm_up(batch_sizes=(1, 128))
    before = model_throughput(model, 128)
    stream = LiveStream()
    stream.process(model, frames[0])  # the first frame pays the lazy set-up
    seconds, found = [], 0
    for frame in frames:
        start = time.perf_counter()
        result = stream.process(model, frame)
        seconds.append(time.perf_counter() - start)
        found += len(result.boxes) == 1
    after = model_throughput(model, 128)
    bare = (before + after) / 2
    ms = 1000 * statistics.median(seconds)
    return {
        "model": model.source,
        "precision": model.precision,
        "frames": len(frames),
        "frames_with_the_face": found,
        "median_ms": ms,
        "frames_per_s": 1000 / ms,
        "bare_images_per_s": {"before": before, "after": after},
        "fe_per_frame": ms * bare / 1000,
    }


def format_result(r: dict) -> str:
    bare = r["bare_images_per_s"]
    return "\n".join(
        [
            f"Live stream, {r['frames']} frames of 640×480 with one face, frame by frame "
            f"({r['precision']}; bare model {bare['before']:.0f} / {bare['after']:.0f} images/s "
            "before / after)",
            f"median {r['median_ms']:.1f} ms a frame: {r['frames_per_s']:.1f} frames/s, "
            f"{r['fe_per_frame']:.1f} fe a frame; the face boxed on {r['frames_with_the_face']} "
            f"of {r['frames']}",
            "Target: at least 15 processed frames a second on 2 CPU cores.",
        ]
    )


@command
def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m bench.live", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--frames", type=int, default=100, help="frames to time; default 100")
    p.add_argument("--model", default=None, help="model folder or Hub id; default: the demo model")
    p.add_argument("--json", type=Path, default=None, help="also write the result as JSON here")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    if args.frames < 1:
        p.error("--frames must be at least 1")
    result = run(moving_face_frames(args.frames), args.model)
    emit(format_result(result), result, args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
