"""`python -m bench.seeds [--seeds 0,1,2] [--precisions fp32,bf16] [--face-seeds 41,42,43]`

Do the demo recipe's maps hold, or only one seed's? The `demo` preset is trained once per
training seed and precision (bf16 only where the CPU runs it fast), and each model is scored by
`bench.truth`'s pointing game (Grad-CAM, LIME and the centred blob, explained in fp32) on unseen
faces of each face seed, with its accuracy on them. Rows go to WORKDIR/seed-rows.jsonl as they
are measured, so an interrupted run resumes where it stopped; the table is printed (and written
with `--out`) at the end.

The same recipe and seed train another model on another kind of CPU, so each row says which CPU
built its model, and builds are grouped by precision and CPU. Rows another machine measured
(copied into the workdir's rows file) are kept in the table.

Targets (the shipped demo model's): accuracy ≥ 99 %; Grad-CAM and LIME pointing ≥ 90 % on each
face seed and ≥ 25 points above the blob.
"""

from __future__ import annotations

import argparse
import json
import logging
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch

from bench.truth import pointing
from emotion.cli import command
from emotion.model import EmotionModel, resolve_precision
from emotion.storage.model_folder import load_model, shipped_demo_dir
from emotion.storage.runs import RunFolder
from training.demo import build_kind, cpu_model
from training.synthetic import make_dataset

log = logging.getLogger(__name__)

METHODS = ("gradcam", "lime")
POINTING_TARGET = 0.90
ABOVE_BLOB = 0.25
ACCURACY_TARGET = 0.99
ACCURACY_PER_CLASS = 200  # the accuracy target is judged on 1000 faces, not the pointing game's 150


def default_precisions() -> list[str]:
    """fp32, and bf16 where the CPU runs it natively (AMX or AVX512-BF16)."""
    fast = resolve_precision("auto", torch.device("cpu"))
    return ["fp32", "bf16"] if fast == "bf16" else ["fp32"]


def train_demo_recipe(out: Path, seed: int, precision: str) -> EmotionModel:
    """The `demo` preset with this seed and precision, trained into `out` unless a finished run is there."""
    from training.train import Trainer, demo_preset

    if not (RunFolder(out).model_dir / "config.json").is_file():
        Trainer(replace(demo_preset(), seed=seed, precision=precision, out=str(out))).fit()
    return load_model(str(out), precision="fp32")


def score(model: EmotionModel, face_seed: int, per_class: int) -> dict[str, Any]:
    """Pointing (per method and the blob) on `per_class` unseen faces of `face_seed`, and the
    accuracy on them and on ACCURACY_PER_CLASS faces a class of that seed."""
    faces = make_dataset(per_class, seed=face_seed, workers=1)
    table, right, total = pointing(model, faces, METHODS)
    return {
        "accuracy": right / total,
        "accuracy_large": large_accuracy(model, face_seed),
        "faces": total,
        "pointing": {name: table[name]["all"]["pointing"] for name in (*METHODS, "blob")},
        "per_class": {m: {k: v["pointing"] for k, v in table[m].items() if k != "all"} for m in METHODS},
    }


def large_accuracy(model: EmotionModel, face_seed: int) -> float:
    faces = make_dataset(ACCURACY_PER_CLASS, seed=face_seed, with_masks=False, workers=1)
    return float((model.predict(faces.images).argmax(1) == faces.labels).mean())


def accuracy_of(row: dict[str, Any]) -> float:
    """The accuracy on ACCURACY_PER_CLASS faces a class, or on the pointing game's faces for a
    row whose model is not on this machine to measure it (marked * in the table)."""
    return row["accuracy_large"] if "accuracy_large" in row else row["accuracy"]


def kind_of(row: dict[str, Any]) -> str:
    return build_kind(row["precision"], row["built_on"])


def meets_targets(row: dict[str, Any]) -> bool:
    p = row["pointing"]
    return accuracy_of(row) >= ACCURACY_TARGET and all(
        p[m] >= POINTING_TARGET and p[m] - p["blob"] >= ABOVE_BLOB for m in METHODS
    )


def measure(
    workdir: Path, seeds: list[int], precisions: list[str], face_seeds: list[int], per_class: int
) -> list[dict[str, Any]]:
    """One row per (training seed, precision, face seed) built on this CPU; rows already in the
    workdir are kept (another CPU's whatever they are: they cannot be measured again here)."""
    rows_path = workdir / "seed-rows.jsonl"
    rows = [json.loads(line) for line in rows_path.read_text().splitlines()] if rows_path.exists() else []
    here = cpu_model()
    done = {(r["seed"], r["precision"], r["face_seed"]) for r in rows if r["built_on"] == here}
    for precision in precisions:
        for seed in seeds:
            wanted = [f for f in face_seeds if (seed, precision, f) not in done]
            if not wanted:
                continue
            out = workdir / f"demo-seed{seed}-{precision}"
            model = train_demo_recipe(out, seed, precision)
            metrics = RunFolder(out).read_metrics() or {}
            for face_seed in wanted:
                start = time.perf_counter()
                row = {
                    "seed": seed, "precision": precision, "face_seed": face_seed, "built_on": here,
                    "val_accuracy": metrics.get("accuracy"), "train_seconds": metrics.get("train_seconds"),
                    **score(model, face_seed, per_class),
                    "seconds": round(time.perf_counter() - start, 1),
                }  # fmt: skip
                log.warning("%s", row_line(row))
                with rows_path.open("a") as f:
                    f.write(json.dumps(row) + "\n")
                rows.append(row)
    wanted_rows = {(s, p, f) for s in seeds for p in precisions for f in face_seeds}
    rows = [
        r for r in rows if r["built_on"] != here or (r["seed"], r["precision"], r["face_seed"]) in wanted_rows
    ]
    for row in rows:  # rows measured before the accuracy on ACCURACY_PER_CLASS faces was added
        if "accuracy_large" not in row and row["built_on"] == here:
            model = load_model(str(workdir / f"demo-seed{row['seed']}-{row['precision']}"), precision="fp32")
            row["accuracy_large"] = large_accuracy(model, row["face_seed"])
    return rows


def row_line(row: dict[str, Any]) -> str:
    p = row["pointing"]
    accuracy = f"{accuracy_of(row):.1%}{'' if 'accuracy_large' in row else '*'}"
    return (
        f"{kind_of(row):<28}{row['seed']:>5}{row['face_seed']:>6}{accuracy:>10}"
        f"{p['gradcam']:>10.1%}{p['lime']:>8.1%}{p['blob']:>8.1%}"
        f"{min(row['per_class']['gradcam'].values()):>11.0%}{min(row['per_class']['lime'].values()):>9.0%}"
        f"{'  yes' if meets_targets(row) else '  NO':>7}"
    )


def seeds_text(rows: list[dict[str, Any]], per_class: int) -> str:
    head = (
        f"{'built':<28}{'seed':>5}{'faces':>6}{'accuracy':>10}{'Grad-CAM':>10}{'LIME':>8}{'blob':>8}"
        f"{'worst GC':>11}{'worst L':>9}{'targets':>7}"
    )
    lines = [head, "-" * len(head), *(row_line(r) for r in sorted(rows, key=_order))]
    for kind, row in spread(rows).items():
        lines.append(
            f"{kind}: {len(row['meet'])} of {len(row['of'])} training seeds meet every target on every "
            f"face seed ({', '.join(map(str, row['meet'])) or 'none'})"
        )
    lines.append(
        f"Accuracy on {ACCURACY_PER_CLASS} unseen faces a class per face seed (* on the pointing game's "
        f"{per_class} a class: that model was built on another machine); pointing on {per_class} a class, "
        "over the correctly classified ones; 'worst' is the lowest class. Targets: accuracy >= 99 %, "
        "pointing >= 90 % and >= 25 points above the blob, for Grad-CAM and LIME."
    )
    return "\n".join(lines)


def spread(rows: list[dict[str, Any]]) -> dict[str, dict[str, list[int]]]:
    """{"fp32 on CPU": {"meet": training seeds meeting every target on every face seed, "of": all}},
    one entry per precision and CPU that built the models."""
    out = {}
    for kind in sorted({kind_of(r) for r in rows}):
        mine = [r for r in rows if kind_of(r) == kind]
        seeds = sorted({r["seed"] for r in mine})
        meet = [s for s in seeds if all(meets_targets(r) for r in mine if r["seed"] == s)]
        out[kind] = {"meet": meet, "of": seeds}
    return out


def score_shipped(face_seeds: list[int], per_class: int) -> list[dict[str, Any]]:
    """The shipped demo model's rows (its build's seed and precision, as its metrics record them)."""
    run = RunFolder(shipped_demo_dir())
    built = (run.read_metrics() or {}).get("built_by", {})
    model = load_model(str(run.root), precision="fp32")
    return [
        {
            "seed": built.get("seed"),
            "precision": "copy",
            "face_seed": f,
            "built_on": built.get("cpu", "?"),
            **score(model, f, per_class),
        }
        for f in face_seeds
    ]


def shipped_text(rows: list[dict[str, Any]]) -> str:
    title = "The shipped copy ('copy': its float16 weights, explained in fp32, as the tests load it):"
    return "\n".join([title, *(row_line(r) for r in rows)])


def _order(row: dict[str, Any]) -> tuple:
    return row["precision"], row["built_on"], row["seed"], row["face_seed"]


@command
def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m bench.seeds",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--seeds", default="0,1,2", help="training seeds")
    p.add_argument(
        "--precisions",
        default=None,
        help="training precisions (default: fp32, and bf16 where the CPU runs it fast)",
    )
    p.add_argument("--face-seeds", default="41,42,43", help="seeds of the unseen faces (not a training seed)")
    p.add_argument("--per-class", type=int, default=30, help="unseen faces a class per face seed")
    p.add_argument("--workdir", type=Path, required=True, help="where the models and rows go (resumable)")
    p.add_argument("--out", type=Path, default=None, help="also write the table here (and .json beside it)")
    p.add_argument(
        "--shipped",
        action="store_true",
        help="also score the shipped demo model (float16 weights, as served)",
    )
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    seeds = [int(s) for s in args.seeds.split(",")]
    face_seeds = [int(s) for s in args.face_seeds.split(",")]
    if clash := sorted(set(seeds) & set(face_seeds)):
        p.error(f"face seeds {clash} are also training seeds: those faces were trained on")
    precisions = args.precisions.split(",") if args.precisions else default_precisions()
    args.workdir.mkdir(parents=True, exist_ok=True)
    rows = measure(args.workdir, seeds, precisions, face_seeds, args.per_class)
    text = seeds_text(rows, args.per_class)
    shipped = score_shipped(face_seeds, args.per_class) if args.shipped else []
    if shipped:
        text += "\n\n" + shipped_text(shipped)
    print(text)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text + "\n")
        summary = {
            "precisions": spread(rows), "target": POINTING_TARGET, "above_blob": ABOVE_BLOB,
            "accuracy_target": ACCURACY_TARGET, "face_seeds": len(face_seeds), "per_class": args.per_class,
            "table": str(args.out), "rows": rows, "shipped": shipped,
        }  # fmt: skip
        args.out.with_suffix(".json").write_text(json.dumps(summary, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
