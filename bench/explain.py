"""`python -m bench.explain [--faces N] [--repeats R] [--device cpu|cuda] [--model SRC] [--json PATH]`

The five-emotion report off the shelf against the project's `explain()`, on the same photos and
the same model, in one process, alternating face by face so drift in machine speed hits both:

  baseline  detection, classification in fp32, pytorch-grad-cam called once per class at the
            project's layer, and lime_image with its defaults (quickshift, 1000 samples,
            batch 10);
  project   `emotion.explain` (bf16 where the hardware has it, Grad-CAM's backward batched over
            the labels, LIME from paired orthogonal-array samples whose faces are made,
            classified and fitted on the model's device).

Then, untimed, how much the project's explanations agree with the slow ones:

  LIME      against a 1000-sample lime_image reference in fp32 on the project's segmentation
            (top-5 overlap and rank correlation of segment weights, per class, averaged), next
            to the agreement of two such references with different seeds (the reference's own
            noise: no sampler can agree with it better than this), and next to lime_image's
            own sampling with as many samples as the project's (what the sampling design adds);
  Grad-CAM  correlation of each class's map with the baseline's.

`--no-detect` times both paths from the face crops (the astronaut's at a box marked by hand, the
synthetic faces as drawn), for a machine whose OpenCV has no Haar cascade (5.x, as on the lent
GPU machines); it is chosen by itself there. Time detection on a CPU machine with the full run.

`--quick` (3 faces, 1 repeat) is what CI runs so this cannot rot; it asserts no timing.
"""

from __future__ import annotations

import argparse
import logging
import statistics
import sys
import time
from dataclasses import replace
from pathlib import Path

import cv2
import numpy as np
import torch
from lime import lime_image
from pytorch_grad_cam import GradCAM
from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget
from tqdm import tqdm

from bench import describe_device, emit, sync_device
from emotion.cli import command
from emotion.evaluation.agreement import lime_agreement, map_correlation
from emotion.explainers.lime import LimeConfig, lime_weights, segment_face
from emotion.model import EmotionModel
from emotion.photo.faces import Box, DetectConfig, center_box, crop_face, detect_faces, has_haar_cascade
from emotion.photo.pipeline import explain
from emotion.storage.model_folder import load_model
from emotion.timing import timed

PARTS = ("detect", "classify", "gradcam", "lime", "total")
# What the page shows first (face, probabilities, Grad-CAM), before LIME's maps follow.
FIRST_MAPS = ("load", "detect", "classify", "gradcam")
DESIGNS_TABLE = Path(__file__).parent / "results" / "lime-designs.txt"
REFERENCE_SAMPLES = 1000
# The astronaut's face in scikit-image's photo (fringe to chin, cheek to cheek), marked by hand.
ASTRONAUT_FACE = Box(180, 60, 92, 129)


def bench_photos(n: int, seed: int = 11) -> list[np.ndarray]:
    """`n` photos with one face each: scikit-image's astronaut, then synthetic faces (seed
    `seed`, classes in turn) enlarged onto a plain 320×320 backdrop so the cascade finds them."""
    from skimage import data

    photos = [data.astronaut()]
    for face in _drawn_faces(n - 1, seed):
        photo = np.full((320, 320, 3), 128, np.uint8)
        photo[60:260, 60:260] = cv2.resize(face, (200, 200), interpolation=cv2.INTER_CUBIC)
        photos.append(photo)
    return photos[:n]


def bench_faces(n: int, seed: int = 11) -> list[np.ndarray]:
    """The faces of `bench_photos(n, seed)` cut without the cascade: the astronaut's at
    `ASTRONAUT_FACE` with the detector's margin, then the synthetic faces as drawn."""
    from skimage import data

    astronaut = crop_face(data.astronaut(), ASTRONAUT_FACE, margin=DetectConfig().margin)
    return [astronaut, *_drawn_faces(n - 1, seed)][:n]


def _drawn_faces(count: int, seed: int) -> np.ndarray:
    """`count` 100×100 synthetic faces of seed `seed`, the classes in turn."""
    from training.synthetic import make_dataset

    return make_dataset(max(1, (count + 4) // 5), seed=seed).images[: max(count, 0)]


class Baseline:
    """The report as one would write it from the libraries' documentation."""

    def __init__(self, model: EmotionModel, layer: str | None = None):
        self.model = model  # fp32, BatchNorm not folded: `net` is used directly
        # The layer the project's default Grad-CAM reads, unless told otherwise.
        self.layer = model.net.get_submodule(layer or model.gradcam_layer_name)

    @torch.inference_mode()
    def probabilities(self, faces: np.ndarray) -> np.ndarray:
        logits = self.model.net(self.model.to_tensor(faces))
        return torch.softmax(logits, dim=1).cpu().numpy()

    def gradcams(self, face: np.ndarray) -> np.ndarray:
        x = self.model.to_tensor(face)
        with GradCAM(model=self.model.net, target_layers=[self.layer]) as cam:
            maps = [
                cam(input_tensor=x, targets=[ClassifierOutputTarget(c)])[0]
                for c in range(len(self.model.labels))
            ]
        self.model.net.zero_grad(set_to_none=True)
        return np.stack(maps)

    def report(
        self, photo: np.ndarray, detect: bool = True
    ) -> tuple[dict[str, float], np.ndarray, np.ndarray]:
        """(timings in ms, the face, C×H×W Grad-CAMs). Without `detect`, the photo is the face."""
        timings: dict[str, float] = {}
        with timed(timings, "total"):
            with timed(timings, "detect"):
                boxes = detect_faces(photo) if detect else []
                face = (
                    crop_face(photo, boxes[0], margin=DetectConfig().margin)
                    if boxes
                    else crop_face(photo, center_box(photo), margin=0)
                )
            with timed(timings, "classify"):
                self.probabilities(face)
            with timed(timings, "gradcam"):
                cams = self.gradcams(face)
            with timed(timings, "lime"):
                lime_image.LimeImageExplainer().explain_instance(
                    face, self.probabilities, top_labels=5, num_samples=1000
                )
        return timings, face, cams


def time_reports(
    model: EmotionModel,
    baseline: Baseline,
    photos: list[np.ndarray],
    repeats: int,
    config: LimeConfig = LimeConfig(),
    detect: bool = True,
) -> tuple[dict[str, dict[str, list[float]]], list[dict]]:
    """Per-part times of both paths, face by face and alternating, plus what agreement needs.
    The project path runs LIME with `config`, the settings the agreement figures are for.
    Without `detect`, each photo is a face crop and neither path looks for faces."""
    whole_image = "if_no_face" if detect else "always"
    times = {side: {part: [] for part in PARTS} for side in ("baseline", "project")}
    times["project"]["first maps"] = []
    faces = []
    device = model.device
    with tqdm(total=repeats * len(photos), desc="timing reports", unit="face") as bar:
        for repeat in range(repeats):
            for photo in photos:
                sync_device(device)
                base_t, base_face, base_cams = baseline.report(photo, detect)
                sync_device(device)
                report = explain(model, photo, whole_image=whole_image, lime=config)
                sync_device(device)
                for part in PARTS:
                    times["baseline"][part].append(base_t[part])
                    times["project"][part].append(report.timings_ms.get(part, 0.0))
                times["project"]["first maps"].append(sum(report.timings_ms.get(p, 0.0) for p in FIRST_MAPS))
                if repeat == 0:
                    face = report.faces[0]
                    if not np.array_equal(face.face, base_face):
                        raise RuntimeError(
                            "The baseline and the project cut different faces: the benchmark is broken."
                        )
                    faces.append(
                        {"face": face.face, "project_cams": face.maps["gradcam"], "baseline_cams": base_cams}
                    )
                bar.update()
    return times, faces


def lime_reference_agreement(
    model: EmotionModel, reference: EmotionModel, faces: list[np.ndarray], config: LimeConfig
) -> dict:
    """The project's LIME (`model`, `config`) against 1000-sample lime_image references
    (`reference`, fp32) on the project's segmentation, per face and averaged over faces."""
    rows = []
    ref_config = replace(config, num_samples=REFERENCE_SAMPLES, batch_size=250, sampling="independent")
    for i, face in enumerate(tqdm(faces, desc="LIME agreement", unit="face")):
        segments = segment_face(face, config)
        ref = lime_weights(reference, face, segments, replace(ref_config, random_state=1000 + i))
        ref_again = lime_weights(reference, face, segments, replace(ref_config, random_state=2000 + i))
        ours = lime_weights(model, face, segments, config)
        same_n = lime_weights(model, face, segments, replace(config, sampling="independent"))
        rows.append(
            {
                "segments": int(segments.max()) + 1,
                "project_vs_reference": lime_agreement(ours, ref),
                "reference_vs_reference": lime_agreement(ref_again, ref),
                "lime_sampling_same_n_vs_reference": lime_agreement(same_n, ref),
            }
        )
    mean = {
        key: {m: float(np.mean([r[key][m] for r in rows])) for m in ("top_k_overlap", "rank_correlation")}
        for key in ("project_vs_reference", "reference_vs_reference", "lime_sampling_same_n_vs_reference")
    }
    mean["relative_to_reference_noise"] = {
        m: mean["project_vs_reference"][m] / mean["reference_vs_reference"][m]
        for m in ("top_k_overlap", "rank_correlation")
    }
    return {"per_face": rows, "mean": mean}


def gradcam_agreement(labels: tuple[str, ...], faces: list[dict]) -> dict:
    """Correlation of the project's Grad-CAM with pytorch-grad-cam's, per class and face."""
    corr = [
        [
            map_correlation(item["project_cams"][label], item["baseline_cams"][c])
            for c, label in enumerate(labels)
        ]
        for item in faces
    ]
    return {"per_face": corr, "mean": float(np.mean(corr)), "min": float(np.min(corr))}


def run(
    faces: int = 8,
    repeats: int = 2,
    device: str = "cpu",
    model_source: str | None = None,
    config: LimeConfig = LimeConfig(),
    detect: bool = True,
    pointing_seeds: tuple[int, ...] = (41,),
) -> dict:
    model = load_model(model_source, device=device, precision="auto")
    reference = load_model(model_source, device=device, precision="fp32")
    model.warm_up(batch_sizes=(1, config.batch_size))  # as the app does at start
    reference.warm_up(batch_sizes=(1, 10))
    photos = bench_photos(faces) if detect else bench_faces(faces)
    throughput = model_throughput(model, config.batch_size)
    times, crops = time_reports(model, Baseline(reference), photos, repeats, config, detect)
    throughput = (throughput + model_throughput(model, config.batch_size)) / 2
    summary = {
        side: {part: _stats(values) for part, values in parts.items()} for side, parts in times.items()
    }
    ratios = {
        part: summary["baseline"][part]["median"] / max(summary["project"][part]["median"], 1e-9)
        for part in PARTS
    }
    fe = {
        side: {part: stats["median"] * throughput / 1000 for part, stats in parts.items()}
        for side, parts in summary.items()
    }
    return {
        "device": describe_device(model.device),
        "torch_threads": torch.get_num_threads(),
        "model": model.source,
        "precision": model.precision,
        "model_images_per_s": throughput,
        "faces": faces,
        "repeats": repeats,
        "detect": detect,
        "lime": {
            "num_samples": config.num_samples,
            "batch_size": config.batch_size,
            "sampling": config.sampling,
            "reference_samples": REFERENCE_SAMPLES,
        },
        "ms": summary,
        "fe": fe,
        "speedup": ratios,
        "lime_agreement": lime_reference_agreement(model, reference, [c["face"] for c in crops], config),
        "gradcam_agreement": gradcam_agreement(model.labels, crops),
        "pointing": pointing_on_seeds(model, pointing_seeds, config) if pointing_seeds else None,
    }


def pointing_on_seeds(
    model: EmotionModel, seeds: tuple[int, ...], config: LimeConfig, per_class: int = 30
) -> dict:
    """`bench.truth`'s pointing game for Grad-CAM and LIME (with `config`) on unseen synthetic
    faces of each seed, `per_class` a class: the share of correctly classified faces whose
    predicted emotion's map peaks on the regions that define it, overall and worst class."""
    from bench.truth import overall_and_worst, pointing
    from training.synthetic import make_dataset

    rows = {}
    for seed in seeds:
        faces = make_dataset(per_class, seed=seed, workers=1)
        table, right, total = pointing(model, faces, ("gradcam", "lime"), configs={"lime": config})
        rows[seed] = {name: overall_and_worst(table, name) for name in ("gradcam", "lime", "blob")}
        rows[seed]["faces"] = {"correct": right, "total": total}
    return rows


def model_throughput(model: EmotionModel, batch_size: int, batches: int = 3) -> float:
    """Images/s of `model.predict` on random faces at LIME's batch size: how fast this machine is
    right now, so figures from different runs (or a busy machine) can be compared."""
    size = model.preprocessing.input_size
    faces = np.random.default_rng(0).integers(0, 256, (batch_size, size, size, 3), dtype=np.uint8)
    model.predict(faces)
    sync_device(model.device)
    start = time.perf_counter()
    for _ in range(batches):
        model.predict(faces)
    sync_device(model.device)
    return batches * batch_size / (time.perf_counter() - start)


def _stats(values: list[float]) -> dict[str, float]:
    return {"median": statistics.median(values), "min": min(values), "max": max(values)}


def format_result(result: dict) -> str:
    ms = result["ms"]
    lines = [
        f"device {result['device']} · model {result['model']} · project precision {result['precision']} · "
        f"{result['faces']} faces × {result['repeats']} repeats",
        f"project LIME: {result['lime']['num_samples']} samples ({result['lime']['sampling']}); "
        f"model alone: {result['model_images_per_s']:.0f} images/s at batch {result['lime']['batch_size']} "
        "(before and after, averaged)",
        "",
        "fe = ms × the model's images/s ÷ 1000: how many of its own forwards a part costs, on any CPU",
        "",
        f"{'part':<12}{'baseline ms (min-max)':>24}{'fe':>7}"
        f"{'project ms (min-max)':>26}{'fe':>7}{'speed-up':>10}",
    ]
    fe = result["fe"]
    for part in (*PARTS, "first maps"):
        if part == "detect" and not result["detect"]:
            lines.append(f"{part:<12}{'not timed: from face crops (--no-detect)':>52}")
            continue
        p = ms["project"][part]
        project = (
            f"{p['median']:>9.1f} ({p['min']:.1f}-{p['max']:.1f})".ljust(26) + f"{fe['project'][part]:>7.0f}"
        )
        if part not in ms["baseline"]:
            lines.append(f"{part:<12}{'(shown after LIME)':>24}{'':>7}  " + project)
            continue
        b = ms["baseline"][part]
        lines.append(
            f"{part:<12}{b['median']:>9.1f} ({b['min']:.1f}-{b['max']:.1f})".ljust(36)
            + f"{fe['baseline'][part]:>7.0f}  "
            + project
            + f"{result['speedup'][part]:>9.1f}×"
        )
    mean = result["lime_agreement"]["mean"]
    cams = result["gradcam_agreement"]
    lines += [
        "",
        f"LIME agreement with a {result['lime']['reference_samples']}-sample lime_image reference "
        "(fp32), mean over faces and classes:",
        f"{'':<44}{'top-5 overlap':>14}{'rank corr.':>12}",
    ]
    for key, name in (
        ("project_vs_reference", "project"),
        ("reference_vs_reference", "another 1000-sample reference (noise floor)"),
        ("lime_sampling_same_n_vs_reference", "lime_image sampling, project's sample count"),
        ("relative_to_reference_noise", "project / noise floor"),
    ):
        lines.append(f"{name:<44}{mean[key]['top_k_overlap']:>14.3f}{mean[key]['rank_correlation']:>12.3f}")
    lines.append(
        f"Grad-CAM correlation with pytorch-grad-cam, per class: mean {cams['mean']:.5f}, "
        f"min {cams['min']:.5f}"
    )
    if result.get("pointing"):
        lines += [
            "",
            "Pointing game (bench.truth: the predicted emotion's map peaks on its regions), unseen faces:",
        ]
        for seed, row in result["pointing"].items():
            lines.append(
                f"  seed {seed} ({row['faces']['correct']} of {row['faces']['total']} classified right): "
                + " · ".join(
                    f"{name} {row[name]['all']:.1%} (worst class {row[name]['worst']:.0%})"
                    for name in ("gradcam", "lime", "blob")
                )
            )
    if DESIGNS_TABLE.exists():
        lines += ["", f"The LIME designs tried ({DESIGNS_TABLE.relative_to(DESIGNS_TABLE.parents[2])}):"]
        lines.append(DESIGNS_TABLE.read_text().rstrip())
    return "\n".join(lines)


@command
def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m bench.explain",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "--faces", type=int, default=8, help="photos to explain (astronaut + synthetic); default 8"
    )
    p.add_argument("--repeats", type=int, default=2, help="timed passes over the photos; default 2")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--model", default=None, help="model folder or Hub id; default: the demo model")
    p.add_argument("--lime-samples", type=int, default=LimeConfig().num_samples)
    p.add_argument("--quick", action="store_true", help="3 faces, 1 repeat: the CI smoke run")
    p.add_argument(
        "--no-detect",
        action="store_true",
        help="time from face crops, without face detection (chosen by itself where OpenCV has no "
        "Haar cascade, as OpenCV 5)",
    )
    p.add_argument(
        "--pointing-seeds",
        default="41",
        help="synthetic face seeds for the pointing game (comma-separated, 30 faces a class each; "
        "empty: skip); default 41",
    )
    p.add_argument("--json", type=Path, default=None, help="also write the result as JSON here")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    if args.faces < 1 or args.repeats < 1:
        p.error("--faces and --repeats must be at least 1")
    faces, repeats = (3, 1) if args.quick else (args.faces, args.repeats)
    detect = not args.no_detect and has_haar_cascade()
    if not args.no_detect and not detect:
        logging.info("This OpenCV has no Haar cascade: timing from face crops; time detection elsewhere.")
    config = LimeConfig(num_samples=args.lime_samples)
    seeds = () if args.quick else tuple(int(x) for x in args.pointing_seeds.split(",") if x.strip())
    result = run(faces, repeats, args.device, args.model, config, detect, seeds)
    emit(format_result(result), result, args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
