"""The model card (README.md) of a pushed model, built from a template plus the run's files.

Metadata goes through huggingface_hub's ModelCardData / EvalResult, so the YAML header is the one
the Hub validates (library_name, pipeline_tag, model-index …), and `ModelCard.load` parses it back.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import yaml
from huggingface_hub import EvalResult, ModelCard, ModelCardData

from emotion.files import write_file_atomically

if TYPE_CHECKING:  # torch is heavy: a push that fails on its token should fail in a second
    from emotion.model import EmotionModel

log = logging.getLogger(__name__)

TEMPLATE = Path(__file__).parent / "templates" / "modelcard_template.md"
CONFUSION_MATRIX = "confusion_matrix.png"
CURVES = "curves.png"
MEAN_GRADCAM = "mean_gradcam.png"
PLOTS = (CONFUSION_MATRIX, CURVES)
MAX_FACES_PER_CLASS = 32  # enough for a stable mean map, cheap on 2 CPU cores


@dataclass(frozen=True)
class RunFiles:
    """What a run folder (or a bare model folder) offers to the card."""

    model_dir: Path  # config.json + model.safetensors
    run_dir: Path | None = None  # None when a bare model folder was given
    metrics: dict[str, Any] | None = None  # metrics.json
    train_config: dict[str, Any] | None = None  # config.yaml

    def plot(self, name: str) -> Path | None:
        path = self.run_dir / name if self.run_dir else None
        return path if path is not None and path.is_file() else None


@dataclass(frozen=True)
class CardOptions:
    """What the publisher may add to the card's metadata."""

    repo_id: str
    license: str = "apache-2.0"
    datasets: tuple[str, ...] = ()  # Hub dataset ids, when the training data is on the Hub


def read_run(folder: Path) -> RunFiles:
    """A run folder has model/ plus metrics.json, config.yaml and plots; a model folder has none."""
    from hub.errors import RunFolderError

    folder = Path(folder)
    if (folder / "model" / "config.json").is_file():
        model_dir, run_dir = folder / "model", folder
    elif (folder / "config.json").is_file():
        model_dir, run_dir = folder, None
        # A model folder inside a run folder (runs/x/model): the run's files are one level up.
        if (folder.parent / "metrics.json").is_file():
            run_dir = folder.parent
    else:
        raise RunFolderError(
            f"{folder} is neither a run folder (model/ + metrics.json) nor a model folder "
            "(config.json + model.safetensors). Pass the folder `python -m training.train --out` wrote."
        )
    metrics = train_config = None
    if run_dir is not None and (run_dir / "metrics.json").is_file():
        metrics = json.loads((run_dir / "metrics.json").read_text())
    if run_dir is not None and (run_dir / "config.yaml").is_file():
        train_config = yaml.safe_load((run_dir / "config.yaml").read_text()) or {}
    return RunFiles(model_dir=model_dir, run_dir=run_dir, metrics=metrics, train_config=train_config)


def data_source(run: RunFiles) -> str | None:
    """The `--data` the run was trained on, from config.yaml or metrics.json."""
    if run.train_config and run.train_config.get("data"):
        return str(run.train_config["data"])
    if run.metrics and run.metrics.get("data"):
        return str(run.metrics["data"])
    return None


def is_synthetic(run: RunFiles, model: EmotionModel) -> bool:
    source = data_source(run) or str(model.info.get("data", ""))
    return source.startswith("synthetic:") or model.is_demo


def card_data(run: RunFiles, model: EmotionModel, options: CardOptions) -> ModelCardData:
    """The YAML metadata: timm library, image-classification, metrics as a model-index."""
    source = data_source(run)
    tags = ["image-classification", "timm", "emotion-recognition", "facial-expression", "emotion-lens"]
    if is_synthetic(run, model):
        tags.append("synthetic-data")
    datasets = list(options.datasets)
    if not datasets and source and source.startswith("hf:"):
        datasets = [source[len("hf:") :]]
    eval_results = None
    if run.metrics and "accuracy" in run.metrics:
        dataset_name = source or "validation set"
        common = {
            "task_type": "image-classification",
            "dataset_type": datasets[0] if datasets else (source or "custom").split(":")[0],
            "dataset_name": dataset_name,
            "dataset_split": "validation",
        }
        eval_results = [
            EvalResult(metric_type="accuracy", metric_value=float(run.metrics["accuracy"]), **common)
        ]
        if "macro_f1" in run.metrics:
            eval_results.append(
                EvalResult(
                    metric_type="f1",
                    metric_name="Macro F1",
                    metric_value=float(run.metrics["macro_f1"]),
                    metric_args={"average": "macro"},
                    **common,
                )
            )
    return ModelCardData(
        library_name="timm",
        pipeline_tag="image-classification",
        license=options.license,
        tags=tags,
        datasets=datasets or None,
        metrics=["accuracy", "f1"] if eval_results else None,
        model_name=options.repo_id.split("/")[-1],
        eval_results=eval_results,
    )


def metrics_table(metrics: dict[str, Any]) -> str:
    """Per-class precision / recall / F1 / support as a Markdown table."""
    rows = ["| emotion | precision | recall | F1 | support |", "|---|---:|---:|---:|---:|"]
    for label, m in metrics.get("per_class", {}).items():
        rows.append(
            f"| {label} | {m['precision']:.3f} | {m['recall']:.3f} | {m['f1']:.3f} | {m['support']} |"
        )
    return "\n".join(rows)


def validation_faces(run: RunFiles) -> tuple[np.ndarray, np.ndarray] | None:
    """(faces N×H×W×3 uint8, labels N) of the run's validation split, or None when unknown.

    Runs do not save their validation images; a synthetic run is regenerated exactly as
    training.train drew it (same seed, the faces after the training ones).
    """
    source = data_source(run)
    if not source or not source.startswith("synthetic:"):
        return None
    from training.synthetic import synthetic_split  # lazy: only synthetic runs need the generator

    cfg = run.train_config or {}
    val = synthetic_split(
        source, "val", seed=int(cfg.get("seed", 0)), val_fraction=float(cfg.get("val_fraction", 0.15))
    )
    return np.asarray(val.images), np.asarray(val.labels)


def save_mean_gradcam(
    model: EmotionModel,
    faces: np.ndarray,
    labels: np.ndarray,
    path: Path,
    *,
    max_per_class: int = MAX_FACES_PER_CLASS,
) -> int:
    """One PNG at `path`: per class, its Grad-CAM map averaged over its faces, over their mean
    face. Returns how many faces it used."""
    import cv2

    from emotion.explainers.gradcam import gradcams
    from emotion.explainers.render import overlay

    tiles, used = [], 0
    for index, label in enumerate(model.labels):
        own = faces[labels == index][:max_per_class]
        if len(own) == 0:
            tiles.append(np.full((200, 200, 3), 255, np.uint8))
            continue
        used += len(own)
        mean_map = gradcams(model, own)[:, index].mean(axis=0)  # one batched forward
        mean_face = np.mean(own.astype(np.float32), axis=0).round().astype(np.uint8)
        peak = float(mean_map.max())
        tile = overlay(mean_face, mean_map / peak if peak > 0 else mean_map)
        tiles.append(_caption(tile, f"{label} (n={len(own)})", cv2))
    grid = np.concatenate(tiles, axis=1)
    _write_png(path, grid)
    return used


def _caption(tile: np.ndarray, text: str, cv2) -> np.ndarray:
    band = np.full((28, tile.shape[1], 3), 255, np.uint8)
    cv2.putText(band, text, (6, 20), cv2.FONT_HERSHEY_SIMPLEX, 0.55, (0, 0, 0), 1, cv2.LINE_AA)
    return np.concatenate([band, tile], axis=0)


def _write_png(path: Path, rgb: np.ndarray) -> None:
    import io

    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(rgb).save(buffer, format="PNG")
    write_file_atomically(path, buffer.getvalue())


def build_model_card(
    run: RunFiles,
    model: EmotionModel,
    options: CardOptions,
    *,
    mean_gradcam_count: int | None,
) -> ModelCard:
    """The card, rendered from the template; image links are relative to the repo root.
    `mean_gradcam_count`: faces behind the mean Grad-CAM figure; None when there is none."""
    metrics = run.metrics or {}
    source = data_source(run)
    synthetic = is_synthetic(run, model)
    val_counts = metrics.get("val_counts") or {}
    if synthetic:
        description = f"synthetic drawn faces ({source})"
    else:
        description = f"`{source}`" if source else "an unrecorded dataset"
    if mean_gradcam_count is None:
        note = (
            "Not shown: the run did not save its validation faces and its data source "
            f"({source or 'unknown'}) cannot be regenerated here. Run `python -m training.evaluate` "
            "and look at the maps in the app instead."
        )
    else:
        note = ""
    return ModelCard.from_template(
        card_data(run, model, options),
        template_path=str(TEMPLATE),
        model_name=options.repo_id.split("/")[-1],
        repo_id=options.repo_id,
        summary=(
            "A facial-emotion classifier for Emotion Lens: a timm "
            f"{model.architecture} over {model.preprocessing.input_size}×{model.preprocessing.input_size} "
            "face crops, published with per-emotion Grad-CAM maps so you can see what it looks at."
        ),
        labels=list(model.labels),
        input_size=model.preprocessing.input_size,
        mean=list(model.preprocessing.mean),
        std=list(model.preprocessing.std),
        architecture=model.architecture,
        model_args=json.dumps(model.model_args),
        cam_note="layer4 dilated, 7×7 Grad-CAM maps at 100×100"
        if model.model_args.get("output_stride") == 16
        else "",
        train_config=yaml.safe_dump(run.train_config, sort_keys=False).strip() if run.train_config else "",
        data_description=description,
        data_source=source,
        synthetic=synthetic,
        metrics_table=metrics_table(metrics) if metrics.get("per_class") else "",
        accuracy=f"{metrics['accuracy']:.3f}" if "accuracy" in metrics else "n/a",
        macro_f1=f"{metrics['macro_f1']:.3f}" if "macro_f1" in metrics else "n/a",
        val_total=sum(val_counts.values()) if val_counts else "?",
        confusion_matrix=CONFUSION_MATRIX if run.plot(CONFUSION_MATRIX) else None,
        curves=CURVES if run.plot(CURVES) else None,
        mean_gradcam=MEAN_GRADCAM if mean_gradcam_count is not None else None,
        mean_gradcam_count=mean_gradcam_count or 0,
        mean_gradcam_cap=MAX_FACES_PER_CLASS,
        mean_gradcam_note=note,
    )
