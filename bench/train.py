"""`python -m bench.train [--device cpu|cuda] [--batch-size N] [--steps N]`

Images/s of the full training step (uint8 faces in host memory → device → normalise → augment →
forward/backward/AdamW) against the model alone on the same batch already on the device, and
their ratio: how much of the model's speed the data path keeps.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import numpy as np
import torch
import torch.nn.functional as F

from bench import describe_device, sync_device
from emotion.model import build_model, resolve_precision
from training.augment import AugmentConfig, augment


def _time_interleaved(a, b, steps: int, warmup: int, sync) -> tuple[list[float], list[float]]:
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


def run(device: str = "cpu", batch_size: int = 64, steps: int = 10, warmup: int = 3) -> dict:
    dev = torch.device(device)
    model = build_model("resnet18").to(dev)
    model.precision = resolve_precision("auto", dev)
    model.net.train()
    opt = torch.optim.AdamW(model.net.parameters(), lr=1e-4, fused=True)
    faces = np.random.default_rng(0).integers(0, 256, (batch_size, 100, 100, 3), dtype=np.uint8)
    host = torch.from_numpy(faces).permute(0, 3, 1, 2).contiguous()
    if dev.type == "cuda":
        host = host.pin_memory()
    y = torch.randint(0, 5, (batch_size,), device=dev)
    ready = model.to_tensor_from_uint8(host)  # the model-only baseline starts from this
    gen = torch.Generator().manual_seed(0)
    aug = AugmentConfig()

    def optimise(x: torch.Tensor) -> None:
        with model.autocast():
            loss = F.cross_entropy(model.net(x).float(), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    def full_step() -> None:
        x = augment(model.to_tensor_from_uint8(host), aug, gen)
        optimise(x.contiguous(memory_format=torch.channels_last))

    sync = lambda: sync_device(dev)  # noqa: E731
    model_only, full = _time_interleaved(lambda: optimise(ready), full_step, steps, warmup, sync)
    m_ips = batch_size / statistics.median(model_only)
    f_ips = batch_size / statistics.median(full)
    return {
        "device": describe_device(dev),
        "precision": model.precision,
        "batch_size": batch_size,
        "model_only_img_s": round(m_ips, 1),
        "full_step_img_s": round(f_ips, 1),
        "ratio": round(f_ips / m_ips, 3),
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.train", description=__doc__)
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--batch-size", type=int, default=None, help="default: 64 on CPU, 1024 on CUDA")
    p.add_argument("--steps", type=int, default=10)
    p.add_argument("--json", action="store_true")
    args = p.parse_args(argv)
    bs = args.batch_size or (1024 if args.device.startswith("cuda") else 64)
    r = run(args.device, bs, args.steps)
    if args.json:
        print(json.dumps(r))
    else:
        print(f"{r['device']}, {r['precision']}, batch {bs}, resnet18 at 100×100")
        print(f"  model only (batch on device):      {r['model_only_img_s']:>9.1f} img/s")
        print(f"  full training step (data + aug):   {r['full_step_img_s']:>9.1f} img/s")
        print(f"  ratio full / model:                {r['ratio']:>9.3f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
