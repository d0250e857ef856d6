"""The training loop shared by the demo-model builder and `training.train`.

Data arrive as uint8 arrays already cut to faces; they are decoded once into a uint8 tensor and
normalised and augmented batch by batch on the model's device, so the loop never waits on a
per-image Python data pipeline.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from emotion.model import EmotionModel
from training.augment import AugmentConfig, augment

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class FitConfig:
    epochs: int = 6  # passes over the training set
    batch_size: int = 128  # faces per optimiser step
    lr: float = 3e-3  # peak AdamW learning rate, reached after warm-up
    weight_decay: float = 0.05  # AdamW decoupled weight decay
    warmup_frac: float = 0.1  # share of the steps spent ramping the learning rate up
    label_smoothing: float = 0.1  # softens one-hot targets: calmer, better-calibrated probabilities
    seed: int = 0  # shuffling and augmentation
    time_budget_s: float | None = None  # stop after this many seconds (the demo's 3-minute promise)
    # Progressive resizing: train on smaller faces for the first share of training. The network
    # is fully convolutional with a pooled head, so it carries over, and early steps, which only
    # learn coarse shapes, cost a fraction of a full-size step.
    small_size: int = 64  # face side used while progress < small_until
    small_until: float = 0.0  # share of training at small_size (0 = off)
    validate_every_epoch: bool = True  # off saves a validation pass per epoch under a tight budget
    augment: AugmentConfig = field(default_factory=AugmentConfig)


@dataclass
class History:
    train_loss: list[float] = field(default_factory=list)
    val_accuracy: list[float] = field(default_factory=list)
    seconds: float = 0.0
    images_seen: int = 0

    @property
    def best_accuracy(self) -> float:
        return max(self.val_accuracy, default=0.0)


def to_uint8_tensor(images: np.ndarray) -> torch.Tensor:
    """N×H×W×3 uint8 → N×3×H×W uint8 tensor (a quarter of float32's memory)."""
    return torch.from_numpy(np.ascontiguousarray(images)).permute(0, 3, 1, 2).contiguous()


def fit(
    model: EmotionModel,
    train: tuple[np.ndarray, np.ndarray],
    val: tuple[np.ndarray, np.ndarray] | None,
    cfg: FitConfig = FitConfig(),
    *,
    on_epoch: Callable[[int, History], None] | None = None,
    show_progress: bool = True,
) -> History:
    """Train `model.net` in place on (images, label indices); evaluate on `val` every epoch."""
    torch.manual_seed(cfg.seed)
    gen = torch.Generator().manual_seed(cfg.seed)
    device = model.device
    x_all = to_uint8_tensor(train[0]).to(device)
    y_all = torch.as_tensor(train[1], dtype=torch.long, device=device)
    steps_per_epoch = math.ceil(len(x_all) / cfg.batch_size)
    total_steps = steps_per_epoch * cfg.epochs
    # fused: one kernel for all parameters instead of a dozen ops per tensor (~10 % of a CPU step).
    opt = torch.optim.AdamW(model.net.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay, fused=True)
    lr_factor = warmup_cosine(cfg.warmup_frac)
    history, start, done_steps = History(), time.perf_counter(), 0
    bar = tqdm(total=total_steps, desc="training", unit="step", disable=not show_progress)
    for epoch in range(cfg.epochs):
        model.net.train()
        order = torch.randperm(len(x_all), generator=gen).to(device)
        losses = []
        for step in range(steps_per_epoch):
            progress = _progress(done_steps, total_steps, cfg, start)
            if progress >= 1.0:
                break
            for group in opt.param_groups:
                group["lr"] = cfg.lr * lr_factor(progress)
            idx = order[step * cfg.batch_size : (step + 1) * cfg.batch_size]
            size = cfg.small_size if progress < cfg.small_until else None
            loss = _train_step(model, opt, x_all[idx], y_all[idx], cfg, gen, size)
            done_steps += 1
            losses.append(loss)
            history.images_seen += len(idx)
            bar.update(1)
            bar.set_postfix(loss=f"{loss:.3f}", epoch=epoch + 1)
        history.train_loss.append(float(np.mean(losses)))
        last = epoch == cfg.epochs - 1 or _progress(done_steps, total_steps, cfg, start) >= 1.0
        if val is not None and (cfg.validate_every_epoch or last):
            history.val_accuracy.append(accuracy(model, *val))
            bar.set_postfix(loss=f"{history.train_loss[-1]:.3f}", val_acc=f"{history.val_accuracy[-1]:.3f}")
        history.seconds = time.perf_counter() - start
        if on_epoch:
            on_epoch(epoch, history)
        if _progress(done_steps, total_steps, cfg, start) >= 1.0:
            if done_steps < total_steps:
                log.info(
                    "Time budget of %.0f s reached after %d of %d steps; the learning rate was "
                    "already annealed to it.",
                    cfg.time_budget_s,
                    done_steps,
                    total_steps,
                )
            break
    bar.close()
    model.net.eval()
    return history


def _train_step(
    model: EmotionModel,
    opt: torch.optim.Optimizer,
    xb: torch.Tensor,
    yb: torch.Tensor,
    cfg: FitConfig,
    gen: torch.Generator,
    size: int | None = None,
) -> float:
    x = model.to_tensor_from_uint8(xb)
    if size is not None:
        x = F.interpolate(x, size=(size, size), mode="bilinear", antialias=True)
    x = augment(x, cfg.augment, gen).contiguous(memory_format=torch.channels_last)
    with model.autocast():
        logits = model.net(x)
    loss = F.cross_entropy(logits.float(), yb, label_smoothing=cfg.label_smoothing)
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()
    return float(loss.detach())


def warmup_cosine(warmup_frac: float) -> Callable[[float], float]:
    """Learning-rate factor for training progress in [0, 1]: linear warm-up, then cosine to 0."""

    def factor(progress: float) -> float:
        if progress < warmup_frac:
            return max(progress / warmup_frac, 0.01)
        return 0.5 * (1 + math.cos(math.pi * (progress - warmup_frac) / (1 - warmup_frac)))

    return factor


def _progress(done_steps: int, total_steps: int, cfg: FitConfig, start: float) -> float:
    """How far training is, by steps or, under a time budget, by the clock if that is further:
    a slow machine then still anneals the learning rate fully before the deadline instead of
    being cut off at a high rate."""
    by_steps = done_steps / max(1, total_steps)
    if cfg.time_budget_s is None:
        return by_steps
    return max(by_steps, (time.perf_counter() - start) / cfg.time_budget_s)


def predict_labels(model: EmotionModel, images: np.ndarray, batch_size: int = 256) -> np.ndarray:
    return model.predict(images, batch_size=batch_size).argmax(axis=1)


def accuracy(model: EmotionModel, images: np.ndarray, labels: np.ndarray) -> float:
    model.net.eval()
    return float((predict_labels(model, images) == np.asarray(labels)).mean())
