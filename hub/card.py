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

import yaml
from huggingface_hub import EvalResult, ModelCard, ModelCardData

from emotion.storage.runs import CONFUSION_MATRIX, CURVES, MEAN_GRADCAM, REPORT, RunFolder

if TYPE_CHECKING:  # torch is heavy: a push that fails on its token should fail in a second
    from emotion.model import EmotionModel

log = logging.getLogger(__name__)

TEMPLATE = Path(__file__).parent / "templates" / "modelcard_template.md"


@dataclass(frozen=True)
class RunFiles:
    """What a run folder (or a bare model folder) offers to the card."""

    model_dir: Path  # config.json + model.safetensors
    run: RunFolder | None = None  # None when a bare model folder was given
    metrics: dict[str, Any] | None = None  # metrics.json
    train_config: dict[str, Any] | None = None  # config.yaml

    def plot(self, name: str) -> Path | None:
        return self.run.plot(name) if self.run else None

    def plots(self) -> dict[str, Path]:
        """{published name: path}: the run's plots and its shortcut report's pictures."""
        return self.run.plots() | self.run.report_plots() if self.run else {}

    def report(self) -> dict[str, Any] | None:
        """`training.shortcuts`'s report.json, if the run has one."""
        return self.run.read_report() if self.run else None


@dataclass(frozen=True)
class CardOptions:
    """What the publisher may add to the card's metadata."""

    repo_id: str
    license: str = "apache-2.0"
    datasets: tuple[str, ...] = ()  # Hub dataset ids, when the training data is on the Hub


def read_run(folder: Path) -> RunFiles:
    """A run folder (emotion.storage.runs) has model/, metrics, config and plots; a model folder has none."""
    from emotion.errors import RunFolderError

    folder = Path(folder)
    run = RunFolder.holding(folder)
    if run is not None:
        return RunFiles(run.model_dir, run, run.read_metrics(), run.read_config())
    if (folder / "config.json").is_file():
        return RunFiles(model_dir=folder)
    raise RunFolderError(
        f"{folder} is neither a run folder (model/ + metrics.json) nor a model folder "
        "(config.json + model.safetensors). Pass the folder `python -m training.train --out` wrote."
    )


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


def shortcut_check(report: dict[str, Any]) -> dict[str, Any]:
    """What the card says of `training.shortcuts`'s findings: the summary, a table, the pictures."""
    from emotion.evaluation.shortcut_view import shortcut_table

    files = report.get("files", {})
    return {
        "summary": report["summary"],
        "flagged": report["flagged"],
        "data": report["data"],
        "table": shortcut_table(report),
        "mean_maps": f"{REPORT}_{files['mean_maps']}" if "mean_maps" in files else None,
        "occlusion": f"{REPORT}_{files['occlusion']}" if "occlusion" in files else None,
    }


def explanation_notes(model: EmotionModel) -> list[tuple[str, str]]:
    """(title, what its maps read for this model) of every registered explanation method; the
    ones that run unless others are named say so in their title."""
    from emotion.explainers import registry  # lazy: torch; a push that fails on its token fails fast

    defaults = set(registry.default_methods())
    return [
        (registry.title_of(name) + (" (default)" if name in defaults else ""), note)
        for name, note in registry.explainer_notes(model).items()
    ]


def build_model_card(
    run: RunFiles,
    model: EmotionModel,
    options: CardOptions,
) -> ModelCard:
    """The card, rendered from the template; image links are relative to the repo root."""
    metrics = run.metrics or {}
    source = data_source(run)
    synthetic = is_synthetic(run, model)
    val_counts = metrics.get("val_counts") or {}
    if synthetic:
        description = f"synthetic drawn faces ({source})"
    else:
        description = f"`{source}`" if source else "an unrecorded dataset"
    mean_gradcam = run.plot(MEAN_GRADCAM)
    note = (
        ""
        if mean_gradcam
        else (
            f"Not shown: no `{MEAN_GRADCAM}` beside the model. `python -m training.train` writes it "
            "into the run folder (push the run folder, not only its model/), and "
            "`python -m training.evaluate --model M --data D --out DIR` draws it for any data."
        )
    )
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
        explainers=explanation_notes(model),
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
        mean_gradcam=MEAN_GRADCAM if mean_gradcam else None,
        mean_gradcam_count=metrics.get("mean_gradcam_faces", "?"),
        last_stage_layer=model.last_stage_layer_name,
        mean_gradcam_note=note,
        shortcut=shortcut_check(report) if (report := run.report()) else None,
    )
