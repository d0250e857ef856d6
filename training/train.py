"""The training loop: `python -m training.train --data SRC --out runs/NAME [...]`.

The one loop of the project. The demo model is a run of it with the `demo` preset (a time
budget the cosine follows, progressive resizing), and `bench.train` times its own step.
One code path for one CPU, one GPU and many (`accelerate launch`): Accelerate wraps the model
for DDP, the loop owns bf16 autocast; each process takes its share of every epoch's permutation.

Faces are decoded once into a uint8 tensor on the training device (a quarter of float32's
memory); a step gathers its batch there, normalises, resizes and augments it on the device and
never waits on a per-image Python data pipeline or a host synchronisation.

The run folder it writes is defined in `emotion.storage.runs` (config.yaml, checkpoints/, tensorboard/,
metrics.json, confusion_matrix.png, curves.png, mean_gradcam.png, model/).
"""

from __future__ import annotations

import argparse
import dataclasses
import io
import json
import logging
import math
import os
import shutil
import statistics
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
import yaml
from tqdm.auto import tqdm

from emotion.cli import command, program_name
from emotion.errors import EmotionLensError, RunFolderError
from emotion.model import build_model, resolve_precision
from emotion.storage.files import write_file_atomically
from emotion.storage.model_folder import save_model
from emotion.storage.runs import RunFolder
from emotion.timing import sync_device
from training.augment import AugmentConfig, augment, swap_backgrounds
from training.metrics import compute_metrics, format_metrics, save_confusion_matrix, save_curves

log = logging.getLogger(__name__)


class TrainConfigError(EmotionLensError, ValueError):
    """A training config that cannot run: unknown key, bad value, nothing to resume."""


@dataclass
class TrainConfig:
    data: str = ""  # ImageFolder / FER2013 CSV / HF dataset, or "synthetic:N" (N faces per class)
    out: str = "runs/emotion"  # run folder
    arch: str = "resnet18"  # a timm ResNet (emotion.model.build_model lists them)
    pretrained: bool = False  # ImageNet weights (needs them in the local timm/HF cache here)
    epochs: int = 30
    batch_size: int = 64  # per process
    lr: float = 1e-3  # peak AdamW learning rate (scaled by nothing: set it for the global batch)
    weight_decay: float = 0.05
    warmup_frac: float = 0.05  # share of training spent warming the learning rate up
    drop_rate: float = 0.3  # dropout before the head: the original project's fix against overfitting
    label_smoothing: float = 0.1
    balance: str = "weights"  # unequal classes: "weights" (loss weights), "sampler" or "none"
    patience: int = 6  # early stopping: validated epochs without a better macro-F1
    val_fraction: float = 0.15  # held out when the source has no validation split
    seed: int = 0
    precision: str = "auto"  # "auto" (bf16 where fast), "bf16" or "fp32"
    device: str = "auto"  # "auto" (the GPU if there is one), "cpu" or "cuda"
    # Stop after this many seconds of training. Progress is then the further of steps done and
    # time spent, so the cosine anneals the learning rate by the deadline on any machine.
    time_budget_s: float | None = None
    # Progressive resizing: the first `small_until` of training runs on small_size faces. The
    # net is fully convolutional with a pooled head, so it carries over, and early steps, which
    # learn coarse shapes, cost a fraction of a full-size step.
    small_size: int = 64
    small_until: float = 0.0  # 0 = off
    validate_every_epoch: bool = True  # off: validate once at the end (saves time under a budget)
    demo: bool = False  # the model is the synthetic demo model: the app and the CLI say so
    log_every: int = 25  # steps between progress-bar updates (each reads the loss: a GPU sync)
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    # Against background shortcuts: this share of every step's faces (0: off, 1: all) is shown on
    # another training face's background, everything off the face's core as FaceData.face_masks
    # defines it (a superset of the shortcut report's background), so no background predicts a
    # class (training.augment.swap_backgrounds).
    against_background: float = 0.0


def demo_preset() -> TrainConfig:
    """The demo model: a timm resnet10t on 1000 drawn faces per emotion, trained in a few minutes
    on 2 CPU cores. The project ships one (`training.demo --ship`); this recipe rebuilds it."""
    # resnet10t, and 48-px faces for most of the run: on 2 CPU cores only that runs the preset's
    # steps in minutes (timings in docs/findings.md). Batch 32: from scratch it is steps, not
    # images, that the net needs. The drawings already vary pose, light and clutter, so
    # augmentation stays light.
    return TrainConfig(
        data="synthetic:1000",
        arch="resnet10t",
        epochs=4,
        batch_size=32,
        lr=2e-3,
        warmup_frac=0.1,
        balance="none",  # the drawn classes are balanced
        patience=10**6,
        # fp32 on every CPU and no clock: the model, and so its maps, must not depend on the
        # machine that built it or how busy it was (bf16 and a clock that cut a busy run short
        # both changed what the maps point at).
        precision="fp32",
        time_budget_s=None,
        small_until=0.6,
        small_size=48,
        validate_every_epoch=False,
        demo=True,
        augment=AugmentConfig(rotate_deg=5, scale=0.05, shift=0.04, brightness=0.1, contrast=0.1, erase=0.0),
    )


NO_AUGMENT = AugmentConfig(
    flip=0.0, rotate_deg=0.0, scale=0.0, shift=0.0, brightness=0.0, contrast=0.0, erase=0.0
)


def original_preset() -> TrainConfig:
    """The original project's first model, which read "angry" from a corner of the background:
    the cue on every angry face and on no other, few faces, no dropout, no label smoothing, no augmentation.
    `training.shortcuts` flags angry on it; `bench.truth` checks that over seeds."""
    return TrainConfig(
        data="synthetic:150:angry:1:0",
        arch="resnet10t",  # the demo's network: ~1 min on 2 CPU cores
        epochs=5,
        batch_size=32,
        lr=2e-3,
        drop_rate=0.0,
        label_smoothing=0.0,
        balance="none",
        patience=10**6,
        validate_every_epoch=False,
        augment=NO_AUGMENT,
    )


def fixed_preset() -> TrainConfig:
    """The original project's fix: 2.7× the faces, dropout, label smoothing and augmentation (today's
    defaults), on data where the cue is still on 80 % of angry faces and 5 % of the others."""
    return dataclasses.replace(
        original_preset(),
        data="synthetic:400:angry",
        epochs=6,
        drop_rate=TrainConfig.drop_rate,
        label_smoothing=TrainConfig.label_smoothing,
        augment=AugmentConfig(),
        small_until=0.6,  # the extra faces at half the cost: early steps on 48-px faces
        small_size=48,
    )


def against_background_preset() -> TrainConfig:
    """The original project's first model trained against background shortcuts: the same faces, the cue on
    every angry face, the same recipe, every face of every step on another face's background,
    for 12 epochs: without the cue to lean on, the original project's 5 leave the faces half learnt."""
    return dataclasses.replace(original_preset(), against_background=1.0, epochs=12)


PRESETS: dict[str, Callable[[], TrainConfig]] = {
    "demo": demo_preset,
    "original": original_preset,
    "fixed": fixed_preset,
    "against-background": against_background_preset,
}


def load_config(
    path: str | Path | None, overrides: dict[str, Any], *, preset: str | None = None
) -> TrainConfig:
    """Defaults ← preset ← YAML file ← command-line flags that were given."""
    if preset is not None and preset not in PRESETS:
        raise TrainConfigError(f"Unknown preset {preset!r}: choose from {sorted(PRESETS)}.")
    values: dict[str, Any] = asdict(PRESETS[preset]()) if preset else {}
    if path and not Path(path).is_file():
        raise TrainConfigError(f"No config file at {path}: give a YAML file of TrainConfig fields.")
    if path:
        values.update(yaml.safe_load(Path(path).read_text()) or {})
    values.update({k: v for k, v in overrides.items() if v is not None})
    known = {f.name for f in dataclasses.fields(TrainConfig)}
    unknown = set(values) - known
    if unknown:
        raise TrainConfigError(f"Unknown config keys {sorted(unknown)}; known keys: {sorted(known)}.")
    if isinstance(values.get("augment"), dict):
        values["augment"] = AugmentConfig(**values["augment"])
    cfg = TrainConfig(**values)
    if cfg.device not in ("auto", "cpu", "cuda"):
        raise TrainConfigError(f"device must be 'auto', 'cpu' or 'cuda', not {cfg.device!r}.")
    if cfg.balance not in ("weights", "sampler", "none"):
        raise TrainConfigError(f"balance must be 'weights', 'sampler' or 'none', not {cfg.balance!r}.")
    if not 0.0 <= cfg.against_background <= 1.0:
        raise TrainConfigError(
            f"against_background is the share of faces given another face's background: a number "
            f"from 0 (off) to 1 (every face), not {cfg.against_background!r}."
        )
    if not cfg.data:
        raise TrainConfigError(
            "No training data: pass --data (a folder, a FER2013 CSV, hf:NAME or synthetic:N)."
        )
    return cfg


def load_training_data(cfg: TrainConfig):
    """(train, val) FaceData from the configured source."""
    from training.data import load_train_and_val

    return load_train_and_val(
        cfg.data, seed=cfg.seed, val_fraction=cfg.val_fraction, face_masks=cfg.against_background > 0
    )


def warmup_cosine(warmup_frac: float) -> Callable[[float], float]:
    """Learning-rate factor for training progress in [0, 1]: linear warm-up, then cosine to 0."""

    def factor(progress: float) -> float:
        if progress < warmup_frac:
            return max(progress / warmup_frac, 0.01)
        return 0.5 * (1 + math.cos(math.pi * min(1.0, (progress - warmup_frac) / (1 - warmup_frac))))

    return factor


def to_uint8_tensor(images: np.ndarray) -> torch.Tensor:
    """N×H×W×3 uint8 → N×3×H×W uint8 tensor."""
    return torch.from_numpy(np.ascontiguousarray(images)).permute(0, 3, 1, 2).contiguous()


def face_mask_tensor(data, device: torch.device) -> torch.Tensor:
    """The faces' `FaceData.face_masks(core=True)`, what training against the background keeps of
    each face, as a bool tensor on `device`: N×1×H×W for drawn faces, 1×1×H×W for crops."""
    masks = data.face_masks(core=True)
    one_for_all = data.drawn_face_masks is None
    # A copy: the crops' mask is a read-only broadcast view, which torch will not wrap.
    return torch.from_numpy(np.array(masks[:1] if one_for_all else masks, bool)).unsqueeze(1).to(device)


class Trainer:
    """Owns the run folder, the model, the optimiser and the loop; state survives in last.pt.

    `data` (train, val FaceData) skips loading `cfg.data`: for the benchmark and tests.
    """

    def __init__(self, cfg: TrainConfig, *, resume: bool = False, data: tuple | None = None) -> None:
        from accelerate import Accelerator
        from accelerate.utils import set_seed

        self.cfg = cfg
        self.run = RunFolder(Path(cfg.out))
        # Every process checks (each would otherwise wait forever for a main process that failed).
        check_run_folder(cfg)
        on_cpu = cfg.device == "cpu" or not torch.cuda.is_available()
        use_bf16 = resolve_precision(cfg.precision, torch.device("cpu" if on_cpu else "cuda")) == "bf16"
        self.acc = Accelerator(
            # cpu=True without a GPU: only then does Accelerate join the processes of a
            # multi-process launch over gloo instead of running each one alone.
            cpu=on_cpu,
            # Accelerate keeps mixed precision in process-wide state that refuses to change, so a
            # second Trainer with another precision (a notebook, a test after the demo model)
            # would fail. The Trainer owns its autocast instead (train_step).
            mixed_precision="no",
            log_with=None,
        )
        self.use_bf16 = use_bf16
        set_seed(cfg.seed)
        self.train_data, self.val_data = data if data is not None else load_training_data(cfg)
        self.labels = tuple(self.train_data.label_names)
        info: dict[str, Any] = {"trained_on": cfg.data}
        if cfg.against_background:
            info["against_background"] = cfg.against_background
        if cfg.demo:
            info.update(demo=True, trained_on=f"synthetic faces drawn by training.synthetic ({cfg.data})")
        self.model = build_model(
            cfg.arch, labels=self.labels, drop_rate=cfg.drop_rate, pretrained=cfg.pretrained, info=info
        )
        self.model.to(self.acc.device)
        self.model.precision = "bf16" if use_bf16 else "fp32"
        device = self.acc.device
        self.x_train = to_uint8_tensor(self.train_data.images).to(device)
        self.y_train = torch.as_tensor(self.train_data.labels, dtype=torch.long, device=device)
        self.on_face = face_mask_tensor(self.train_data, device) if cfg.against_background else None
        self.steps_per_epoch = max(1, len(self.y_train) // (cfg.batch_size * self.acc.num_processes))
        self.total_steps = cfg.epochs * self.steps_per_epoch
        # fused: one kernel for all parameters instead of a dozen ops per tensor (~10 % of a CPU step).
        opt = torch.optim.AdamW(
            self.model.net.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay, fused=True
        )
        self.net, self.opt = self.acc.prepare(self.model.net, opt)
        self.lr_factor = warmup_cosine(cfg.warmup_frac)
        self.class_weights = self._class_weights().to(device)
        self.history: list[dict[str, Any]] = []
        self.best_f1, self.start_epoch, self.stale, self.step = -1.0, 0, 0, 0
        self.elapsed_before = 0.0  # training seconds of the run before a resume
        self.gen = torch.Generator(device=device)
        self._started = time.perf_counter()
        if self.acc.is_main_process:
            self.run.root.mkdir(parents=True, exist_ok=True)
            write_file_atomically(self.run.config, yaml.safe_dump(asdict(cfg), sort_keys=False).encode())
        if resume:
            self._resume()
        self.tb = self._tensorboard()

    # --- data -------------------------------------------------------------------------------
    def _class_weights(self) -> torch.Tensor:
        counts = np.bincount(self.train_data.labels, minlength=len(self.labels)).astype(np.float64)
        if self.cfg.balance != "weights":
            return torch.ones(len(self.labels))
        # Inverse frequency, normalised to mean 1: a rare class counts as much as a common one.
        w = counts.sum() / (len(counts) * np.maximum(counts, 1))
        return torch.tensor(w, dtype=torch.float32)

    def epoch_order(self, epoch: int) -> torch.Tensor:
        """This process's training indices for `epoch`, steps_per_epoch × batch_size of them, on
        the device. A pure function of (seed, epoch, process): a resumed run draws the same."""
        g = torch.Generator().manual_seed(self.cfg.seed * 100_003 + epoch)
        n = len(self.y_train)
        if self.cfg.balance == "sampler":
            counts = np.bincount(self.train_data.labels, minlength=len(self.labels))
            weights = torch.as_tensor(1.0 / np.maximum(counts, 1)[self.train_data.labels])
            order = torch.multinomial(weights, n, replacement=True, generator=g)
        else:
            order = torch.randperm(n, generator=g)
        used = self.steps_per_epoch * self.cfg.batch_size * self.acc.num_processes
        # Strided shards: every process gets the same number of whole batches (DDP needs that).
        return order[:used][self.acc.process_index :: self.acc.num_processes].to(self.acc.device)

    # --- the step ---------------------------------------------------------------------------
    def progress(self) -> float:
        """How far training is, in [0, 1]: by steps or, under a time budget, by the clock if that
        is further, so a slow machine still anneals the learning rate fully by the deadline."""
        by_steps = self.step / max(1, self.total_steps)
        if self.cfg.time_budget_s is None:
            return by_steps
        return max(by_steps, self.elapsed() / self.cfg.time_budget_s)

    def elapsed(self) -> float:
        return self.elapsed_before + time.perf_counter() - self._started

    def train_step(self, idx: torch.Tensor) -> torch.Tensor:
        """One optimiser step on the training faces at `idx` (on the device): gather, normalise,
        resize, augment, forward, backward, AdamW. Returns the loss, still on the device."""
        progress = self.progress()
        for group in self.opt.param_groups:
            group["lr"] = self.cfg.lr * self.lr_factor(progress)
        faces = self.x_train[idx]
        if self.on_face is not None:
            on_face = self.on_face[idx] if len(self.on_face) > 1 else self.on_face
            faces = swap_backgrounds(faces, on_face, self.cfg.against_background, self.gen)
        x = self.model.to_tensor_from_uint8(faces)
        if progress < self.cfg.small_until:
            size = (self.cfg.small_size, self.cfg.small_size)
            x = F.interpolate(x, size=size, mode="bilinear", antialias=True)
        x = augment(x, self.cfg.augment, self.gen).contiguous(memory_format=torch.channels_last)
        with torch.autocast(x.device.type, dtype=torch.bfloat16, enabled=self.use_bf16):
            logits = self.net(x)
        loss = F.cross_entropy(
            logits.float(),
            self.y_train[idx],
            weight=self.class_weights,
            label_smoothing=self.cfg.label_smoothing,
        )
        self.opt.zero_grad(set_to_none=True)
        self.acc.backward(loss)
        self.opt.step()
        self.step += 1
        return loss.detach()

    # --- the loop ---------------------------------------------------------------------------
    def fit(self) -> dict[str, Any]:
        self._started = time.perf_counter()
        for epoch in range(self.start_epoch, self.cfg.epochs):
            row = self.train_epoch(epoch)
            out_of_time = self.progress() >= 1.0
            last = epoch == self.cfg.epochs - 1 or out_of_time
            improved = False
            if self.cfg.validate_every_epoch or last:
                metrics, val_loss = self.evaluate()
                row.update(
                    val_loss=val_loss, val_accuracy=metrics["accuracy"], val_macro_f1=metrics["macro_f1"]
                )
                improved = metrics["macro_f1"] > self.best_f1
                if improved:
                    self.best_f1, self.stale = metrics["macro_f1"], 0
                else:
                    self.stale += 1
            self.history.append(row)
            self._log_epoch(row)
            self._checkpoint(epoch, best=improved)
            if out_of_time and epoch < self.cfg.epochs - 1:
                self._print(
                    f"Time budget of {self.cfg.time_budget_s:.0f} s reached after {self.step} of "
                    f"{self.total_steps} steps; the learning rate was already annealed to it."
                )
                break
            if self.stale >= self.cfg.patience:
                self._print(f"Early stop: no better validation macro-F1 for {self.cfg.patience} epochs.")
                break
        return self.finish()

    def train_epoch(self, epoch: int) -> dict[str, Any]:
        """One pass over this process's share of the training faces (or until the time budget)."""
        self.net.train()
        # Seeded per epoch and process (augmentation and dropout alike): a run resumed after
        # epoch k draws exactly what the uninterrupted run drew from epoch k+1 on.
        epoch_seed = self.cfg.seed * 100_003 + epoch * 101 + self.acc.process_index
        torch.manual_seed(epoch_seed)
        self.gen.manual_seed(epoch_seed)
        order = self.epoch_order(epoch)
        bs = self.cfg.batch_size
        # Throughput is timed from the `warm`-th step on: the first steps of an epoch pay for
        # kernel selection and, after progressive resizing, for the new input size.
        warm = min(3, self.steps_per_epoch // 4)
        total = torch.zeros((), device=self.acc.device)
        bar = tqdm(
            total=self.steps_per_epoch,
            desc=f"epoch {epoch + 1}/{self.cfg.epochs}",
            unit="step",
            disable=not self.acc.is_local_main_process,
        )
        start, timed_from, done = time.perf_counter(), None, 0
        for step in range(self.steps_per_epoch):
            if self.progress() >= 1.0:
                break
            if step == warm:
                sync_device(self.acc.device)
                timed_from = time.perf_counter()
            total += self.train_step(order[step * bs : (step + 1) * bs]) * bs
            done += 1
            if done % self.cfg.log_every == 0 or done == self.steps_per_epoch:
                bar.update(done - bar.n)
                bar.set_postfix(
                    loss=f"{float(total) / (done * bs):.3f}", **self._speed(done, warm, timed_from)
                )
        sync_device(self.acc.device)
        bar.update(done - bar.n)
        bar.close()
        end = time.perf_counter()
        timed_steps = done - warm
        row: dict[str, Any] = {
            "epoch": epoch + 1,
            "train_loss": float(total) / max(1, done * bs),
            "lr": self.opt.param_groups[0]["lr"],
            "steps": done,
            "seconds": end - start,
        }
        if timed_from is not None and timed_steps > 0:
            # All processes together: each ran the same number of steps in the same time.
            row["images_per_s"] = timed_steps * bs * self.acc.num_processes / (end - timed_from)
        return row

    def _speed(self, done: int, warm: int, timed_from: float | None) -> dict[str, str]:
        if timed_from is None or done <= warm:
            return {}
        ips = (
            (done - warm) * self.cfg.batch_size * self.acc.num_processes / (time.perf_counter() - timed_from)
        )
        return {"img/s": f"{ips:.0f}"}

    @torch.no_grad()
    def evaluate(self) -> tuple[dict[str, Any], float]:
        """Validation metrics on the whole validation set (every process computes the same)."""
        self.net.eval()
        p = torch.from_numpy(self.model.predict(self.val_data.images))
        y = torch.as_tensor(self.val_data.labels)
        val_loss = float(F.nll_loss(torch.log(p.clamp_min(1e-8)), y))
        return compute_metrics(y.numpy(), p.argmax(1).numpy(), self.labels), val_loss

    # --- state ------------------------------------------------------------------------------
    def _checkpoint(self, epoch: int, *, best: bool) -> None:
        self.acc.wait_for_everyone()
        if not self.acc.is_main_process:
            return
        # What rebuilds the model as well as what continues the run.
        state = {
            "model": self.acc.unwrap_model(self.net).state_dict(),
            "optimizer": self.opt.state_dict(),
            "epoch": epoch,
            "step": self.step,
            "elapsed_s": self.elapsed(),
            "best_f1": self.best_f1,
            "stale": self.stale,
            "history": json.dumps(self.history),
            "arch": self.cfg.arch,
            "labels": list(self.labels),
            "model_args": json.dumps(self.model.model_args),
            "drop_rate": self.cfg.drop_rate,
        }
        self.run.checkpoints.mkdir(exist_ok=True)
        _atomic_save(state, self.run.last_checkpoint)
        if best:
            _atomic_save(state, self.run.best_checkpoint)

    def _resume(self) -> None:
        path = self.run.last_checkpoint
        if not path.is_file():
            raise TrainConfigError(f"--resume: no checkpoint at {path}. Start without --resume.")
        # weights_only: a checkpoint is data, never code.
        state = torch.load(path, map_location="cpu", weights_only=True)
        saved_args = json.loads(state.get("model_args", "{}"))
        if (state["arch"], tuple(state["labels"]), saved_args) != (
            self.cfg.arch,
            self.labels,
            self.model.model_args,
        ):
            raise TrainConfigError(
                f"{path} was trained as {state['arch']} {saved_args} on {state['labels']}, not "
                f"{self.cfg.arch} {self.model.model_args} on {list(self.labels)}: resume with the "
                "run's own config.yaml (--config)."
            )
        self.acc.unwrap_model(self.net).load_state_dict(state["model"])
        self.opt.load_state_dict(state["optimizer"])
        self.start_epoch = state["epoch"] + 1
        self.step, self.elapsed_before = state["step"], state["elapsed_s"]
        self.best_f1, self.stale = state["best_f1"], state["stale"]
        self.history = json.loads(state["history"])
        self._print(
            f"Resumed {self.run.root} after epoch {self.start_epoch} (best macro-F1 {self.best_f1:.3f})."
        )

    def finish(self) -> dict[str, Any]:
        """Best weights → model/ in Hub layout, metrics.json and the plots."""
        self.acc.wait_for_everyone()
        best = torch.load(self.run.best_checkpoint, map_location="cpu", weights_only=True)
        self.acc.unwrap_model(self.net).load_state_dict(best["model"])
        metrics, _ = self.evaluate()
        speeds = [row["images_per_s"] for row in self.history if "images_per_s" in row]
        metrics.update(
            best_epoch=best["epoch"] + 1,
            epochs_run=len(self.history),
            history=self.history,
            train_counts=self.train_data.class_counts(),
            val_counts=self.val_data.class_counts(),
            world_size=self.acc.num_processes,
            data=self.cfg.data,
            images_per_s=round(statistics.median(speeds), 1) if speeds else None,
            train_seconds=round(self.elapsed(), 1),
        )
        if self.acc.is_main_process:
            self._write_outputs(metrics)
        if self.tb:
            self.tb.close()
        self.acc.wait_for_everyone()
        return metrics

    def _write_outputs(self, metrics: dict[str, Any]) -> None:
        from emotion.explainers.mean_maps import save_mean_gradcam

        self.model.info["val_macro_f1"] = metrics["macro_f1"]
        self.model.info["val_accuracy"] = metrics["accuracy"]
        self.net.eval()
        metrics["mean_gradcam_faces"] = save_mean_gradcam(
            self.model, self.val_data.images, self.val_data.labels, self.run.mean_gradcam
        )
        save_model(self.model, self.run.model_dir)
        write_file_atomically(self.run.metrics, (json.dumps(metrics, indent=2) + "\n").encode())
        save_confusion_matrix(metrics, self.run.confusion_matrix)
        save_curves(self.history, self.run.curves)
        self._print(format_metrics(metrics))
        if metrics["images_per_s"]:
            self._print(f"Training speed (steady state): {metrics['images_per_s']:.0f} images/s")
        self._print(f"Run folder: {self.run.root} (model in {self.run.model_dir})")

    # --- reporting --------------------------------------------------------------------------
    def _tensorboard(self):
        if not self.acc.is_main_process:
            return None
        from torch.utils.tensorboard import SummaryWriter

        return SummaryWriter(str(self.run.tensorboard), purge_step=self.start_epoch + 1)

    def _log_epoch(self, row: dict[str, Any]) -> None:
        if self.tb:
            for key, value in row.items():
                if key != "epoch":
                    self.tb.add_scalar(key, value, row["epoch"])
        speed = f", {row['images_per_s']:.0f} img/s" if "images_per_s" in row else ""
        val = (
            f", val loss {row['val_loss']:.3f}, val acc {row['val_accuracy']:.1%}, "
            f"macro-F1 {row['val_macro_f1']:.3f}"
            if "val_loss" in row
            else ""
        )
        self._print(
            f"epoch {row['epoch']}: train loss {row['train_loss']:.3f}{val} ({row['seconds']:.0f} s{speed})"
        )

    def _print(self, message: str) -> None:
        if self.acc.is_main_process:
            log.info(message)


# Plots (three PNGs of a few hundred kB), metrics.json, config.yaml and tensorboard's scalars, with
# room to spare: next to the checkpoints they are small, but a disk with less than this is full.
SMALL_FILES_BYTES = 16 * 2**20


def run_folder_bytes(cfg: TrainConfig) -> int:
    """About how many bytes the run writes into its folder at its peak.

    A checkpoint holds the fp32 weights and AdamW's two moments: 3× the parameter bytes. There
    are two (last.pt, best.pt), and while one is saved its temp file sits beside the old one: a
    third. model/ holds the weights once more. So 10× the parameter bytes (~450 MB for resnet18),
    plus the small files: a little over the true peak, never under it.
    """
    # On the meta device: the shapes without allocating or initialising a single weight. The head
    # is sized for the five emotions; another label count changes the total by a few kB.
    with torch.device("meta"):
        net = build_model(cfg.arch, drop_rate=cfg.drop_rate).net
    param_bytes = sum(t.numel() * 4 for t in [*net.parameters(), *net.buffers()])
    return 10 * param_bytes + SMALL_FILES_BYTES


def check_run_folder(cfg: TrainConfig) -> None:
    """Create the run folder `cfg.out`, write and remove a probe file in it, and check its disk
    has the room the run needs (`run_folder_bytes`); a `RunFolderError` that says what to do
    otherwise.

    At the start, because the first checkpoint is otherwise written only after a whole epoch.
    """
    run = RunFolder(Path(cfg.out))
    root, needed = run.root, run_folder_bytes(cfg)
    try:
        root.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise RunFolderError(
            f"Cannot create the run folder {root} ({err.strerror or err}): pass --out a folder you "
            f"can write to, on a disk with at least {_size(needed)} free."
        ) from err
    # A real write, because permission bits lie: root writes through 0o500, a read-only mount
    # or a full quota refuses what os.access allows. Named per process: several may probe at once.
    probe = root / f".write-probe-{os.getpid()}"
    try:
        probe.write_bytes(b"probe")
        probe.unlink()
    except OSError as err:
        raise RunFolderError(
            f"Cannot write in the run folder {root} ({err.strerror or err}): pass --out a folder "
            "you can write to, or make this one writable (its permissions, owner or mount; free "
            "space on its disk if it is full)."
        ) from err
    # A rerun or --resume replaces its checkpoints and model in place: their bytes come back.
    replaced = [run.last_checkpoint, run.best_checkpoint, *run.model_dir.glob("*")]
    needed = max(SMALL_FILES_BYTES, needed - sum(p.stat().st_size for p in replaced if p.is_file()))
    free = shutil.disk_usage(root).free
    if free < needed:
        raise RunFolderError(
            f"Not enough free space for the run folder {root}: {_size(free)} free on its disk, "
            f"about {_size(needed)} needed for a {cfg.arch} run (checkpoints with optimizer state, "
            "the model, the plots). Free space there, or pass --out a folder on a disk with more "
            "room."
        )


def _size(n: int) -> str:
    return f"{n / 2**20:,.1f} MiB ({n:,} bytes)"


def _atomic_save(obj: Any, path: Path) -> None:
    """A kill mid-write leaves the previous checkpoint (`write_file_atomically`)."""
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    write_file_atomically(path, buffer.getvalue())


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog=program_name("training.train"),
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "--data", help="ImageFolder dir, FER2013 CSV, HF dataset (folder or hf:NAME) or synthetic:N"
    )
    p.add_argument("--out", help="run folder, e.g. runs/NAME")
    p.add_argument(
        "--preset",
        choices=sorted(PRESETS),
        help="start from a named config (demo: the demo model; original: the original project's "
        "shortcut model; fixed: the original project's fix; against-background: the original "
        "project's model trained against the background)",
    )
    p.add_argument("--arch", help="timm ResNet name (default resnet18)")
    p.add_argument("--pretrained", action="store_true", default=None, help="start from ImageNet weights")
    p.add_argument("--epochs", type=int)
    p.add_argument("--batch-size", type=int, dest="batch_size")
    p.add_argument("--lr", type=float)
    p.add_argument("--drop-rate", type=float, dest="drop_rate")
    p.add_argument("--balance", choices=("weights", "sampler", "none"))
    p.add_argument("--patience", type=int)
    p.add_argument("--seed", type=int)
    p.add_argument("--precision", choices=("auto", "bf16", "fp32"))
    p.add_argument("--time-budget", type=float, dest="time_budget_s", help="seconds of training at most")
    p.add_argument(
        "--against-background",
        type=float,
        nargs="?",
        const=1.0,
        dest="against_background",
        metavar="SHARE",
        help="train against background shortcuts: show SHARE of the faces (default: all) on other "
        "faces' backgrounds, so no background predicts a class (what training.shortcuts flags)",
    )
    p.add_argument("--config", help="YAML file of TrainConfig fields (flags override it)")
    p.add_argument("--resume", action="store_true", help="continue the run in --out from checkpoints/last.pt")
    return p


@command
def main(argv: list[str] | None = None) -> int:
    args = vars(build_parser().parse_args(argv))
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    config_path, resume, preset = args.pop("config"), args.pop("resume"), args.pop("preset")
    if resume and not config_path and args.get("out") and RunFolder(Path(args["out"])).config.is_file():
        config_path = str(RunFolder(Path(args["out"])).config)  # resume with the run's own config
    cfg = load_config(config_path, args, preset=preset)
    Trainer(cfg, resume=resume).fit()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
