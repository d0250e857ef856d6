"""`python -m training.evaluate --model SRC --data SRC [--split val] [--out DIR]`

The same metrics as a training run (accuracy, macro-F1, per-class precision/recall/F1, confusion
matrix) for any model (a model folder, a run folder or a Hub id) on any dataset; printed, and
saved under the run folder's names (emotion.storage.runs): metrics.json, confusion_matrix.png and
mean_gradcam.png (what each emotion looks at on this data).
"""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path
from typing import Any

import numpy as np

from emotion.cli import command, program_name
from emotion.errors import EmotionLensError
from emotion.model import EmotionModel
from emotion.storage.files import write_file_atomically
from emotion.storage.model_folder import load_model
from emotion.storage.runs import CONFUSION_MATRIX, MEAN_GRADCAM, METRICS
from training.data import load_source
from training.metrics import compute_metrics, format_metrics, save_confusion_matrix

log = logging.getLogger(__name__)


class LabelMismatchError(EmotionLensError, ValueError):
    """The data has an emotion the model has no class for."""


def evaluate_model(
    model: EmotionModel, images: np.ndarray, labels: np.ndarray, label_names: tuple[str, ...]
) -> dict[str, Any]:
    """Metrics of `model` on faces whose labels index `label_names`.

    The model's own label order may differ from the data's: predictions are mapped by name.
    """
    missing = set(label_names) - set(model.labels)
    if missing:
        raise LabelMismatchError(
            f"The model has no class for {sorted(missing)}; it knows {list(model.labels)}. "
            "Evaluate it on data with those emotions only."
        )
    to_data = np.array([label_names.index(name) if name in label_names else -1 for name in model.labels])
    pred = to_data[model.predict(images).argmax(1)]
    return compute_metrics(labels, pred, label_names)


@command
def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog=program_name("training.evaluate"),
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--model", required=True, help="model folder, run folder or Hub id")
    parser.add_argument(
        "--data", required=True, help="ImageFolder dir, FER2013 CSV, HF dataset or synthetic:N"
    )
    parser.add_argument(
        "--split",
        default=None,
        help="train or val: the split a training run with --seed makes; another name: the source's "
        "own split (test); default: every face (synthetic:N: N a class drawn with --seed)",
    )
    parser.add_argument(
        "--seed",
        type=int,
        default=1,
        help="the split's seed, and the drawing seed of synthetic:N (default 1: training's default "
        "is 0, so a synthetic:N run is never evaluated on its own training faces)",
    )
    parser.add_argument(
        "--out",
        type=Path,
        default=None,
        help="folder for metrics.json, confusion_matrix.png, mean_gradcam.png",
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    model = load_model(args.model)
    data = load_source(args.data, args.split, seed=args.seed)
    metrics = evaluate_model(model, data.images, data.labels, tuple(data.label_names))
    metrics.update(model=args.model, data=args.data, split=args.split)
    print(format_metrics(metrics))
    if args.out:
        save_evaluation(model, data, metrics, args.out)
        print(f"saved to {args.out}")
    return 0


def save_evaluation(model: EmotionModel, data, metrics: dict[str, Any], out: Path) -> None:
    """metrics.json, confusion_matrix.png and mean_gradcam.png in `out`, named as in a run folder."""
    from emotion.explainers.mean_maps import save_mean_gradcam

    out.mkdir(parents=True, exist_ok=True)
    # The data's label order may differ from the model's: the figure indexes the model's labels.
    to_model = np.array([model.labels.index(name) for name in data.label_names])
    metrics["mean_gradcam_faces"] = save_mean_gradcam(
        model, data.images, to_model[data.labels], out / MEAN_GRADCAM
    )
    write_file_atomically(out / METRICS, (json.dumps(metrics, indent=2) + "\n").encode())
    save_confusion_matrix(metrics, out / CONFUSION_MATRIX)


if __name__ == "__main__":
    raise SystemExit(main())
