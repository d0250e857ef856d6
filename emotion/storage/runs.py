"""The run folder: what a training run leaves behind, defined once for every writer and reader.

    runs/NAME/
      config.yaml            the resolved TrainConfig
      checkpoints/last.pt    every epoch (resume), written atomically
      checkpoints/best.pt    the best validation macro-F1 so far
      tensorboard/           scalars per epoch
      metrics.json           validation metrics of the best model, history, throughput
      confusion_matrix.png   the best model on the validation split
      curves.png             loss / accuracy / macro-F1 per epoch
      mean_gradcam.png       per emotion, its Grad-CAM averaged over its validation faces
      model/                 the best model in Hub layout (config.json + model.safetensors)
      report/                `training.shortcuts`'s shortcut report: report.json, report.html, PNGs

`training.train` writes it, `training.evaluate` writes the metrics part of it, `hub.push` and
`emotion.load_model` read it. None of them spells a file name of its own.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

CONFIG = "config.yaml"
METRICS = "metrics.json"
CONFUSION_MATRIX = "confusion_matrix.png"
CURVES = "curves.png"
MEAN_GRADCAM = "mean_gradcam.png"
MODEL = "model"
CHECKPOINTS = "checkpoints"
TENSORBOARD = "tensorboard"
PLOTS = (CONFUSION_MATRIX, CURVES, MEAN_GRADCAM)  # published beside the model
REPORT = "report"
# What training.shortcuts writes into a report folder; --compare adds the PNGs again, "compare_"-prefixed.
REPORT_FILES = {
    "json": "report.json",
    "html": "report.html",
    "mean_maps": "mean_maps.png",
    "occlusion": "occlusion.png",
    "confusion_matrix": "confusion_matrix.png",
    "mistakes": "mistakes.png",
    "sanity": "sanity.png",
}


@dataclass(frozen=True)
class RunFolder:
    """Paths of one run folder; nothing is read until asked."""

    root: Path

    def __post_init__(self) -> None:
        object.__setattr__(self, "root", Path(self.root))

    @property
    def config(self) -> Path:
        return self.root / CONFIG

    @property
    def metrics(self) -> Path:
        return self.root / METRICS

    @property
    def confusion_matrix(self) -> Path:
        return self.root / CONFUSION_MATRIX

    @property
    def curves(self) -> Path:
        return self.root / CURVES

    @property
    def mean_gradcam(self) -> Path:
        return self.root / MEAN_GRADCAM

    @property
    def model_dir(self) -> Path:
        return self.root / MODEL

    @property
    def checkpoints(self) -> Path:
        return self.root / CHECKPOINTS

    @property
    def last_checkpoint(self) -> Path:
        return self.checkpoints / "last.pt"

    @property
    def best_checkpoint(self) -> Path:
        return self.checkpoints / "best.pt"

    @property
    def tensorboard(self) -> Path:
        return self.root / TENSORBOARD

    @property
    def report_dir(self) -> Path:
        return self.root / REPORT

    def report_plots(self) -> dict[str, Path]:
        """{published name: path} of the shortcut report's pictures: `report_` + their file name
        (the model card links them under those names)."""
        files = (self.read_report() or {}).get("files", {})
        return {
            f"{REPORT}_{name}": self.report_dir / name
            for name in files.values()
            if (self.report_dir / name).is_file()
        }

    def read_report(self) -> dict[str, Any] | None:
        """report.json of `training.shortcuts`, if the run has one."""
        return read_report(self.report_dir)

    def plot(self, name: str) -> Path | None:
        """The plot `name` (one of PLOTS) if the run wrote it."""
        path = self.root / name
        return path if path.is_file() else None

    def plots(self) -> dict[str, Path]:
        """{file name: path} of the plots this run has."""
        return {name: path for name in PLOTS if (path := self.plot(name)) is not None}

    def read_metrics(self) -> dict[str, Any] | None:
        return json.loads(self.metrics.read_text()) if self.metrics.is_file() else None

    def read_config(self) -> dict[str, Any] | None:
        return (yaml.safe_load(self.config.read_text()) or {}) if self.config.is_file() else None

    @classmethod
    def holding(cls, path: str | Path) -> RunFolder | None:
        """The run folder `path` is, or whose `model/` it is; None for anything else (a bare
        model folder, a file, a Hub id)."""
        path = Path(path)
        if (path / MODEL / "config.json").is_file():
            return cls(path)
        if path.name == MODEL and (path / "config.json").is_file():
            parent = path.parent
            if (parent / METRICS).is_file() or (parent / CONFIG).is_file():
                return cls(parent)
        return None


def read_report(folder: str | Path) -> dict[str, Any] | None:
    """The report.json in `folder` (a report folder), or None."""
    path = Path(folder) / REPORT_FILES["json"]
    return json.loads(path.read_text()) if path.is_file() else None
