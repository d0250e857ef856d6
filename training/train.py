"""The training recipe: `python -m training.train --data SRC --out runs/NAME [...]`.

One code path for one CPU, one GPU and many (`accelerate launch`): Accelerate shards the data,
wraps the model for DDP and handles bf16 autocast; everything else is the same script.

A run folder ends up holding: config.yaml (the resolved config), checkpoints/last.pt and
checkpoints/best.pt (written atomically; `--resume` continues from last.pt), tensorboard/,
metrics.json, confusion_matrix.png, curves.png, and model/ (the best model in Hub layout).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
import yaml
from tqdm.auto import tqdm

from emotion.files import write_file_atomically
from emotion.model import EmotionModel, build_model, resolve_precision
from training.augment import AugmentConfig, augment
from training.loop import to_uint8_tensor, warmup_cosine
from training.metrics import compute_metrics, format_metrics, save_confusion_matrix, save_curves

log = logging.getLogger(__name__)


@dataclass
class TrainConfig:
    data: str = ""  # ImageFolder / FER2013 CSV / HF dataset, or "synthetic:N" (N faces per class)
    out: str = "runs/emotion"  # run folder
    arch: str = "resnet18"  # any timm ResNet
    pretrained: bool = False  # ImageNet weights (needs them in the local timm/HF cache here)
    epochs: int = 30
    batch_size: int = 64  # per process
    lr: float = 1e-3  # peak AdamW learning rate (scaled by nothing: set it for the global batch)
    weight_decay: float = 0.05
    warmup_frac: float = 0.05  # share of steps spent warming the learning rate up
    drop_rate: float = 0.3  # dropout before the head: the seed's fix against overfitting
    label_smoothing: float = 0.1
    balance: str = "weights"  # unequal classes: "weights" (loss weights), "sampler" or "none"
    patience: int = 6  # early stopping: epochs without a better validation macro-F1
    val_fraction: float = 0.15  # held out when the source has no validation split
    seed: int = 0
    precision: str = "auto"  # "auto" (bf16 where fast), "bf16" or "fp32"
    augment: AugmentConfig = field(default_factory=AugmentConfig)


def load_config(path: str | Path | None, overrides: dict[str, Any]) -> TrainConfig:
    """Defaults ← YAML file ← command-line flags that were given."""
    values: dict[str, Any] = {}
    if path:
        values.update(yaml.safe_load(Path(path).read_text()) or {})
    values.update({k: v for k, v in overrides.items() if v is not None})
    known = {f.name for f in dataclasses.fields(TrainConfig)}
    unknown = set(values) - known
    if unknown:
        raise ValueError(f"Unknown config keys {sorted(unknown)}; known keys: {sorted(known)}.")
    if isinstance(values.get("augment"), dict):
        values["augment"] = AugmentConfig(**values["augment"])
    cfg = TrainConfig(**values)
    if cfg.balance not in ("weights", "sampler", "none"):
        raise ValueError(f"balance must be 'weights', 'sampler' or 'none', not {cfg.balance!r}.")
    if not cfg.data:
        raise ValueError("No training data: pass --data (a folder, a FER2013 CSV, hf:NAME or synthetic:N).")
    return cfg


def load_training_data(cfg: TrainConfig):
    """(train, val) FaceData from the configured source."""
    if cfg.data.startswith("synthetic:"):
        return _synthetic_splits(cfg)
    from training.data import load_splits

    splits = load_splits(cfg.data, val_fraction=cfg.val_fraction, seed=cfg.seed)
    return splits.train, splits.val


def _synthetic_splits(cfg: TrainConfig):
    from training.synthetic import synthetic_split

    train, val = (
        synthetic_split(cfg.data, split, seed=cfg.seed, val_fraction=cfg.val_fraction)
        for split in ("train", "val")
    )
    return train, val


class Trainer:
    """Owns the run folder, the model, the optimiser and the loop; state survives in last.pt."""

    def __init__(self, cfg: TrainConfig, *, resume: bool = False) -> None:
        from accelerate import Accelerator
        from accelerate.utils import DataLoaderConfiguration, set_seed

        self.cfg = cfg
        self.run = Path(cfg.out)
        use_bf16 = resolve_precision(cfg.precision, _default_device()) == "bf16"
        self.acc = Accelerator(
            # cpu=True without a GPU: only then does Accelerate join the processes of a
            # multi-process launch over gloo instead of running each one alone.
            cpu=not torch.cuda.is_available(),
            mixed_precision="bf16" if use_bf16 else "no",
            dataloader_config=DataLoaderConfiguration(use_seedable_sampler=True),
            log_with=None,
        )
        set_seed(cfg.seed)
        self.train_data, self.val_data = load_training_data(cfg)
        self.labels = tuple(self.train_data.label_names)
        self.model = build_model(
            cfg.arch, labels=self.labels, drop_rate=cfg.drop_rate, pretrained=cfg.pretrained
        )
        self.model.to(self.acc.device)
        self.loader = self._loader()
        steps = cfg.epochs * len(
            self.loader
        )  # per-process batches × processes: how Accelerate steps schedulers
        opt = torch.optim.AdamW(self.model.net.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
        factor = warmup_cosine(cfg.warmup_frac)
        sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda step: factor(min(1.0, step / max(1, steps))))
        self.net, self.opt, self.loader, self.sched = self.acc.prepare(
            self.model.net, opt, self.loader, sched
        )
        self.class_weights = self._class_weights().to(self.acc.device)
        self.history: list[dict[str, float]] = []
        self.best_f1, self.start_epoch, self.stale = -1.0, 0, 0
        if self.acc.is_main_process:
            self.run.mkdir(parents=True, exist_ok=True)
            (self.run / "config.yaml").write_text(yaml.safe_dump(asdict(cfg), sort_keys=False))
        if resume:
            self._resume()
        self.tb = self._tensorboard()

    # --- data -------------------------------------------------------------------------------
    def _loader(self) -> torch.utils.data.DataLoader:
        # Faces are decoded once into a uint8 tensor (a quarter of float32's memory); normalising
        # and augmenting happen per batch on the training device, so a GPU is never starved by
        # per-image Python work.
        x = to_uint8_tensor(self.train_data.images)
        y = torch.as_tensor(self.train_data.labels, dtype=torch.long)
        ds = torch.utils.data.TensorDataset(x, y)
        g = torch.Generator().manual_seed(self.cfg.seed)
        if self.cfg.balance == "sampler":
            counts = np.bincount(self.train_data.labels, minlength=len(self.labels))
            weights = 1.0 / np.maximum(counts, 1)[self.train_data.labels]
            sampler = torch.utils.data.WeightedRandomSampler(weights, len(weights), generator=g)
            return torch.utils.data.DataLoader(
                ds, batch_size=self.cfg.batch_size, sampler=sampler, drop_last=True
            )
        return torch.utils.data.DataLoader(
            ds,
            batch_size=self.cfg.batch_size,
            shuffle=True,
            generator=g,
            drop_last=len(ds) > self.cfg.batch_size,
            pin_memory=torch.cuda.is_available(),
        )

    def _class_weights(self) -> torch.Tensor:
        counts = np.bincount(self.train_data.labels, minlength=len(self.labels)).astype(np.float64)
        if self.cfg.balance != "weights":
            return torch.ones(len(self.labels))
        # Inverse frequency, normalised to mean 1: a rare class counts as much as a common one.
        w = counts.sum() / (len(counts) * np.maximum(counts, 1))
        return torch.tensor(w, dtype=torch.float32)

    # --- loop -------------------------------------------------------------------------------
    def fit(self) -> dict[str, Any]:
        for epoch in range(self.start_epoch, self.cfg.epochs):
            self.loader.set_epoch(epoch)
            start = time.perf_counter()
            loss = self._train_epoch(epoch)
            metrics, val_loss = self.evaluate()
            row = {
                "epoch": epoch + 1,
                "train_loss": loss,
                "val_loss": val_loss,
                "val_accuracy": metrics["accuracy"],
                "val_macro_f1": metrics["macro_f1"],
                "lr": self.sched.get_last_lr()[0],
                "seconds": time.perf_counter() - start,
            }
            self.history.append(row)
            improved = metrics["macro_f1"] > self.best_f1
            if improved:
                self.best_f1, self.stale = metrics["macro_f1"], 0
            else:
                self.stale += 1
            self._log_epoch(row)
            self._checkpoint(epoch, best=improved)
            if self.stale >= self.cfg.patience:
                self._print(f"Early stop: no better validation macro-F1 for {self.cfg.patience} epochs.")
                break
        return self.finish()

    def _train_epoch(self, epoch: int) -> float:
        self.net.train()
        # Seeded per epoch and process (augmentation and dropout alike): a run resumed after
        # epoch k draws exactly what the uninterrupted run drew from epoch k+1 on.
        epoch_seed = self.cfg.seed * 100_003 + epoch * 101 + self.acc.process_index
        torch.manual_seed(epoch_seed)
        gen = torch.Generator().manual_seed(epoch_seed)
        total, count = 0.0, 0
        bar = tqdm(
            self.loader,
            desc=f"epoch {epoch + 1}/{self.cfg.epochs}",
            disable=not self.acc.is_local_main_process,
        )
        for xb, yb in bar:
            x = augment(self.model.to_tensor_from_uint8(xb), self.cfg.augment, gen)
            with self.acc.autocast():
                logits = self.net(x.contiguous(memory_format=torch.channels_last))
            loss = F.cross_entropy(
                logits.float(), yb, weight=self.class_weights, label_smoothing=self.cfg.label_smoothing
            )
            self.opt.zero_grad(set_to_none=True)
            self.acc.backward(loss)
            self.opt.step()
            self.sched.step()
            total += float(loss.detach()) * len(yb)
            count += len(yb)
            bar.set_postfix(loss=f"{total / count:.3f}")
        return total / max(count, 1)

    @torch.no_grad()
    def evaluate(self) -> tuple[dict[str, Any], float]:
        """Validation metrics on the whole validation set (every process computes the same)."""
        net = self.acc.unwrap_model(self.net)
        net.eval()
        probs = []
        for start in range(0, len(self.val_data.labels), 256):
            x = self.model.to_tensor(self.val_data.images[start : start + 256])
            with self.acc.autocast():
                probs.append(torch.softmax(net(x).float(), 1).cpu())
        p = torch.cat(probs)
        y = torch.as_tensor(self.val_data.labels)
        val_loss = float(F.nll_loss(torch.log(p.clamp_min(1e-8)), y))
        return compute_metrics(y.numpy(), p.argmax(1).numpy(), self.labels), val_loss

    # --- state ------------------------------------------------------------------------------
    def _checkpoint(self, epoch: int, *, best: bool) -> None:
        self.acc.wait_for_everyone()
        if not self.acc.is_main_process:
            return
        state = {
            "model": self.acc.unwrap_model(self.net).state_dict(),
            "optimizer": self.opt.state_dict(),
            "scheduler": self.sched.state_dict(),
            "epoch": epoch,
            "best_f1": self.best_f1,
            "stale": self.stale,
            "history": json.dumps(self.history),
            "arch": self.cfg.arch,
            "labels": list(self.labels),
        }
        folder = self.run / "checkpoints"
        folder.mkdir(exist_ok=True)
        _atomic_save(state, folder / "last.pt")
        if best:
            _atomic_save(state, folder / "best.pt")

    def _resume(self) -> None:
        path = self.run / "checkpoints" / "last.pt"
        if not path.is_file():
            raise FileNotFoundError(f"--resume: no checkpoint at {path}. Start without --resume.")
        # weights_only: a checkpoint is data, never code.
        state = torch.load(path, map_location="cpu", weights_only=True)
        if state["arch"] != self.cfg.arch or tuple(state["labels"]) != self.labels:
            raise ValueError(
                f"{path} was trained as {state['arch']} on {state['labels']}, not {self.cfg.arch} on "
                f"{list(self.labels)}: resume with the run's own config.yaml (--config)."
            )
        self.acc.unwrap_model(self.net).load_state_dict(state["model"])
        self.opt.load_state_dict(state["optimizer"])
        self.sched.load_state_dict(state["scheduler"])
        self.start_epoch = state["epoch"] + 1
        self.best_f1, self.stale = state["best_f1"], state["stale"]
        self.history = json.loads(state["history"])
        self._print(f"Resumed {self.run} after epoch {self.start_epoch} (best macro-F1 {self.best_f1:.3f}).")

    def finish(self) -> dict[str, Any]:
        """Best weights → model/ in Hub layout, metrics.json and plots."""
        self.acc.wait_for_everyone()
        best = torch.load(self.run / "checkpoints" / "best.pt", map_location="cpu", weights_only=True)
        self.acc.unwrap_model(self.net).load_state_dict(best["model"])
        metrics, _ = self.evaluate()
        metrics.update(
            best_epoch=best["epoch"] + 1,
            epochs_run=len(self.history),
            history=self.history,
            train_counts=self.train_data.class_counts(),
            val_counts=self.val_data.class_counts(),
            world_size=self.acc.num_processes,
            data=self.cfg.data,
        )
        if self.acc.is_main_process:
            model = EmotionModel(
                net=self.acc.unwrap_model(self.net),
                labels=self.labels,
                architecture=self.cfg.arch,
                model_args=self.model.model_args,
                info={"trained_on": self.cfg.data, "val_macro_f1": metrics["macro_f1"]},
            )
            model.save(self.run / "model")
            write_file_atomically(self.run / "metrics.json", (json.dumps(metrics, indent=2) + "\n").encode())
            save_confusion_matrix(metrics, self.run / "confusion_matrix.png")
            save_curves(self.history, self.run / "curves.png")
            self._print(format_metrics(metrics))
            self._print(f"Run folder: {self.run} (model in {self.run / 'model'})")
        if self.tb:
            self.tb.close()
        self.acc.wait_for_everyone()
        return metrics

    # --- reporting --------------------------------------------------------------------------
    def _tensorboard(self):
        if not self.acc.is_main_process:
            return None
        from torch.utils.tensorboard import SummaryWriter

        return SummaryWriter(str(self.run / "tensorboard"), purge_step=self.start_epoch + 1)

    def _log_epoch(self, row: dict[str, float]) -> None:
        if self.tb:
            for key, value in row.items():
                if key != "epoch":
                    self.tb.add_scalar(key, value, row["epoch"])
        self._print(
            f"epoch {row['epoch']}: train loss {row['train_loss']:.3f}, val loss {row['val_loss']:.3f}, "
            f"val acc {row['val_accuracy']:.1%}, macro-F1 {row['val_macro_f1']:.3f} ({row['seconds']:.0f} s)"
        )

    def _print(self, message: str) -> None:
        if self.acc.is_main_process:
            log.info(message)


def _default_device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def _atomic_save(obj: Any, path: Path) -> None:
    """Write to a temp file, then rename: a kill mid-write leaves the previous checkpoint."""
    tmp = path.with_name(f".{path.name}.tmp")
    torch.save(obj, tmp)
    os.replace(tmp, path)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m training.train",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "--data", help="ImageFolder dir, FER2013 CSV, HF dataset (folder or hf:NAME) or synthetic:N"
    )
    p.add_argument("--out", help="run folder, e.g. runs/NAME")
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
    p.add_argument("--config", help="YAML file of TrainConfig fields (flags override it)")
    p.add_argument("--resume", action="store_true", help="continue the run in --out from checkpoints/last.pt")
    return p


def main(argv: list[str] | None = None) -> int:
    args = vars(build_parser().parse_args(argv))
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    config_path, resume = args.pop("config"), args.pop("resume")
    if resume and not config_path and args.get("out") and (Path(args["out"]) / "config.yaml").is_file():
        config_path = str(Path(args["out"]) / "config.yaml")  # resume with the run's own config
    cfg = load_config(config_path, args)
    Trainer(cfg, resume=resume).fit()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
