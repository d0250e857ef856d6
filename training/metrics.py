"""Classification metrics and their plots, shared by training, evaluation and the model card."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from sklearn.metrics import confusion_matrix, precision_recall_fscore_support

from emotion.storage.files import pyplot, save_figure


def compute_metrics(y_true: np.ndarray, y_pred: np.ndarray, label_names: tuple[str, ...]) -> dict[str, Any]:
    """Accuracy, macro-F1, per-class precision/recall/F1/support and the confusion matrix."""
    labels = list(range(len(label_names)))
    p, r, f1, support = precision_recall_fscore_support(y_true, y_pred, labels=labels, zero_division=0)
    return {
        "accuracy": float((np.asarray(y_true) == np.asarray(y_pred)).mean()) if len(y_true) else 0.0,
        "macro_f1": float(np.mean(f1)),
        "per_class": {
            name: {
                "precision": float(p[i]),
                "recall": float(r[i]),
                "f1": float(f1[i]),
                "support": int(support[i]),
            }
            for i, name in enumerate(label_names)
        },
        "confusion_matrix": confusion_matrix(y_true, y_pred, labels=labels).tolist(),
        "label_names": list(label_names),
    }


def format_metrics(metrics: dict[str, Any]) -> str:
    """A plain-text table for the terminal."""
    lines = [f"accuracy {metrics['accuracy']:.1%}   macro-F1 {metrics['macro_f1']:.3f}", ""]
    lines.append(f"{'class':<11}{'precision':>10}{'recall':>8}{'F1':>7}{'n':>6}")
    for name, m in metrics["per_class"].items():
        lines.append(f"{name:<11}{m['precision']:>10.3f}{m['recall']:>8.3f}{m['f1']:>7.3f}{m['support']:>6}")
    return "\n".join(lines)


def save_confusion_matrix(metrics: dict[str, Any], path: str | Path) -> Path:
    """Row-normalised confusion matrix with counts: where each true emotion went."""
    plt = pyplot()
    cm = np.asarray(metrics["confusion_matrix"], dtype=float)
    names = metrics["label_names"]
    share = cm / np.maximum(cm.sum(1, keepdims=True), 1)
    fig, ax = plt.subplots(figsize=(5.2, 4.6))
    ax.imshow(share, cmap="Blues", vmin=0, vmax=1)
    for i in range(len(names)):
        for j in range(len(names)):
            color = "white" if share[i, j] > 0.5 else "black"
            ax.text(
                j, i, f"{int(cm[i, j])}\n{share[i, j]:.0%}", ha="center", va="center", fontsize=8, color=color
            )
    ax.set_xticks(range(len(names)), names, rotation=30)
    ax.set_yticks(range(len(names)), names)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(f"accuracy {metrics['accuracy']:.1%}, macro-F1 {metrics['macro_f1']:.3f}")
    fig.tight_layout()
    return save_figure(fig, path, dpi=110)


def save_curves(history: list[dict[str, float]], path: str | Path) -> Path:
    """Training loss and validation accuracy / macro-F1 per epoch."""
    plt = pyplot()
    epochs = [h["epoch"] for h in history]
    fig, (a, b) = plt.subplots(1, 2, figsize=(9, 3.4))
    a.plot(epochs, [h["train_loss"] for h in history], marker="o", label="train loss")
    # A run may validate only some epochs (the demo preset: only the last one).
    validated = [h for h in history if "val_loss" in h]
    val_epochs = [h["epoch"] for h in validated]
    if validated:
        a.plot(val_epochs, [h["val_loss"] for h in validated], marker="o", label="val loss")
    a.set_xlabel("epoch")
    a.legend()
    b.plot(val_epochs, [h["val_accuracy"] for h in validated], marker="o", label="val accuracy")
    b.plot(val_epochs, [h["val_macro_f1"] for h in validated], marker="o", label="val macro-F1")
    b.set_ylim(0, 1)
    b.set_xlabel("epoch")
    b.legend()
    fig.tight_layout()
    return save_figure(fig, path, dpi=110)
