"""`python -m bench.video [--frames N] [--input VIDEO] [--detect-every K] [--batch-frames B]
[--device cpu|cuda] [--model SRC] [--json PATH]`

Frames per second of detection + classification + Grad-CAM of every label on a stream of
640×480 frames, `emotion.video.frames.analyze_frame` against the same work done off the shelf
(the photo detection settings on the full frame, classification in fp32, pytorch-grad-cam
called once per class at the layer the project's video maps read: the last stage), alternating
frame by frame. The maps themselves are compared too: pytorch-grad-cam's on the project's own
crops against the project's (correlation per class). Without `--input` the stream is made
here: two faces (the astronaut's and a synthetic one) drifting over a textured backdrop.
The project path follows faces between detections (`emotion.video.locate`: the cascade on every
K-th frame, and on any frame where a face is lost; `--detect-every 1` runs it on every frame),
and classifies the faces of `--batch-frames` frames in one forward (`analyze_frames`; 1 = frame
by frame).
The bare model's images/s, measured before and after, is printed beside the figures, and each
path's time per frame in forward-equivalents (fe: ms × images/s ÷ 1000).

Also reports, for each path, how many of the planted faces its boxes land on (a box counts as
a hit when it overlaps a planted face at IoU ≥ 0.5, one box per face), how many planted faces
it missed and how many boxes fell on no face (false positives), so a faster detector that
misses faces, or one that finds faces in the backdrop, would show. A video from `--input` has
no planted faces: only its boxes per frame are counted.
"""

from __future__ import annotations

import argparse
import logging
import statistics
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import cv2
import numpy as np
import torch
from tqdm import tqdm

from bench import describe_device, emit, sync_device
from bench.explain import ASTRONAUT_FACE as PHOTO_FACE
from bench.explain import Baseline, model_throughput
from emotion.cli import command
from emotion.evaluation.agreement import map_correlation
from emotion.explainers.lime import LimeConfig
from emotion.photo.faces import Box, DetectConfig, crop_face, detect_faces
from emotion.storage.model_folder import load_model
from emotion.video.frames import (
    FRAMES_PER_FORWARD,
    VIDEO_DETECT,
    FrameFaces,
    analyze_frame,
    analyze_frames,
    batches,
    read_frames,
)
from emotion.video.identity import greedy_pairs
from emotion.video.locate import FaceLocator, LocateConfig

FRAME_SIZE = (640, 480)
# The 200×200 patch of scikit-image's astronaut the stream plants (her head and some shoulder),
# and her hand-marked face (bench.explain) in it.
ASTRONAUT_PATCH = (slice(20, 220), slice(130, 330))
ASTRONAUT_FACE = Box(PHOTO_FACE.x - 130, PHOTO_FACE.y - 20, PHOTO_FACE.w, PHOTO_FACE.h)
DRAWN_SIDE = 170  # the synthetic face, enlarged from 100 px
MIN_IOU = 0.5  # the usual bar for a detection to count (PASCAL VOC)
BARE_BATCH = LimeConfig().batch_size  # the bare model's speed at the batch every benchmark quotes


@dataclass(frozen=True)
class Stream:
    frames: list[np.ndarray]
    faces: list[list[Box]]  # the planted faces of each frame, in frame pixels


def synthetic_stream(n: int, seed: int = 5) -> Stream:
    """`n` 640×480 frames with two faces gliding across a noisy gradient backdrop, and where
    those faces are: the astronaut's hand-marked box and the synthetic face's skin ellipse."""
    from skimage import data

    from training.synthetic import make_face

    rng = np.random.default_rng(seed)
    backdrop = noisy_backdrop(rng)
    astronaut = data.astronaut()[ASTRONAUT_PATCH]
    face = make_face("surprised", rng)
    drawn = cv2.resize(face.image, (DRAWN_SIDE, DRAWN_SIDE), interpolation=cv2.INTER_CUBIC)
    drawn_face = _scaled(_mask_box(face.masks["face"]), DRAWN_SIDE / face.image.shape[0])
    frames, faces = [], []
    for i in range(n):
        frame = backdrop.copy()
        t = i / max(n - 1, 1)
        ax, ay = int(30 + 120 * t), int(140 + 30 * np.sin(6 * t))
        dx, dy = int(420 - 60 * t), int(60 + 40 * t)
        frame[ay : ay + astronaut.shape[0], ax : ax + astronaut.shape[1]] = astronaut
        frame[dy : dy + DRAWN_SIDE, dx : dx + DRAWN_SIDE] = drawn
        frames.append(frame)
        faces.append([_shifted(ASTRONAUT_FACE, ax, ay), _shifted(drawn_face, dx, dy)])
    return Stream(frames, faces)


def write_clip(path: Path, frames: list[np.ndarray], fps: float = 10.0, fourcc: str = "MJPG") -> Path:
    """RGB `frames` as a video at `path` (Motion-JPEG by default: every OpenCV build writes and
    reads it); RuntimeError where this OpenCV cannot write that codec."""
    height, width = frames[0].shape[:2]
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*fourcc), fps, (width, height))
    if not writer.isOpened():
        raise RuntimeError(
            f"This OpenCV cannot write {fourcc} into {path.suffix} files: pick another fourcc."
        )
    for frame in frames:
        writer.write(cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
    writer.release()
    return path


def noisy_backdrop(rng: np.random.Generator) -> np.ndarray:
    """A FRAME_SIZE H×W×3 uint8 frame: a left-to-right grey ramp with noise, no face in it."""
    width, height = FRAME_SIZE
    ramp = np.linspace(60, 190, width, dtype=np.float32)[None, :, None]
    return np.clip(ramp + rng.normal(0, 12, (height, width, 3)), 0, 255).astype(np.uint8)


def _mask_box(mask: np.ndarray) -> Box:
    ys, xs = np.nonzero(mask)
    return Box(int(xs.min()), int(ys.min()), int(xs.max() - xs.min() + 1), int(ys.max() - ys.min() + 1))


def _scaled(box: Box, k: float) -> Box:
    return Box(round(box.x * k), round(box.y * k), round(box.w * k), round(box.h * k))


def _shifted(box: Box, dx: int, dy: int) -> Box:
    return Box(box.x + dx, box.y + dy, box.w, box.h)


def match_faces(boxes: list[Box], planted: list[Box], min_iou: float = MIN_IOU) -> dict[str, int]:
    """Hits, misses and false positives of one frame's `boxes` against its `planted` faces.

    Pairs are taken best overlap first, each box and each planted face at most once, and only
    at IoU ≥ `min_iou`; every box left over is a false positive, a second box on an already
    matched face included, so two boxes cannot make one face count twice.
    """
    hits = len(greedy_pairs(boxes, planted, min_iou))
    return {"hits": hits, "misses": len(planted) - hits, "false_positives": len(boxes) - hits}


def baseline_frame(baseline: Baseline, frame: np.ndarray) -> list[Box]:
    """Off-the-shelf per-frame work; returns the boxes it found."""
    boxes = detect_faces(frame, DetectConfig())
    for box in boxes:
        face = crop_face(frame, box)
        baseline.probabilities(face)
        baseline.gradcams(face)
    return boxes


def map_agreement(baseline: Baseline, faces: FrameFaces, every: int = 4) -> list[float]:
    """Correlation of the project's Grad-CAM of each label with pytorch-grad-cam's, on the
    project's own crops of this frame (every `every`-th face crop is enough to show drift)."""
    rows = []
    for crop, cams in list(zip(faces.crops, faces.last_stage_gradcams, strict=True))[::every]:
        reference = baseline.gradcams(crop)
        rows += [map_correlation(ours, theirs) for ours, theirs in zip(cams, reference, strict=True)]
    return rows


def detection_counts(found: list[list[Box]], planted: list[list[Box]] | None) -> dict:
    """Boxes per frame, and with planted faces the hits, misses and false positives summed
    over the frames (`match_faces`)."""
    counts: dict = {"boxes_per_frame": float(np.mean([len(boxes) for boxes in found]))}
    if planted is not None:
        counts["planted"] = sum(len(faces) for faces in planted)
        for key in ("hits", "misses", "false_positives"):
            counts[key] = 0
        for boxes, faces in zip(found, planted, strict=True):
            for key, value in match_faces(boxes, faces).items():
                counts[key] += value
    return counts


def run(
    frames: list[np.ndarray],
    device: str = "cpu",
    model_source: str | None = None,
    planted: list[list[Box]] | None = None,
    follow: LocateConfig = LocateConfig(),
    chunk: int = FRAMES_PER_FORWARD,
) -> dict:
    """Time both paths over `frames`; `planted`, the true faces of each frame where known,
    turns the box counts into hits, misses and false positives."""
    model = load_model(model_source, device=device, precision="auto")
    reference = load_model(model_source, device=device, precision="fp32")
    model.warm_up()
    reference.warm_up()
    # The layer the video maps read (the last stage), so both paths make the same maps.
    baseline = Baseline(reference, layer=model.last_stage_layer_name)
    for frame in frames[:2]:  # warm-up: first calls pay for lazy set-up
        analyze_frame(model, frame)
        baseline_frame(baseline, frame)
    speed_before = model_throughput(model, BARE_BATCH)
    locator = FaceLocator(VIDEO_DETECT, follow)
    times = {"baseline": [], "project": []}
    found = {"baseline": [], "project": []}
    parts: dict[str, list[float]] = {}
    agreement: list[float] = []
    with tqdm(total=len(frames), desc="frames", unit="frame") as bar:
        for batch in batches(frames, chunk):
            for frame in batch:
                sync_device(model.device)
                start = time.perf_counter()
                found["baseline"].append(baseline_frame(baseline, frame))
                sync_device(model.device)
                times["baseline"].append(time.perf_counter() - start)
            start = time.perf_counter()
            results = analyze_frames(model, batch, locator=locator)
            sync_device(model.device)
            times["project"].append(time.perf_counter() - start)
            for result in results:
                found["project"].append(result.boxes)
                agreement += map_agreement(baseline, result)
                for part, ms in result.timings_ms.items():
                    parts.setdefault(part, []).append(ms)
            bar.update(len(batch))
    fps = {side: len(frames) / sum(values) for side, values in times.items()}
    speed = (speed_before + model_throughput(model, BARE_BATCH)) / 2
    fe_per_frame = {side: speed / value for side, value in fps.items()}
    return {
        "model_images_per_s": speed,
        "model_batch": BARE_BATCH,
        "follow": asdict(follow),
        "cascade_frames": locator.detections,
        "frames_per_forward": chunk,
        "device": describe_device(model.device),
        "model": model.source,
        "precision": model.precision,
        "gradcam_layer": model.last_stage_layer_name,
        "frames": len(frames),
        "frame_size": list(frames[0].shape[1::-1]),
        "video_detect": asdict(VIDEO_DETECT),
        "fps": fps,
        "fe_per_frame": fe_per_frame,
        "speedup": fps["project"] / fps["baseline"],
        "gradcam_agreement": {
            "maps": len(agreement),
            "mean": float(np.mean(agreement)) if agreement else None,
            "min": float(np.min(agreement)) if agreement else None,
        },
        "project_ms_mean": {part: statistics.fmean(values) for part, values in parts.items()},
        "detection": {side: detection_counts(boxes, planted) for side, boxes in found.items()},
    }


def format_result(result: dict) -> str:
    parts = ", ".join(f"{k} {v:.1f}" for k, v in result["project_ms_mean"].items())
    lines = [
        f"device {result['device']} · model {result['model']} · precision {result['precision']} · "
        f"{result['frames']} frames of {result['frame_size'][0]}×{result['frame_size'][1]}",
        f"model alone: {result['model_images_per_s']:.0f} images/s at batch {result['model_batch']} "
        f"(before and after, averaged) · the project's cascade ran on {result['cascade_frames']} of "
        f"{result['frames']} frames (every {result['follow']['detect_every']}, and where a face was lost)",
    ]
    for side in ("baseline", "project"):
        lines.append(
            f"{side:<10}{result['fps'][side]:7.1f} frames/s ({1000 / result['fps'][side]:.1f} ms, "
            f"{result['fe_per_frame'][side]:.1f} fe a frame)   {_detection_line(result['detection'][side])}"
        )
    cams = result["gradcam_agreement"]
    if cams["maps"]:
        lines.append(
            f"Grad-CAM at {result['gradcam_layer']}, correlation with pytorch-grad-cam's on the same crops "
            f"(per class): mean {cams['mean']:.5f}, min {cams['min']:.5f}"
        )
    lines += [
        f"speed-up  {result['speedup']:7.1f}×",
        f"project per frame, mean ms ({result['frames_per_forward']} frames' faces a forward): {parts}",
    ]
    return "\n".join(lines)


def _detection_line(counts: dict) -> str:
    boxes = f"boxes per frame {counts['boxes_per_frame']:.2f}"
    if "planted" not in counts:
        return boxes
    return (
        f"{boxes}: planted faces found {counts['hits']}/{counts['planted']}, "
        f"missed {counts['misses']}, false positives {counts['false_positives']} (IoU ≥ {MIN_IOU})"
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
    p.add_argument(
        "--detect-every",
        type=int,
        default=LocateConfig().detect_every,
        help="run the cascade on every K-th frame and follow faces in between "
        f"(default {LocateConfig().detect_every}; 1 = every frame)",
    )
    p.add_argument(
        "--batch-frames",
        type=int,
        default=FRAMES_PER_FORWARD,
        help=f"frames whose faces share one forward (default {FRAMES_PER_FORWARD}; 1 = frame by frame)",
    )
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--model", default=None, help="model folder or Hub id; default: the demo model")
    p.add_argument("--json", type=Path, default=None, help="also write the result as JSON here")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    if args.frames < 1:
        p.error("--frames must be at least 1")
    if args.detect_every < 1 or args.batch_frames < 1:
        p.error("--detect-every and --batch-frames must be at least 1")
    if args.input:
        frames = [f for _, f in zip(range(args.frames), read_frames(args.input), strict=False)]
        if not frames:
            p.error(f"no frames could be read from {args.input}")
        planted = None  # nobody marked where its faces are
    else:
        stream = synthetic_stream(args.frames)
        frames, planted = stream.frames, stream.faces
    follow = LocateConfig(detect_every=args.detect_every)
    result = run(frames, args.device, args.model, planted, follow, args.batch_frames)
    emit(format_result(result), result, args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
