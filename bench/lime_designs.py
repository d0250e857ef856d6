"""`python -m bench.lime_designs [--designs a,b,...] [--agreement-seed S] [--pointing-seed S] [--json PATH]`

LIME designs side by side: for each, the perturbed faces it asks the model about (its
forwards), its time per face in ms and in forward-equivalents (fe: ms × the bare model's
images/s ÷ 1000, measured in the same run), how well it agrees with a 1000-sample lime_image
reference on the same segments (top-5 overlap and rank correlation, as a share of the agreement
of two such references: the noise floor), and how often its map of the predicted emotion points
at the regions that define it (`bench.truth`'s pointing game, 4 px) on correctly classified
synthetic faces.

Designs are chosen on the default seeds (agreement: `bench_faces` of seed 11; pointing: seed 99)
and then checked on others (`--agreement-seed 211 --pointing-seed 41`, 42, 43), which the
tests and `bench.explain` also use.
"""

from __future__ import annotations

import argparse
import logging
import sys
from dataclasses import asdict, replace
from pathlib import Path

import numpy as np
from tqdm import tqdm

from bench import emit
from bench.explain import REFERENCE_SAMPLES, bench_faces, model_throughput
from bench.truth import overall_and_worst, pointing
from emotion.cli import command
from emotion.evaluation.agreement import lime_agreement
from emotion.explainers.lime import LimeConfig, lime_weights, segment_face
from emotion.model import EmotionModel
from emotion.storage.model_folder import load_model
from training.synthetic import SyntheticSet, make_dataset

# name → the LimeConfig fields it changes from the default.
DESIGNS: dict[str, dict] = {
    "lime_image sampling 96 seg 256": {"n_segments": 96, "num_samples": 256, "sampling": "independent"},
    "paired 96 seg 256": {"n_segments": 96, "num_samples": 256},
    "paired 96 seg 64": {"n_segments": 96, "num_samples": 64},
    "paired 96 seg 64 alpha 8": {"n_segments": 96, "num_samples": 64, "alpha": 8.0},
    "paired 48 seg 96": {"n_segments": 48, "num_samples": 96},
    "paired 48 seg 64": {"n_segments": 48, "num_samples": 64},
    "paired 32 seg 64": {"n_segments": 32, "num_samples": 64},
    "paired 32 seg c3 64": {"n_segments": 32, "compactness": 3.0, "num_samples": 64},
    "paired 24 seg c3 64": {"n_segments": 24, "compactness": 3.0, "num_samples": 64},
    "paired 24 seg 64": {"n_segments": 24, "num_samples": 64},
    "paired 32 seg c3 64 alpha 4": {"n_segments": 32, "compactness": 3.0, "num_samples": 64, "alpha": 4.0},
    "felzenszwalb 100/40 64": {"segmenter": "felzenszwalb", "scale": 100, "min_size": 40, "num_samples": 64},
    "felzenszwalb 100/40 80": {"segmenter": "felzenszwalb", "scale": 100, "min_size": 40, "num_samples": 80},
    "felzenszwalb 100/40 96": {"segmenter": "felzenszwalb", "scale": 100, "min_size": 40, "num_samples": 96},
    "felzenszwalb 200/20 64": {"segmenter": "felzenszwalb", "scale": 200, "min_size": 20, "num_samples": 64},
    "felzenszwalb 200/20 80": {"segmenter": "felzenszwalb", "scale": 200, "min_size": 20, "num_samples": 80},
    "felzenszwalb 100/20 96": {"segmenter": "felzenszwalb", "scale": 100, "min_size": 20, "num_samples": 96},
    "paired 96 seg 64 smooth 1": {"n_segments": 96, "num_samples": 64, "smoothness": 1.0},
    "paired 96 seg 64 smooth 4": {"n_segments": 96, "num_samples": 64, "smoothness": 4.0},
    "paired 96 seg 64 smooth 16": {"n_segments": 96, "num_samples": 64, "smoothness": 16.0},
    "paired 48 seg 64 smooth 4": {"n_segments": 48, "num_samples": 64, "smoothness": 4.0},
    "paired 64 seg 64 smooth 4": {"n_segments": 64, "num_samples": 64, "smoothness": 4.0},
    "paired 64 seg 128": {"n_segments": 64, "num_samples": 128},
    "paired 64 seg 160": {"n_segments": 64, "num_samples": 160},
    "paired 80 seg 192": {"n_segments": 80, "num_samples": 192},
    "paired 96 seg 192": {"n_segments": 96, "num_samples": 192},
    "felzenszwalb 100/40 128": {
        "segmenter": "felzenszwalb",
        "scale": 100,
        "min_size": 40,
        "num_samples": 128,
    },
    "paired 80 seg 160": {"n_segments": 80, "num_samples": 160},
    "paired 80 seg 128": {"n_segments": 80, "num_samples": 128},
    "paired 72 seg 144": {"n_segments": 72, "num_samples": 144},
}


def lime_pointing(model: EmotionModel, faces: SyntheticSet, config: LimeConfig) -> dict:
    """`bench.truth`'s pointing game for LIME with `config`: overall and in the worst class, with
    the per-class scores, and LIME's mean ms per correctly classified face."""
    seconds: dict[str, float] = {}
    table, right, _ = pointing(model, faces, ("lime",), configs={"lime": config}, seconds=seconds)
    return {
        **overall_and_worst(table, "lime"),
        "per_class": {k: v["pointing"] for k, v in table["lime"].items() if k != "all"},
        "ms_per_face": seconds["lime"] * 1000 / max(right, 1),
    }


METRICS = ("top_k_overlap", "rank_correlation")


class References:
    """Two 1000-sample lime_image references per face and segmentation (fp32), computed once
    for all the designs that share the segmentation."""

    def __init__(self, reference: EmotionModel):
        self.reference = reference
        self.cache: dict[tuple, list[tuple[np.ndarray, np.ndarray, np.ndarray]]] = {}

    def of(
        self, faces: list[np.ndarray], config: LimeConfig
    ) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
        key = (
            config.segmenter,
            config.n_segments,
            config.compactness,
            config.scale,
            config.min_size,
            config.hide,
            config.hide_width,
        )
        if key not in self.cache:
            ref = replace(
                config, num_samples=REFERENCE_SAMPLES, batch_size=250, sampling="independent", alpha=1.0
            )
            rows = []
            for i, face in enumerate(tqdm(faces, desc="references", unit="face", leave=False)):
                segments = segment_face(face, config)
                rows.append(
                    (
                        segments,
                        lime_weights(self.reference, face, segments, replace(ref, random_state=1000 + i)),
                        lime_weights(self.reference, face, segments, replace(ref, random_state=2000 + i)),
                    )
                )
            self.cache[key] = rows
        return self.cache[key]


def agreement(model: EmotionModel, faces: list[np.ndarray], config: LimeConfig, refs: References) -> dict:
    """The design against the first reference, the second reference against it (the noise
    floor), and their ratio, averaged over faces."""
    ours, floor = [], []
    for face, (segments, ref, ref_again) in zip(faces, refs.of(faces, config), strict=True):
        ours.append(lime_agreement(lime_weights(model, face, segments, config), ref))
        floor.append(lime_agreement(ref_again, ref))
    mean = {m: float(np.mean([a[m] for a in ours])) for m in METRICS}
    noise = {m: float(np.mean([a[m] for a in floor])) for m in METRICS}
    return {
        "segments": float(np.mean([int(s.max()) + 1 for s, _, _ in refs.of(faces, config)])),
        "design": mean,
        "noise_floor": noise,
        "relative": {m: mean[m] / noise[m] for m in METRICS},
    }


def run(designs: list[str], agreement_seed: int, pointing_seed: int, faces: int, per_class: int) -> dict:
    model = load_model(None, device="cpu", precision="auto")
    reference = load_model(None, device="cpu", precision="fp32")
    model.warm_up(batch_sizes=(1, 64, 128))
    crops = bench_faces(faces, seed=agreement_seed)
    truth = make_dataset(per_class, seed=pointing_seed, workers=1)
    refs = References(reference)
    rows = []
    for name in tqdm(designs, desc="designs", unit="design"):
        config = replace(LimeConfig(), **DESIGNS[name])
        bare = model_throughput(model, 128)
        point = lime_pointing(model, truth, config)
        agree = agreement(model, crops, config, refs)
        rows.append(
            {
                "design": name,
                "config": asdict(config),
                "forwards": config.num_samples,
                "segments_found": agree["segments"],
                "ms_per_face": point["ms_per_face"],
                "bare_images_per_s": bare,
                "fe_per_face": point["ms_per_face"] * bare / 1000,
                "agreement": agree["relative"],
                "agreement_raw": agree["design"],
                "noise_floor": agree["noise_floor"],
                "pointing": point,
            }
        )
    return {
        "precision": model.precision,
        "agreement_faces": {"seed": agreement_seed, "count": faces},
        "pointing_faces": {"seed": pointing_seed, "per_class": per_class},
        "rows": rows,
    }


def format_result(result: dict) -> str:
    lines = [
        f"LIME designs ({result['precision']}); agreement on {result['agreement_faces']['count']} faces "
        f"of seed {result['agreement_faces']['seed']} as a share of the 1000-sample reference's noise "
        f"floor; pointing on seed {result['pointing_faces']['seed']} "
        f"({result['pointing_faces']['per_class']} a class, correctly classified)",
        f"{'design':<36}{'segments':>9}{'forwards':>9}{'ms/face':>9}{'fe':>7}{'top-5':>7}{'rank':>7}{'pointing':>10}{'worst':>7}",
    ]
    for r in result["rows"]:
        lines.append(
            f"{r['design']:<36}{r['segments_found']:>9.0f}{r['forwards']:>9}{r['ms_per_face']:>9.1f}{r['fe_per_face']:>7.1f}"
            f"{r['agreement']['top_k_overlap']:>7.2f}{r['agreement']['rank_correlation']:>7.2f}"
            f"{r['pointing']['all']:>9.1%}{r['pointing']['worst']:>7.0%}"
        )
    return "\n".join(lines)


@command
def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m bench.lime_designs",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--designs", default=",".join(DESIGNS), help="comma-separated names from DESIGNS")
    p.add_argument("--agreement-seed", type=int, default=11)
    p.add_argument("--pointing-seed", type=int, default=99)
    p.add_argument("--faces", type=int, default=8, help="faces for the agreement; default 8")
    p.add_argument("--per-class", type=int, default=30, help="faces a class for pointing; default 30")
    p.add_argument("--json", type=Path, default=None)
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    names = [n.strip() for n in args.designs.split(",") if n.strip()]
    unknown = [n for n in names if n not in DESIGNS]
    if unknown:
        p.error(f"unknown designs {unknown}; known: {list(DESIGNS)}")
    result = run(names, args.agreement_seed, args.pointing_seed, args.faces, args.per_class)
    emit(format_result(result), result, args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
