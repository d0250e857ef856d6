"""Per-step wall-clock timings, as reports carry them (`timings_ms`), and the GPU wait that
makes a timer honest."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch


@contextmanager
def timed(timings: dict[str, float], key: str) -> Iterator[None]:
    """Add the block's duration in milliseconds to `timings[key]`, even if the block raises."""
    start = time.perf_counter()
    try:
        yield
    finally:
        timings[key] = timings.get(key, 0.0) + (time.perf_counter() - start) * 1000


def sync_device(device: torch.device) -> None:
    """Wait for queued GPU work, so a timer stops when the work is done, not when it is queued."""
    if device.type == "cuda":
        import torch  # lazy: the timer above needs no torch

        torch.cuda.synchronize(device)


class Deadline:
    """A time limit for one request, checked between steps: work on 2 shared cores cannot be
    interrupted mid-forward, so each step asks `check` before it starts."""

    def __init__(self, seconds: float | None) -> None:
        self.seconds = seconds
        self.start = time.perf_counter()

    def elapsed(self) -> float:
        return time.perf_counter() - self.start

    def passed(self) -> bool:
        return self.seconds is not None and self.elapsed() > self.seconds

    def check(self, doing: str) -> None:
        """Raise TimeLimitError, naming the step, once the limit has passed."""
        if self.passed():
            from emotion.errors import TimeLimitError

            raise TimeLimitError(
                f"The request ran past its limit of {self.seconds:.0f} s (while {doing}): the server "
                "is busy or the request is too large. Try again with fewer methods, or later."
            )
