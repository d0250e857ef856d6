"""The offline demo model: a run of the training loop with the `demo` preset.

No labelled face data can be downloaded here, so the project ships a model trained on drawn
faces inside the package (`emotion/demo_model/`, as OpenCV ships its Haar cascade): `python -m
app` with no model serves it at once. It is honest about what it is: its config says it was
trained on drawn faces, and the app says so on the page. The folder is a whole run folder
(metrics, plots, mean Grad-CAM, model/, and the shortcut report in report/), like any other run.

    python -m training.demo [--force] [--out DIR] [--seed N] [--ship]

builds your own into the user cache (or --out), about 4 minutes on 2 CPU cores; a model built
there is served instead of the shipped one. --ship then writes it, weights in half precision,
as the package's copy: that is how the shipped model is made.
"""

from __future__ import annotations

import argparse
import fcntl
import json
import logging
import platform
import shutil
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_file, save_file

from emotion.cli import command, program_name
from emotion.errors import EmotionLensError
from emotion.model import EmotionModel, cpu_info, resolve_precision
from emotion.storage.files import write_folder_atomically
from emotion.storage.model_folder import (
    WEIGHTS_NAME,
    demo_model_dir,
    demo_run_folders,
    load_model,
    shipped_demo_dir,
)
from emotion.storage.runs import PLOTS, RunFolder
from training.shortcuts import ReportConfig, report_model
from training.train import TrainConfig, Trainer, demo_preset

log = logging.getLogger(__name__)


class DemoFolderError(EmotionLensError):
    """The demo model's folder cannot be created where it was asked for."""


class ShipError(EmotionLensError):
    """The demo model cannot be shipped as it is."""


# Half-precision weights must keep the model's answers: every probability within this of the
# full-precision model's, on faces it never saw.
SHIP_TOLERANCE = 0.01
SHIP_CHECK_SEED = 77  # faces for that check: not a training seed of the demo recipe


def ensure_demo_model(
    folder: Path | None = None, *, force: bool = False, config: TrainConfig | None = None
) -> Path:
    """The demo run folder, trained first if it is missing (one process trains, others wait).

    `config` replaces the demo preset (tests bound it by steps instead of the clock)."""
    folder = Path(folder) if folder else demo_model_dir()
    try:
        folder.parent.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise DemoFolderError(
            f"Cannot create the demo model's folder {folder} ({err.strerror}): give --out a folder "
            "you can write to, or set EMOTION_LENS_CACHE."
        ) from err
    with open(folder.parent / f".{folder.name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # a second `python -m app` waits instead of training twice
        if not force and _usable(folder):
            log.info("Using the demo model in %s", folder)
            return folder
        log.warning(
            "Training the synthetic-face demo model into %s (about 4 minutes on 2 CPU cores; "
            "done once, then reused).",
            folder,
        )
        recipe = config or demo_preset()
        # Trained in a temp folder swapped into place at the end: a crash leaves no half model.
        write_folder_atomically(folder, lambda tmp: _train_and_report(replace(recipe, out=str(tmp))))
    return folder


# A light report (mostly the occlusion test, and LIME on 2 faces a class, so it adds well under a
# minute to a build): the page's "Model report" tab shows it.
DEMO_REPORT = ReportConfig(max_faces=16, lime_faces=2)


# What a first build usually takes on 2 CPU cores (`time python -m training.demo`; figures in
# docs/findings.md): drawing the faces, all the preset's steps, the final outputs and the light
# report. The page shows the time left from it.
EXPECTED_BUILD_S = 250.0


def ready_demo_model(*, own: bool = False) -> EmotionModel | None:
    """The demo model to serve, loaded: the one built into the cache if it is usable, else
    (unless `own`) the shipped one; None when neither is (nothing is built)."""
    for folder in demo_run_folders(own=own):
        if folder.exists() and (model := _load_usable(folder)) is not None:
            return model
    return None


def _train_and_report(recipe: TrainConfig) -> None:
    """Train, then write the shortcut report into the run's report/ (see training.shortcuts), and
    what rebuilds the model into its metrics.json."""
    Trainer(recipe).fit()
    cfg = replace(DEMO_REPORT, seed=recipe.seed, val_fraction=recipe.val_fraction)
    report_model(recipe.out, recipe.data, cfg=cfg)
    run = RunFolder(recipe.out)
    run.metrics.write_text(json.dumps({**run.read_metrics(), "built_by": build_record(recipe)}, indent=2))


def build_record(recipe: TrainConfig) -> dict[str, Any]:
    """The command, seed, precision and library versions that built a demo model."""
    import cv2
    import timm

    precision = resolve_precision(recipe.precision, torch.device("cpu"))
    return {
        "command": f"python -m training.demo --seed {recipe.seed} --precision {precision}",
        "preset": "demo",
        "seed": recipe.seed,
        "precision": precision,
        "versions": {
            "python": platform.python_version(),
            "torch": torch.__version__,
            "timm": timm.__version__,
            "numpy": np.__version__,
            "opencv": cv2.__version__,
        },  # fmt: skip
        "cpu": cpu_model(),
    }


def cpu_model() -> str:
    """The CPU's model name, with "(AMX)" where it has AMX: the same recipe and seed train a
    different model on another kind of CPU (its kernels sum in another order), so a build is
    known by its CPU."""
    info = cpu_info()
    name = next((line.split(":", 1)[1] for line in info.splitlines() if line.startswith("model name")), "")
    name = " ".join(name.replace("(R)", "").replace("(TM)", "").split())
    name = name or platform.processor() or platform.machine()
    return f"{name} (AMX)" if "amx_bf16" in info else name


def build_kind(precision: str, cpu: str) -> str:
    """How `bench.seeds` groups builds: by precision and the CPU they were trained on."""
    return f"{precision} on {cpu}"


def ship(run_folder: Path, dest: Path | None = None, *, seeds_table: Path | None = None) -> dict[str, Any]:
    """Write the run's demo model as the package's copy: model/ with half-precision weights,
    config, metrics, plots and the shortcut report. Refused when half precision moves any
    probability by more than SHIP_TOLERANCE on unseen faces. `seeds_table` (the JSON of
    `python -m bench.seeds --out`) adds how the recipe holds across training seeds to the
    metrics, for the model report. Returns what was checked."""
    run, dest = RunFolder(run_folder), Path(dest) if dest else shipped_demo_dir()
    built = (run.read_metrics() or {}).get("built_by", {})
    spread = recipe_seeds(seeds_table, built) if seeds_table else None
    full = load_model(run.model_dir, precision="fp32")

    def fill(tmp: Path) -> dict[str, Any]:
        out = RunFolder(tmp)
        out.model_dir.mkdir()
        shutil.copy2(run.model_dir / "config.json", out.model_dir / "config.json")
        state = load_file(run.model_dir / WEIGHTS_NAME)
        half = {k: v.half() if v.is_floating_point() else v for k, v in state.items()}
        save_file(half, out.model_dir / WEIGHTS_NAME, metadata={"format": "pt"})
        check = half_precision_check(full, load_model(out.model_dir, precision="fp32"))
        if check["max_probability_change"] > SHIP_TOLERANCE:
            raise ShipError(
                f"Half-precision weights move a probability by {check['max_probability_change']:.3f} "
                f"(more than {SHIP_TOLERANCE}) on unseen faces: ship this model in full precision "
                "or train it again."
            )
        for name in (run.config.name, *PLOTS):
            if (run.root / name).is_file():
                shutil.copy2(run.root / name, tmp / name)
        if run.report_dir.is_dir():
            shutil.copytree(run.report_dir, out.report_dir)
        metrics = {**(run.read_metrics() or {}), "shipped": check}
        if spread:
            metrics["recipe_seeds"] = spread
        out.metrics.write_text(json.dumps(metrics, indent=2) + "\n")
        readable_by_all(tmp)  # package data: whoever installs it reads it, not only its builder
        return check

    return write_folder_atomically(dest, fill)


def readable_by_all(folder: Path) -> None:
    folder.chmod(0o755)
    for path in folder.rglob("*"):
        path.chmod(0o755 if path.is_dir() else 0o644)


def recipe_seeds(table: Path, built: dict[str, Any]) -> dict[str, Any]:
    """The summary of a `bench.seeds` JSON, with where this model (its seed and precision) stands."""
    summary = json.loads(Path(table).read_text())
    seed, precision = built.get("seed"), built.get("precision")
    kind = build_kind(precision, built.get("cpu", ""))
    meets = seed in summary["precisions"].get(kind, {}).get("meet", [])
    keep = ("precisions", "target", "above_blob", "accuracy_target", "face_seeds", "per_class", "table")
    return {**{k: summary[k] for k in keep}, "seed": seed, "precision": kind, "this_meets": meets}


def half_precision_check(full: EmotionModel, half: EmotionModel, per_class: int = 20) -> dict[str, Any]:
    """How far the half-precision weights move the model's answers on unseen drawn faces."""
    from training.synthetic import make_dataset

    faces = make_dataset(per_class, seed=SHIP_CHECK_SEED, with_masks=False, workers=1).images
    a, b = full.predict(faces), half.predict(faces)
    # NaN (an inf logit after halving) counts as the largest change, never as none.
    change = np.nan_to_num(np.abs(a - b), nan=np.inf).max()
    return {
        "weights": "float16",
        "max_probability_change": round(float(change), 5),
        "same_prediction": float((a.argmax(1) == b.argmax(1)).mean()),
        "faces": len(faces),
        "face_seed": SHIP_CHECK_SEED,
    }


def _usable(folder: Path) -> bool:
    return _load_usable(folder) is not None


def _load_usable(folder: Path) -> EmotionModel | None:
    try:
        return load_model(folder)
    except EmotionLensError as err:
        if folder.exists():
            log.warning("The demo model in %s cannot be used (%s).", folder, err)
        return None


@command
def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog=program_name("training.demo"),
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--out", type=Path, default=None, help="run folder (default: the user cache)")
    parser.add_argument("--force", action="store_true", help="retrain even if a usable model exists")
    parser.add_argument("--seed", type=int, default=None, help="training seed (default: the preset's)")
    parser.add_argument(
        "--precision",
        choices=("fp32", "bf16"),
        default=None,
        help="training precision (default: the preset's)",
    )
    parser.add_argument(
        "--ship",
        action="store_true",
        help=f"then write it as the package's shipped copy ({shipped_demo_dir()})",
    )
    parser.add_argument(
        "--seeds-table", type=Path, default=None,
        help="with --ship: the JSON of `python -m bench.seeds --out` (how the recipe holds across seeds)",
    )  # fmt: skip
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    recipe = demo_preset()
    recipe = replace(recipe, seed=recipe.seed if args.seed is None else args.seed)
    recipe = replace(recipe, precision=args.precision or recipe.precision)
    run = RunFolder(ensure_demo_model(args.out, force=args.force, config=recipe))
    metrics = run.read_metrics() or {}
    print(
        f"Demo model in {run.model_dir}: validation accuracy {metrics.get('accuracy', float('nan')):.1%} "
        f"(trained for {metrics.get('train_seconds', float('nan')):.0f} s)"
    )
    if args.ship:
        check = ship(run.root, seeds_table=args.seeds_table)
        print(
            f"Shipped to {shipped_demo_dir()}: half-precision weights move probabilities by at most "
            f"{check['max_probability_change']:.4f} on {check['faces']} unseen faces."
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
