"""`python -m bench.train [--device cpu|cuda] [--batch-size N] [--steps N] [--arch A] [--json PATH]`

How much of the model's own training speed the training loop keeps.

- **loop step**: `Trainer.train_step`, the step `python -m training.train` runs (uint8 faces on
  the device → gather the batch → normalise → augment → forward/backward/AdamW, with the run's
  config: class weights, label smoothing, the learning-rate schedule).
- **model only**: a plain timm model of the same architecture and settings (output stride,
  dropout, channels_last, bf16 autocast where the loop uses it, fused AdamW) on a batch already
  normalised on the device: the most any loop around this model could reach.

The two alternate step by step, so a machine whose speed drifts slows both alike. Then one
epoch of the real loop (`Trainer.train_epoch`, progress bar and all) gives the images/s a run
reports, against the model-only median measured beside it. Last, the cost of training against
background shortcuts (`--against-background`): the loop step with every face on another face's
background, alternated with the plain loop step.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, replace
from pathlib import Path

import numpy as np
import timm
import torch
import torch.nn.functional as F

from bench import describe_device, emit, sync_device
from emotion.cli import command
from emotion.labels import EMOTIONS
from training.data import FaceData
from training.train import TrainConfig, Trainer


def time_interleaved(
    a: Callable[[], object], b: Callable[[], object], steps: int, warmup: int, sync: Callable[[], None]
) -> tuple[list[float], list[float]]:
    """Seconds per call of `a` and of `b`, alternated call by call: a machine whose speed drifts
    (shared cores, turbo) then slows both sides alike and the ratio stays honest."""
    for _ in range(warmup):
        a(), b()
    sync()
    times_a, times_b = [], []
    for _ in range(steps):
        for fn, times in ((a, times_a), (b, times_b)):
            t = time.perf_counter()
            fn()
            sync()
            times.append(time.perf_counter() - t)
    return times_a, times_b


def random_faces(n: int, seed: int = 0) -> FaceData:
    """`n` random 100×100 faces over the five emotions: pixels do not change a step's cost."""
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 256, (n, 100, 100, 3), dtype=np.uint8)
    labels = np.arange(n) % len(EMOTIONS)
    return FaceData(images, labels, EMOTIONS, [f"random:{i}" for i in range(n)])


def model_only_step(trainer: Trainer) -> Callable[[], None]:
    """A plain timm training step with the trainer's architecture and settings, on a batch that
    is already normalised on the device."""
    cfg, device = trainer.cfg, trainer.acc.device
    net = timm.create_model(
        cfg.arch, num_classes=len(trainer.labels), drop_rate=cfg.drop_rate, **trainer.model.model_args
    ).to(device, memory_format=torch.channels_last)
    net.train()
    opt = torch.optim.AdamW(net.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay, fused=True)
    size = trainer.model.preprocessing.input_size
    x = torch.randn(cfg.batch_size, 3, size, size, device=device).contiguous(
        memory_format=torch.channels_last
    )
    y = torch.randint(0, len(trainer.labels), (cfg.batch_size,), device=device)
    bf16 = trainer.model.precision == "bf16"

    def step() -> None:
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
            logits = net(x)
        loss = F.cross_entropy(logits.float(), y, label_smoothing=cfg.label_smoothing)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    return step


def loop_step(trainer: Trainer) -> Callable[[], None]:
    """The trainer's own step over successive batches of its epoch order."""
    order = trainer.epoch_order(0)
    bs, batches = trainer.cfg.batch_size, trainer.steps_per_epoch
    state = {"k": 0}

    def step() -> None:
        k = state["k"] % batches
        trainer.train_step(order[k * bs : (k + 1) * bs])
        state["k"] += 1

    return step


def run(
    device: str = "cpu", batch_size: int = 64, steps: int = 10, warmup: int = 3, arch: str = "resnet18"
) -> dict:
    with tempfile.TemporaryDirectory(prefix="bench-train-") as tmp:
        # Enough faces for `steps` distinct batches, so the real epoch below is `steps` steps long.
        faces = random_faces(batch_size * steps)
        cfg = TrainConfig(
            data="random", out=str(Path(tmp) / "run"), arch=arch, batch_size=batch_size, device=device
        )
        trainer = Trainer(cfg, data=(faces, faces.subset(slice(0, 10))))
        dev = trainer.acc.device
        trainer.net.train()
        sync = lambda: sync_device(dev)  # noqa: E731
        plain = model_only_step(trainer)
        model_only, loop = time_interleaved(plain, loop_step(trainer), steps, warmup, sync)
        epoch = trainer.train_epoch(1)
        model_after, _ = time_interleaved(plain, lambda: None, steps, 0, sync)
        against = Trainer(
            replace(cfg, against_background=1.0, out=str(Path(tmp) / "against")),
            data=(faces, faces.subset(slice(0, 10))),
        )
        against.net.train()
        loop_again, against_times = time_interleaved(
            loop_step(trainer), loop_step(against), steps, warmup, sync
        )
    m_ips = batch_size / statistics.median(model_only)
    l_ips = batch_size / statistics.median(loop)
    model_around_epoch = batch_size / statistics.median(model_only + model_after)
    return {
        "device": describe_device(dev),
        "precision": trainer.model.precision,
        "arch": arch,
        "batch_size": batch_size,
        "steps": steps,
        "model_only_img_s": round(m_ips, 1),
        "loop_step_img_s": round(l_ips, 1),
        "step_ratio": round(l_ips / m_ips, 3),
        "loop_epoch_img_s": round(epoch["images_per_s"], 1),
        "model_only_around_epoch_img_s": round(model_around_epoch, 1),
        "epoch_ratio": round(epoch["images_per_s"] / model_around_epoch, 3),
        "loop_step_beside_against_img_s": round(batch_size / statistics.median(loop_again), 1),
        "against_background_step_img_s": round(batch_size / statistics.median(against_times), 1),
        "against_background_cost": round(statistics.median(against_times) / statistics.median(loop_again), 3),
        "config": asdict(cfg),
    }


def summary(r: dict) -> str:
    return "\n".join(
        [
            f"{r['device']}, {r['precision']}, batch {r['batch_size']}, {r['arch']} at 100×100, "
            f"{r['steps']} steps",
            f"  plain timm, model only (batch on device):  {r['model_only_img_s']:>9.1f} img/s",
            f"  Trainer.train_step (data + augment + step): {r['loop_step_img_s']:>9.1f} img/s",
            f"  ratio loop step / model:                    {r['step_ratio']:>9.3f}",
            f"  Trainer.train_epoch, as a run reports it:   {r['loop_epoch_img_s']:>9.1f} img/s",
            f"  ratio loop epoch / model (same minutes):    {r['epoch_ratio']:>9.3f}",
            f"  loop step, alternated with the next:        {r['loop_step_beside_against_img_s']:>9.1f} img/s",  # noqa: E501
            f"  loop step --against-background:             {r['against_background_step_img_s']:>9.1f} img/s",  # noqa: E501
            f"  its time / the loop step's (target ≤ 1.3):  {r['against_background_cost']:>9.3f}",
        ]
    )


@command
def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m bench.train",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "--device", choices=("cpu", "cuda"), default="cuda" if torch.cuda.is_available() else "cpu"
    )
    p.add_argument("--batch-size", type=int, default=None, help="default: 64 on CPU, 512 on CUDA")
    p.add_argument("--steps", type=int, default=10)
    p.add_argument("--arch", default="resnet18")
    p.add_argument("--json", type=Path, default=None, metavar="PATH", help="also write the result as JSON")
    args = p.parse_args(argv)
    bs = args.batch_size or (512 if args.device == "cuda" else 64)
    result = run(args.device, bs, args.steps, arch=args.arch)
    emit(summary(result), result, args.json)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
