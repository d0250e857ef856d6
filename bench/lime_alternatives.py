"""`python -m bench.lime_alternatives [--train-per-class N] [--epochs E] [--json PATH]`

Estimators of LIME's segment weights that ask the model fewer questions than LIME's sampling,
held to the same 1000-sample lime_image reference as `bench.lime_designs` (top-5 overlap and
rank correlation as a share of two references' agreement, the noise floor), beside the project's
LIME at 64 and 256 samples measured in the same run:

- **segment gradients**: the derivative of each label's probability with respect to each
  segment's presence, at the half-on pattern and averaged over 16 of LIME's own patterns (for a
  smooth model, LIME's image weights approach such gradients: Garreau & Mardaoui, ICML 2021);
- **amortised**: a small head on the frozen network's four stages, trained to give the LIME
  weights of the run's own faces (LIME with the default settings on `--train-per-class` synthetic
  faces a class of seed 700), then asked about unseen faces (FastSHAP's idea, trained on LIME's
  answers);
- **LIME with an informative prior**: LIME's 64 or 96 samples fitted around one of the two
  estimates above, scaled to the samples (BayLIME's informative prior).

The amortised head's pointing game is scored on seeds 41 and 42 as `bench.truth` scores LIME.
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from tqdm import tqdm

from bench import emit
from bench.explain import bench_faces, model_throughput
from bench.lime_designs import METRICS, References
from emotion.cli import command
from emotion.evaluation.agreement import lime_agreement
from emotion.evaluation.groundtruth import pointing_score
from emotion.explainers.lime import (
    LimeConfig,
    fill_face,
    lime_kernel_weights,
    lime_weights,
    orthogonal_patterns,
    perturbed_probabilities,
    segment_face,
    weighted_ridge,
    weights_to_map,
)
from emotion.labels import EMOTIONS
from emotion.model import EmotionModel
from emotion.storage.model_folder import load_model
from training.synthetic import make_dataset

AGREEMENT_SEEDS = (11, 211, 47)
POINTING_SEEDS = (41, 42)


def segment_gradients(
    model: EmotionModel, face: np.ndarray, segments: np.ndarray, patterns: np.ndarray
) -> np.ndarray:
    """C×S: each label's probability differentiated by each segment's presence (1 shown, 0 hidden
    as LIME hides it), averaged over the K×S `patterns`, in fp32."""
    fill = torch.from_numpy(fill_face(face, segments)).permute(2, 0, 1)[None].float()
    shown = torch.from_numpy(face).permute(2, 0, 1)[None].float()
    z = torch.tensor(patterns, dtype=torch.float32, requires_grad=True)
    presence = z[:, torch.from_numpy(segments.astype(np.int64))][:, None]
    probs = torch.softmax(model.net(model.to_tensor_from_uint8(fill + presence * (shown - fill))), 1)
    grads = [
        torch.autograd.grad(probs[:, c].sum(), z, retain_graph=c < probs.shape[1] - 1)[0]
        for c in range(probs.shape[1])
    ]
    return torch.stack(grads, 1).mean(0).double().numpy()


STAGES = (1, 2, 3, 4)  # timm's feature indices of layer1-layer4


def stage_outputs(model: EmotionModel, faces: np.ndarray) -> list[torch.Tensor]:
    """The outputs of `STAGES` (timm's `forward_intermediates`) and the normalised input, for
    `faces`, in fp32 without gradients."""
    parts: list[list[torch.Tensor]] = [[] for _ in range(len(STAGES) + 1)]
    with torch.no_grad():
        for start in range(0, len(faces), 64):
            x = model.to_tensor(np.asarray(faces[start : start + 64]))
            stages = model.net.eval().forward_intermediates(x, indices=list(STAGES), intermediates_only=True)
            for part, t in zip(parts, [*stages, x], strict=True):
                part.append(t)
    return [torch.cat(p) for p in parts]


class AmortisedHead(nn.Module):
    """C maps at the input size from the four stages (brought to stage 1's grid) and the image."""

    def __init__(self, channels: tuple[int, ...], labels: int, width: int = 64):
        super().__init__()
        self.reduce = nn.ModuleList([nn.Conv2d(c, width, 1) for c in channels])
        self.image = nn.Conv2d(3, width, 3, padding=1)
        self.body = nn.Sequential(
            nn.ReLU(),
            nn.Conv2d(width, width, 3, padding=1),
            nn.ReLU(),
            nn.Conv2d(width, width, 3, padding=1),
            nn.ReLU(),
            nn.Conv2d(width, labels, 3, padding=1),
        )

    def forward(self, stages: list[torch.Tensor], x: torch.Tensor) -> torch.Tensor:
        grid = stages[0].shape[-2:]
        h = sum(
            F.interpolate(r(s), size=grid, mode="bilinear") for r, s in zip(self.reduce, stages, strict=True)
        )
        h = h + self.image(F.interpolate(x, size=grid, mode="area"))
        return F.interpolate(self.body(h), size=x.shape[-2:], mode="bilinear")


def segment_means(maps: torch.Tensor, segments: torch.Tensor, count: int) -> torch.Tensor:
    """B×C×count: the mean of each B×C×H×W map over each segment of the B×H×W `segments`."""
    b, c = maps.shape[:2]
    index = segments.reshape(b, 1, -1).expand(-1, c, -1)
    flat = maps.reshape(b, c, -1)
    total = torch.zeros(b, c, count).scatter_add_(2, index, flat)
    size = torch.zeros(b, c, count).scatter_add_(2, index, torch.ones_like(flat))
    return total / size.clamp(min=1)


def train_amortised(model: EmotionModel, lime_model: EmotionModel, per_class: int, epochs: int):
    """(head, scale) fitted to LIME's default weights on `per_class` synthetic faces a class of seed 700."""
    faces = make_dataset(per_class, seed=700, workers=1).images
    segments = [segment_face(f) for f in faces]
    weights = [
        lime_weights(lime_model, f, s)
        for f, s in zip(tqdm(faces, desc="LIME maps to learn"), segments, strict=True)
    ]
    count = max(w.shape[1] for w in weights)
    target, valid = torch.zeros(len(faces), len(EMOTIONS), count), torch.zeros(len(faces), 1, count)
    for i, w in enumerate(weights):
        target[i, :, : w.shape[1]], valid[i, :, : w.shape[1]] = torch.from_numpy(w), 1
    scale = float(target[valid.expand_as(target) > 0].std())
    seg = torch.from_numpy(np.stack(segments).astype(np.int64))
    stages = stage_outputs(model, faces)
    torch.manual_seed(0)
    head = AmortisedHead(tuple(s.shape[1] for s in stages[:-1]), len(EMOTIONS))
    steps = epochs * ((len(faces) + 31) // 32)
    opt = torch.optim.AdamW(head.parameters(), lr=2e-3, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=2e-3, total_steps=steps)
    for _ in tqdm(range(epochs), desc="training the head"):
        for b in torch.randperm(len(faces)).split(32):
            pred = segment_means(head([s[b] for s in stages[:-1]], stages[-1][b]), seg[b], count)
            loss = ((pred - target[b] / scale) ** 2 * valid[b]).sum() / (valid[b].sum() * len(EMOTIONS))
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
    return head.eval(), scale


def amortised_weights(
    model: EmotionModel, head: AmortisedHead, scale: float, faces, segments
) -> list[np.ndarray]:
    """C×S weights of each face: the head's maps averaged over the face's segments."""
    stages = stage_outputs(model, np.asarray(faces))
    with torch.no_grad():
        maps = head(stages[:-1], stages[-1]) * scale
    return [
        segment_means(maps[i : i + 1], torch.from_numpy(s.astype(np.int64))[None], int(s.max()) + 1)[0]
        .double()
        .numpy()
        for i, s in enumerate(segments)
    ]


def fit_around(data: np.ndarray, probs: torch.Tensor, prior: np.ndarray, alpha: float = 8.0) -> np.ndarray:
    """LIME's kernel-weighted ridge on the samples, around `prior` (C×S) scaled to them per label."""
    x, y = torch.from_numpy(data).double(), probs.double().cpu()
    w = torch.from_numpy(lime_kernel_weights(data))
    guess = x @ torch.from_numpy(prior).T
    out = []
    for c in range(y.shape[1]):
        design = torch.stack([torch.ones_like(guess[:, c]), guess[:, c]], 1) * w.sqrt()[:, None]
        gain = float(torch.linalg.lstsq(design, (y[:, c] * w.sqrt())[:, None]).solution[1, 0])
        rest = weighted_ridge(x, (y[:, c] - gain * guess[:, c])[:, None], w, alpha=alpha)[0][0].numpy()
        out.append(gain * prior[c] + rest)
    return np.stack(out)


def agreement_rows(model, fp32, head, scale) -> dict[str, dict[str, list[dict[str, float]]]]:
    """{seed: {estimator: [agreement with the first reference, per face]}} and the floor."""
    out: dict[str, dict[str, list]] = {}
    seconds: dict[str, list[float]] = {}

    def timed(name, fn, *args):
        start = time.perf_counter()
        result = fn(*args)
        seconds.setdefault(name, []).append(time.perf_counter() - start)
        return result

    for seed in AGREEMENT_SEEDS:
        faces = bench_faces(8, seed=seed)
        refs = References(fp32).of(faces, LimeConfig())
        amortised = amortised_weights(fp32, head, scale, faces, [s for s, _, _ in refs])
        rows = out.setdefault(str(seed), {})
        for face, (segments, ref, ref_again), amort in zip(faces, refs, amortised, strict=True):
            n = int(segments.max()) + 1
            half = np.full((1, n), 0.5, np.float32)
            several = orthogonal_patterns(16, n, np.random.RandomState(0)).astype(np.float32)
            estimates = {
                "noise floor (reference again)": ref_again,
                "LIME 256 samples": timed("LIME 256 samples", lime_weights, model, face, segments),
                "LIME 64 samples": timed(
                    "LIME 64 samples", lime_weights, model, face, segments, LimeConfig(num_samples=64)
                ),
                "segment gradients, half-on": timed(
                    "segment gradients, half-on", segment_gradients, fp32, face, segments, half
                ),
                "segment gradients, 16 patterns": timed(
                    "segment gradients, 16 patterns", segment_gradients, fp32, face, segments, several
                ),
                "amortised head": amort,
            }
            fill = fill_face(face, segments)
            for samples in (64, 96):
                data = orthogonal_patterns(samples, n, np.random.RandomState(0))
                probs = perturbed_probabilities(model, face, fill, segments, data, 128)
                for prior in ("segment gradients, half-on", "amortised head"):
                    estimates[f"LIME {samples} around {prior}"] = fit_around(data, probs, estimates[prior])
            for name, weights in estimates.items():
                rows.setdefault(name, []).append(lime_agreement(np.asarray(weights, np.float64), ref))
    return out, {k: float(np.mean(v)) for k, v in seconds.items()}


def amortised_pointing(model, fp32, head, scale) -> dict[str, float]:
    out = {}
    for seed in POINTING_SEEDS:
        faces = make_dataset(30, seed=seed, workers=1)
        right = np.flatnonzero(model.predict(faces.images).argmax(1) == faces.labels)
        segments = [segment_face(f) for f in faces.images[right]]
        weights = amortised_weights(fp32, head, scale, faces.images[right], segments)
        hits = [
            pointing_score(
                weights_to_map(w[faces.labels[i]], s), faces.defining_mask(i, EMOTIONS[faces.labels[i]])
            )
            for w, s, i in zip(weights, segments, right, strict=True)
        ]
        out[str(seed)] = float(np.mean(hits))
    return out


def run(per_class: int, epochs: int) -> dict:
    model = load_model(None, device="cpu", precision="auto")
    fp32 = load_model(None, device="cpu", precision="fp32")
    model.warm_up(batch_sizes=(1, 64, 128))
    head, scale = train_amortised(fp32, model, per_class, epochs)
    agreement, seconds = agreement_rows(model, fp32, head, scale)
    bare = model_throughput(model, 128)
    table = {}
    for seed, rows in agreement.items():
        floor = {m: np.mean([a[m] for a in rows["noise floor (reference again)"]]) for m in METRICS}
        table[seed] = {
            name: {m: float(np.mean([a[m] for a in faces]) / floor[m]) for m in METRICS}
            for name, faces in rows.items()
        }
    return {
        "precision": model.precision,
        "bare_images_per_s": bare,
        "train_faces": per_class * len(EMOTIONS),
        "epochs": epochs,
        "agreement": table,
        "ms_per_face": {k: v * 1000 for k, v in seconds.items()},
        "fe_per_face": {k: v * bare for k, v in seconds.items()},
        "amortised_pointing": amortised_pointing(model, fp32, head, scale),
    }


def format_result(r: dict) -> str:
    seeds = list(r["agreement"])
    lines = [
        f"LIME's weights estimated with fewer questions ({r['precision']}, "
        f"bare model {r['bare_images_per_s']:.0f} images/s); agreement with the 1000-sample "
        "reference as a share of its noise floor "
        f"(top-5 / rank), on 8 faces of each seed; amortised head trained on {r['train_faces']} faces, "
        f"{r['epochs']} epochs",
        f"{'estimator':<48}" + "".join(f"{'seed ' + s:>14}" for s in seeds) + f"{'ms/face':>9}{'fe':>7}",
    ]
    for name in r["agreement"][seeds[0]]:
        cells = "".join(
            f"{cell['top_k_overlap']:>8.2f} /{cell['rank_correlation']:>4.2f}"
            for cell in (r["agreement"][s][name] for s in seeds)
        )
        ms, fe = r["ms_per_face"].get(name), r["fe_per_face"].get(name)
        lines.append(f"{name:<48}{cells}" + (f"{ms:>9.1f}{fe:>7.1f}" if ms is not None else ""))
    lines.append(
        "amortised head, pointing (bench.truth's game): "
        + ", ".join(f"seed {s} {v:.1%}" for s, v in r["amortised_pointing"].items())
    )
    return "\n".join(lines)


@command
def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m bench.lime_alternatives",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--train-per-class", type=int, default=120, help="faces a class to train the head on")
    p.add_argument("--epochs", type=int, default=60)
    p.add_argument("--json", type=Path, default=None)
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    result = run(args.train_per_class, args.epochs)
    emit(format_result(result), result, args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
