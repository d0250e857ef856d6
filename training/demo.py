"""The offline demo model: a run of the training loop with the `demo` preset.

No labelled face data can be downloaded here, so `python -m app` with no model builds this one
on first run (about 4 minutes on 2 CPU cores) and reuses it afterwards. It is honest about what
it is: its config says it was trained on drawn faces, and the app says so on the page. The
cache holds a whole run folder (metrics, plots, mean Grad-CAM, model/, and the shortcut report
in report/), like any other run.

    python -m training.demo [--force] [--out DIR]
"""

from __future__ import annotations

import argparse
import fcntl
import logging
from dataclasses import replace
from pathlib import Path

from emotion.cli import command
from emotion.errors import EmotionLensError
from emotion.files import write_folder_atomically
from emotion.model import EmotionModel
from emotion.model_io import demo_model_dir, load_model
from emotion.runs import RunFolder
from training.report import ReportConfig, report_model
from training.train import TrainConfig, Trainer, demo_preset

log = logging.getLogger(__name__)


class DemoFolderError(EmotionLensError):
    """The demo model's folder cannot be created where it was asked for."""


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


# A light report (34 s measured on 2 busy cores, mostly the occlusion test and LIME on 2 faces a
# class): the page's "Model report" tab shows it.
DEMO_REPORT = ReportConfig(max_faces=16, lime_faces=2)


# What a first build usually takes on 2 CPU cores (`time python -m training.demo`: 247 s on 2 AVX2
# cores, 204 s of it training): drawing the faces, all the preset's steps, the final outputs and
# the light report. The page shows the time left from it.
EXPECTED_BUILD_S = 250.0


def cached_demo_model(folder: Path | None = None) -> EmotionModel | None:
    """The cached demo model, loaded, or None when none usable is cached (nothing is built)."""
    folder = Path(folder) if folder else demo_model_dir()
    return _load_usable(folder) if folder.exists() else None


def _train_and_report(recipe: TrainConfig) -> None:
    """Train, then write the shortcut report into the run's report/ (see training.report)."""
    Trainer(recipe).fit()
    cfg = replace(DEMO_REPORT, seed=recipe.seed, val_fraction=recipe.val_fraction)
    report_model(recipe.out, recipe.data, cfg=cfg)


def _usable(folder: Path) -> bool:
    return _load_usable(folder) is not None


def _load_usable(folder: Path) -> EmotionModel | None:
    try:
        return load_model(folder)
    except EmotionLensError as err:
        if folder.exists():
            log.warning("The cached demo model in %s cannot be used (%s); rebuilding it.", folder, err)
        return None


@command
def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m training.demo",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--out", type=Path, default=None, help="run folder (default: the user cache)")
    parser.add_argument("--force", action="store_true", help="retrain even if a usable model exists")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    run = RunFolder(ensure_demo_model(args.out, force=args.force))
    metrics = run.read_metrics() or {}
    print(
        f"Demo model in {run.model_dir}: validation accuracy {metrics.get('accuracy', float('nan')):.1%} "
        f"(trained for {metrics.get('train_seconds', float('nan')):.0f} s)"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
