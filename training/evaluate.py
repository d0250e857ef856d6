"""`python -m training.evaluate --model SRC --data SRC [--split val] [--out DIR]`

The same metrics as a training run (accuracy, macro-F1, per-class precision/recall/F1, confusion
matrix) for any model on any dataset; printed, and saved as metrics.json + confusion_matrix.png.
"""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path
from typing import Any

import numpy as np

from emotion.model import EmotionModel, load_model
from training.metrics import compute_metrics, format_metrics, save_confusion_matrix

log = logging.getLogger(__name__)


def evaluate_model(
    model: EmotionModel, images: np.ndarray, labels: np.ndarray, label_names: tuple[str, ...]
) -> dict[str, Any]:
    """Metrics of `model` on faces whose labels index `label_names`.

    The model's own label order may differ from the data's: predictions are mapped by name.
    """
    missing = set(label_names) - set(model.labels)
    if missing:
        raise ValueError(f"The model has no class for {sorted(missing)}; it knows {list(model.labels)}.")
    to_data = np.array([label_names.index(name) if name in label_names else -1 for name in model.labels])
    pred = to_data[model.predict(images).argmax(1)]
    return compute_metrics(labels, pred, label_names)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m training.evaluate",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--model", required=True, help="model folder or Hub id")
    parser.add_argument(
        "--data", required=True, help="ImageFolder dir, FER2013 CSV, HF dataset or synthetic:N"
    )
    parser.add_argument("--split", default=None, help="split of the source to use (train/val/test)")
    parser.add_argument(
        "--out", type=Path, default=None, help="folder for metrics.json and confusion_matrix.png"
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    data = _load(args.data, args.split)
    metrics = evaluate_model(load_model(args.model), data.images, data.labels, tuple(data.label_names))
    metrics.update(model=args.model, data=args.data, split=args.split)
    print(format_metrics(metrics))
    if args.out:
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
        save_confusion_matrix(metrics, args.out / "confusion_matrix.png")
        print(f"saved to {args.out}")
    return 0


def _load(source: str, split: str | None):
    if source.startswith("synthetic:"):
        from training.synthetic import synthetic_face_data

        # seed 1: never the faces a synthetic:N training run (seed 0) saw
        return synthetic_face_data(int(source.split(":")[1]), seed=1)
    from training.data import load_faces

    return load_faces(source, split=split)


if __name__ == "__main__":
    raise SystemExit(main())
