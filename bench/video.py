"""`python -m bench.video [--frames N] [--input VIDEO] [--device cpu|cuda] [--model SRC] [--json PATH]`

Frames per second of detection + classification + Grad-CAM of every label on a stream of
640×480 frames, `emotion.video.analyze_frame` against the same work done off the shelf
(the photo detection settings on the full frame, classification in fp32, pytorch-grad-cam
called once per class), alternating frame by frame. Without `--input` the stream is made
here: two faces (the astronaut's and a synthetic one) drifting over a textured backdrop.

Also reports how many of the planted faces each path found, so a faster detector that misses
faces would show.
"""

from __future__ import annotations

import argparse
import logging
import statistics
import sys
import time
from dataclasses import asdict
from pathlib import Path

import cv2
import numpy as np
import torch
from tqdm import tqdm

from bench import describe_device, emit, load_bench_model, sync_device
from bench.explain import Baseline
from emotion.cli import command
from emotion.faces import DetectConfig, crop_face, detect_faces
from emotion.video import VIDEO_DETECT, analyze_frame, read_frames

FRAME_SIZE = (640, 480)


def synthetic_stream(n: int, seed: int = 5) -> list[np.ndarray]:
    """`n` 640×480 frames with two faces gliding across a noisy gradient backdrop."""
    from skimage import data

    from training.synthetic import make_face

    rng = np.random.default_rng(seed)
    width, height = FRAME_SIZE
    ramp = np.linspace(60, 190, width, dtype=np.float32)[None, :, None]
    backdrop = np.clip(ramp + rng.normal(0, 12, (height, width, 3)), 0, 255).astype(np.uint8)
    astronaut = data.astronaut()[20:220, 130:330]  # her head and some shoulder, 200×200
    drawn = cv2.resize(make_face("surprised", rng).image, (170, 170), interpolation=cv2.INTER_CUBIC)
    frames = []
    for i in range(n):
        frame = backdrop.copy()
        t = i / max(n - 1, 1)
        ax, ay = int(30 + 120 * t), int(140 + 30 * np.sin(6 * t))
        dx, dy = int(420 - 60 * t), int(60 + 40 * t)
        frame[ay : ay + 200, ax : ax + 200] = astronaut
        frame[dy : dy + 170, dx : dx + 170] = drawn
        frames.append(frame)
    return frames


def baseline_frame(baseline: Baseline, frame: np.ndarray) -> int:
    """Off-the-shelf per-frame work; returns the number of faces found."""
    boxes = detect_faces(frame, DetectConfig())
    for box in boxes:
        face = crop_face(frame, box)
        baseline.probabilities(face)
        baseline.gradcams(face)
    return len(boxes)


def run(frames: list[np.ndarray], device: str = "cpu", model_source: str | None = None) -> dict:
    model = load_bench_model(model_source, device, "auto")
    reference = load_bench_model(model_source, device, "fp32")
    model.warm_up()
    reference.warm_up()
    baseline = Baseline(reference)
    for frame in frames[:2]:  # warm-up: first calls pay for lazy set-up
        analyze_frame(model, frame)
        baseline_frame(baseline, frame)
    times = {"baseline": [], "project": []}
    found = {"baseline": [], "project": []}
    parts: dict[str, list[float]] = {}
    for frame in tqdm(frames, desc="frames", unit="frame"):
        sync_device(model.device)
        start = time.perf_counter()
        found["baseline"].append(baseline_frame(baseline, frame))
        sync_device(model.device)
        times["baseline"].append(time.perf_counter() - start)
        start = time.perf_counter()
        result = analyze_frame(model, frame)
        sync_device(model.device)
        times["project"].append(time.perf_counter() - start)
        found["project"].append(len(result.boxes))
        for part, ms in result.timings_ms.items():
            parts.setdefault(part, []).append(ms)
    fps = {side: len(frames) / sum(values) for side, values in times.items()}
    return {
        "device": describe_device(model.device),
        "model": model.source,
        "precision": model.precision,
        "frames": len(frames),
        "frame_size": list(frames[0].shape[1::-1]),
        "video_detect": asdict(VIDEO_DETECT),
        "fps": fps,
        "speedup": fps["project"] / fps["baseline"],
        "project_ms_median": {part: statistics.median(values) for part, values in parts.items()},
        "faces_per_frame_mean": {side: float(np.mean(values)) for side, values in found.items()},
    }


def format_result(result: dict) -> str:
    parts = ", ".join(f"{k} {v:.1f}" for k, v in result["project_ms_median"].items())
    faces = result["faces_per_frame_mean"]
    return "\n".join(
        [
            f"device {result['device']} · model {result['model']} · precision {result['precision']} · "
            f"{result['frames']} frames of {result['frame_size'][0]}×{result['frame_size'][1]}",
            f"baseline  {result['fps']['baseline']:7.1f} frames/s   faces per frame {faces['baseline']:.2f}",
            f"project   {result['fps']['project']:7.1f} frames/s   faces per frame {faces['project']:.2f}",
            f"speed-up  {result['speedup']:7.1f}×",
            f"project per frame, median ms: {parts}",
        ]
    )


@command
def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m bench.video",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--frames", type=int, default=60, help="frames to time; default 60")
    p.add_argument("--input", type=Path, default=None, help="a video file instead of the synthetic stream")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--model", default=None, help="model folder or Hub id; default: the demo model")
    p.add_argument("--json", type=Path, default=None, help="also write the result as JSON here")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    if args.frames < 1:
        p.error("--frames must be at least 1")
    if args.input:
        frames = [f for _, f in zip(range(args.frames), read_frames(args.input), strict=False)]
        if not frames:
            p.error(f"no frames could be read from {args.input}")
    else:
        frames = synthetic_stream(args.frames)
    result = run(frames, args.device, args.model)
    emit(format_result(result), result, args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
