"""Benchmarks that print ratios against a baseline measured in the same process."""

from __future__ import annotations

import json
from pathlib import Path

import torch

from emotion.timing import sync_device  # noqa: F401  the benchmarks' one GPU wait


def emit(text: str, result: dict, json_path: Path | None) -> None:
    """Print the human summary; with `json_path`, also write the whole result there as JSON."""
    print(text)
    if json_path:
        json_path.parent.mkdir(parents=True, exist_ok=True)
        json_path.write_text(json.dumps(result, indent=2) + "\n")


def describe_device(device: torch.device) -> str:
    """The device in words, for the benchmark's header."""
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"cpu ({torch.get_num_threads()} threads)"
