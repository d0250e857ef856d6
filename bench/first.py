"""`python -m bench.first [--runs N] [--json PATH]`

The newcomer's wait: `python -m app` started with no model and an empty cache, as on a fresh
machine, timed from the process's start to the port answering and to the first explanation of
scikit-image's astronaut with the default methods (Grad-CAM and LIME for the five emotions).
Each run is a new process with a new, empty cache. The served model's bare images/s is measured
in this process first and printed beside the times, with the first explanation's cost in
forward-equivalents (fe = ms × images/s ÷ 1000).

Target: the first explanation ≤ 15 s after the start, with no model trained.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

from bench import emit
from bench.load import (
    Deadline,
    _client,
    astronaut_png,
    bare_model_speed,
    call_explain,
    start_server,
    stop_server,
)
from emotion.cli import command
from emotion.storage.model_folder import DEMO_MODEL_NAME, shipped_demo_dir

TARGET_S = 15.0


def one_start(folder: Path, photo: str) -> dict[str, float | bool]:
    """Seconds from `python -m app` to the port answering and to the first explanation."""
    cache = folder / "cache"
    deadline = Deadline(300.0)
    start = time.perf_counter()
    proc, url = start_server(None, folder / "app.log", deadline, env={"EMOTION_LENS_CACHE": str(cache)})
    try:
        page_s = time.perf_counter() - start
        # One /explain call: the whole first explanation, as the figures before the page showed
        # its first maps early.
        record = call_explain(_client(url, folder / "downloads"), photo, deadline, api=True)
        if record["outcome"] != "ok":
            raise RuntimeError(f"the first explanation failed: {record['error']}")
        explain_s = record["s"]
        first_s = time.perf_counter() - start
    finally:
        stop_server(proc)
    trained = (cache / DEMO_MODEL_NAME).exists()
    return {"page_s": page_s, "first_explanation_s": first_s, "explain_s": explain_s, "trained": trained}


def first_text(result: dict) -> str:
    speed = result["bare_images_per_s"]
    lines = [
        f"Bare model (the shipped demo model, at LIME's batch {result['batch']}): {speed:.0f} images/s",
        f"{'run':>4}{'page (s)':>10}{'first explanation (s)':>23}{'its call (s)':>14}{'its call (fe)':>15}"
        f"{'trained':>9}",
    ]
    for i, run in enumerate(result["runs"], 1):
        lines.append(
            f"{i:>4}{run['page_s']:>10.1f}{run['first_explanation_s']:>23.1f}{run['explain_s']:>14.2f}"
            f"{run['explain_s'] * speed:>15.0f}{'yes' if run['trained'] else 'no':>9}"
        )
    worst = max(r["first_explanation_s"] for r in result["runs"])
    median = statistics.median(r["first_explanation_s"] for r in result["runs"])
    met = worst <= TARGET_S and not any(r["trained"] for r in result["runs"])
    lines.append(
        f"First explanation: median {median:.1f} s, worst {worst:.1f} s after the start "
        f"(target <= {TARGET_S:.0f} s, nothing trained): {'met' if met else 'NOT met'}"
    )
    return "\n".join(lines)


@command
def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m bench.first",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--runs", type=int, default=3, help="starts, each with a new empty cache")
    p.add_argument("--json", type=Path, default=None, metavar="PATH", help="also write the result as JSON")
    args = p.parse_args(argv)
    speed, batch = bare_model_speed(str(shipped_demo_dir()))
    result: dict = {"bare_images_per_s": speed, "batch": batch, "runs": []}
    with tempfile.TemporaryDirectory(prefix="first-") as tmp:
        photo = astronaut_png(Path(tmp))
        for i in range(args.runs):
            folder = Path(tmp) / f"run{i}"
            folder.mkdir()
            result["runs"].append(one_start(folder, photo))
    emit(first_text(result), result, args.json)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
