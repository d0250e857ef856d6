"""`python -m bench.load [--sessions N] [--requests M] [--model SRC] [--time-limit S] [--json PATH]`
(also `--flood K`, `--lime-samples L`)

The page under a crowd, on loopback only, bounded in count and time. It starts `python -m app`
itself on a free port of 127.0.0.1 and stops it at the end, whatever happens; then:

  model     images/s of the bare `model.predict` at LIME's batch size, in this process before the
            load starts: how busy the machine is, so runs can be compared;
  warm-up   a few `/explain` calls from one client, then the server's resident memory (RSS, with
            any child processes);
  load      N gradio_client sessions at once (a thread and a Client each), M presses of
            Explain each on scikit-image's astronaut with the default methods, made as the page
            makes them: `/explain_first` (face, probabilities, Grad-CAM) then `/explain_rest`
            (LIME), each in its own lane. Per press: the time to the first maps, the time to
            the whole result, and the outcome (ok, or failed with the error's text).
            `--api` makes each press one `/explain` call instead (the whole result at once, as
            gradio_client users call it, and as the page did before it streamed);
  flood     more calls submitted at once than the queue holds (the queue the app says it holds + 1
            running): each is answered, refused with Gradio's "queue is full", failed, or hung
            (no result within a bound); the excess must be refused, and quickly;
  end       the server's RSS again: growth since the warm-up.

Targets: 0 failures; the flood's excess refused cleanly; RSS growth ≤ 10 % over ≥ 300 requests
after the warm-up (the defaults make 300; a run planned with fewer is refused unless
`--skip-memory` says not to judge memory). The exit status is 0 when every judged target is met
and the run was not cut short by --time-limit, else 1.

With no --model, an untrained resnet10t is saved to a temporary folder and served: the load is on
the page's plumbing and the explainers, which do the same work whatever the weights.
"""

from __future__ import annotations

import argparse
import concurrent.futures as cf
import contextlib
import os
import re
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import psutil

from bench import emit
from emotion.cli import command

ROOT = Path(__file__).resolve().parents[1]
WARMUP_REQUESTS = 3
RSS_GROWTH_MAX_PCT = 10.0
RSS_MIN_REQUESTS = 300  # growth over fewer requests says little about a leak
# A refusal needs only the upload and one POST, so it comes back in well under a second on an
# idle machine; 10 s leaves room for a busy 2-core one, and is still far below the wait of a
# request at the back of a full queue (17 explanations).
REFUSE_WITHIN_S = 10.0
START_TIMEOUT_S = 180.0  # importing torch and gradio on 2 busy cores can take a minute


@dataclass
class Deadline:
    """The run's time limit: every wait is cut to what is left of it."""

    limit_s: float
    start: float = field(default_factory=time.perf_counter)

    def left(self) -> float:
        return self.limit_s - (time.perf_counter() - self.start)

    def passed(self) -> bool:
        return self.left() <= 0


class TimeLimit(Exception):
    """The run's --time-limit was reached; what was done so far is still reported."""


def untrained_model_folder(folder: Path) -> str:
    """An untrained resnet10t saved as a model folder: served without building the demo model."""
    import torch

    from emotion.model import build_model
    from emotion.storage.model_folder import save_model

    torch.manual_seed(0)
    return str(save_model(build_model("resnet10t"), folder))


def bare_model_speed(source: str) -> tuple[float, int]:
    """Images/s of `model.predict` at LIME's batch size, and that batch size."""
    from bench.explain import model_throughput
    from emotion.explainers.lime import LimeConfig
    from emotion.storage.model_folder import load_model

    batch = LimeConfig().batch_size
    model = load_model(source)  # the precision the app picks
    return model_throughput(model, batch), batch


def astronaut_png(folder: Path) -> str:
    from PIL import Image
    from skimage import data

    path = folder / "astronaut.png"
    Image.fromarray(data.astronaut()).save(path)
    return str(path)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(
    model: str | None,
    log: Path,
    deadline: Deadline,
    extra: list[str] | None = None,
    env: dict[str, str] | None = None,
) -> tuple[subprocess.Popen, str]:
    """`python -m app --model MODEL --port P` on loopback (no --model and no EMOTION_MODEL when
    `model` is None: the demo model); (process, url) once the port answers."""
    port = _free_port()
    env = {**os.environ, "GRADIO_ANALYTICS_ENABLED": "False", **(env or {})}
    chosen = ["--model", model] if model else []
    if not model:
        env.pop("EMOTION_MODEL", None)
    args = [sys.executable, "-m", "app", *chosen, "--host", "127.0.0.1", "--port", str(port)]
    with open(log, "ab") as stream:
        proc = subprocess.Popen(
            [*args, *(extra or [])], cwd=ROOT, env=env, stdout=stream, stderr=subprocess.STDOUT
        )
    give_up = time.perf_counter() + min(START_TIMEOUT_S, max(deadline.left(), 0))
    while time.perf_counter() < give_up:
        if proc.poll() is not None:
            raise RuntimeError(f"the app exited with code {proc.returncode} at start:\n{_tail(log)}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return proc, f"http://127.0.0.1:{port}/"
        except OSError:
            time.sleep(0.3)
    stop_server(proc)
    if deadline.passed():
        raise TimeLimit("starting the app")
    raise RuntimeError(f"the app did not listen within {START_TIMEOUT_S:.0f} s:\n{_tail(log)}")


QUEUE_LINE = re.compile(r"The queue holds (\d+) requests waiting")


def served_queue_max(log: Path) -> int:
    """How many requests the served page's queue holds waiting, as `python -m app` says at start."""
    found = QUEUE_LINE.search(log.read_text(errors="replace"))
    if found is None:
        raise RuntimeError(f"the app did not say its queue size at start:\n{_tail(log)}")
    return int(found.group(1))


def stop_server(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=30)


def _tail(log: Path, lines: int = 30) -> str:
    return "\n".join(log.read_text(errors="replace").splitlines()[-lines:])


def rss_mb(pid: int) -> float:
    """Resident memory of the process and its children, in MB."""
    proc = psutil.Process(pid)
    total = 0
    for p in [proc, *proc.children(recursive=True)]:
        with contextlib.suppress(psutil.NoSuchProcess):  # a child that ended meanwhile holds nothing
            total += p.memory_info().rss
    return total / 2**20


def _client(url: str, downloads: Path, max_workers: int = 40):
    from gradio_client import Client

    # Outputs go to our temporary folder (removed at the end), not the user's cache.
    return Client(url, verbose=False, download_files=str(downloads), max_workers=max_workers)


def _error_text(err: BaseException) -> str:
    text = " ".join(str(err).split())
    return f"{type(err).__name__}: {text[:300]}" if text else type(err).__name__


def _check_answer(result) -> None:
    """An answer carries the five probabilities (the rest is checked by tests/test_app.py)."""
    from emotion import EMOTIONS

    label = result[1] if isinstance(result, tuple) and len(result) > 1 else None
    if not isinstance(label, dict) or len(label.get("confidences") or []) != len(EMOTIONS):
        raise ValueError(f"unexpected answer: {str(result)[:200]}")


def _check_rest(result) -> None:
    """The second step's answer carries LIME's five maps (a gallery of five)."""
    galleries = [item for item in result if isinstance(item, list)] if isinstance(result, tuple) else []
    if not any(len(g) == 5 for g in galleries):
        raise ValueError(f"unexpected answer: {str(result)[:200]}")


def call_explain(client, photo: str, deadline: Deadline, api: bool = False) -> dict:
    """One press of Explain: {"outcome": "ok" / "failed" / "cut", "s": seconds to the whole
    result, "first_s": seconds to the first maps, "error": text}. As the page makes it
    (`/explain_first`, then `/explain_rest`), or with `api` as one `/explain` call, whose first
    maps come with the whole result."""
    from gradio_client import handle_file

    start = time.perf_counter()
    record: dict = {"outcome": "ok", "s": None, "first_s": None, "error": None}
    steps = (
        [("/explain", (handle_file(photo),), _check_answer)]
        if api
        else [
            ("/explain_first", (handle_file(photo),), _check_answer),
            ("/explain_rest", (), _check_rest),
        ]
    )
    for api_name, args, check in steps:
        job = client.submit(*args, api_name=api_name)
        try:
            check(job.result(timeout=max(deadline.left(), 0.01)))
        except cf.TimeoutError:
            job.cancel()
            record.update(outcome="cut", error="cut by the time limit")
            break
        except Exception as err:  # every way a call can fail is what is being counted
            record.update(outcome="failed", error=_error_text(err))
            break
        if record["first_s"] is None:
            record["first_s"] = time.perf_counter() - start
    record["s"] = time.perf_counter() - start
    return record


def warm_up(url: str, photo: str, downloads: Path, deadline: Deadline, api: bool) -> list[float]:
    """Seconds of each warm-up press from one client; any failure here stops the run."""
    client = _client(url, downloads)
    seconds = []
    for _ in range(WARMUP_REQUESTS):
        record = call_explain(client, photo, deadline, api)
        if record["outcome"] == "cut":
            raise TimeLimit("the warm-up")
        if record["outcome"] != "ok":
            raise RuntimeError(f"a warm-up request failed: {record['error']}")
        seconds.append(record["s"])
    return seconds


def load_phase(
    url: str, photo: str, sessions: int, requests: int, downloads: Path, deadline: Deadline, api: bool
):
    """`sessions` clients at once, `requests` presses each; one record per press (in the order done)."""
    records: list[dict] = []
    lock = threading.Lock()
    barrier = threading.Barrier(sessions)

    def session(index: int) -> None:
        try:
            client = _client(url, downloads / f"s{index}")
            error = None
        except Exception as err:  # a session that cannot connect fails all its calls
            client, error = None, f"connecting: {_error_text(err)}"
        # All sessions start together (a session that cannot connect does not hold up the rest).
        with contextlib.suppress(threading.BrokenBarrierError):
            barrier.wait(timeout=max(deadline.left(), 0.01))
        for _ in range(requests):
            if deadline.passed():
                return
            if client is None:
                record = {"outcome": "failed", "s": 0.0, "first_s": None, "error": error}
            else:
                record = call_explain(client, photo, deadline, api)
            with lock:
                records.append({"session": index, **record})
            if record["outcome"] == "cut":
                return

    threads = [threading.Thread(target=session, args=(i,), daemon=True) for i in range(sessions)]
    for t in threads:
        t.start()
    for t in threads:
        # Each call is bounded by the deadline; the extra minute covers connecting.
        t.join(timeout=max(deadline.left(), 0) + 60)
    with lock:
        return list(records)


def flood_phase(url: str, photo: str, flood: int, service_s: float, downloads: Path, deadline: Deadline):
    """`flood` calls submitted at once (non-blocking jobs); each one's fate and time."""
    from gradio_client import handle_file
    from gradio_client.exceptions import AppError
    from gradio_client.utils import QueueError

    # The accepted calls run one at a time, so the last may wait for all of them; twice that,
    # plus half a minute, before a call counts as hung.
    hang_s = 30.0 + 2 * flood * service_s
    wait_s = min(hang_s, max(deadline.left(), 0.01))
    client = _client(url, downloads / "flood", max_workers=flood)  # every job in flight at once
    done_at: dict[int, float] = {}
    start = time.perf_counter()
    jobs = []
    for i in range(flood):
        job = client.submit(handle_file(photo), api_name="/explain")
        job.future.add_done_callback(lambda _f, i=i: done_at.setdefault(i, time.perf_counter()))
        jobs.append(job)
    cf.wait([j.future for j in jobs], timeout=wait_s)
    records = []
    for i, job in enumerate(jobs):
        s = done_at.get(i, time.perf_counter()) - start
        if not job.future.done():
            job.cancel()
            fate, error = ("hung" if wait_s >= hang_s else "cut"), None
        elif (err := job.future.exception()) is None:
            try:
                _check_answer(job.future.result())
                fate, error = "answered", None
            except ValueError as bad:
                fate, error = "failed", str(bad)
        elif isinstance(err, QueueError) and "queue is full" in str(err).lower():
            fate, error = "refused", str(err)
        else:
            kind = "AppError" if isinstance(err, AppError) else type(err).__name__
            fate, error = "failed", f"{kind}: {err}"
        records.append({"fate": fate, "s": s, "error": error})
    client.executor.shutdown(wait=False, cancel_futures=True)
    return records, hang_s


def _percentile(values: list[float], q: float) -> float | None:
    return float(np.percentile(values, q)) if values else None


def summarise_load(records: list[dict], sessions: int, requests: int) -> dict:
    ok = [r["s"] for r in records if r["outcome"] == "ok"]
    first = [r["first_s"] for r in records if r["outcome"] == "ok"]
    errors = Counter(r["error"] for r in records if r["outcome"] == "failed")
    return {
        "sessions": sessions,
        "requests_per_session": requests,
        "planned": sessions * requests,
        "done": sum(r["outcome"] in ("ok", "failed") for r in records),
        "ok": len(ok),
        "failed": sum(errors.values()),
        "errors": dict(errors.most_common()),
        "latency_s": {
            "p50": _percentile(ok, 50),
            "p95": _percentile(ok, 95),
            "mean": statistics.fmean(ok) if ok else None,
            "max": max(ok) if ok else None,
        },
        "first_maps_s": {"p50": _percentile(first, 50), "p95": _percentile(first, 95)},
    }


def summarise_flood(records: list[dict], flood: int, capacity: int, hang_s: float) -> dict:
    fates = Counter(r["fate"] for r in records)
    refused_s = [r["s"] for r in records if r["fate"] == "refused"]
    answered_s = [r["s"] for r in records if r["fate"] == "answered"]
    return {
        "flooded": flood,
        "capacity": capacity,
        "answered": fates["answered"],
        "refused": fates["refused"],
        "failed": fates["failed"],
        "hung": fates["hung"],
        "cut": fates["cut"],
        "errors": dict(Counter(r["error"] for r in records if r["fate"] == "failed").most_common()),
        "refusal_messages": sorted({r["error"] for r in records if r["fate"] == "refused"}),
        "refused_within_s": max(refused_s) if refused_s else None,
        "answered_within_s": max(answered_s) if answered_s else None,
        "hang_bound_s": hang_s,
        "refuse_bound_s": REFUSE_WITHIN_S,
    }


def run(
    sessions: int = 20,
    requests: int = 10,
    model_source: str | None = None,
    time_limit_s: float = 900.0,
    flood: int | None = None,
    app_args: list[str] | None = None,
    *,
    api: bool = False,
    judge_memory: bool = True,
) -> dict:
    """The whole benchmark; the server is always stopped before this returns."""
    deadline = Deadline(time_limit_s)
    result: dict = {
        "sessions": sessions,
        "requests": requests,
        "time_limit_s": time_limit_s,
        "app_args": app_args or [],
        "presses": "one /explain call" if api else "/explain_first then /explain_rest, as the page",
        "judge_memory": judge_memory,
        "aborted": None,
        "load": None,
        "flood": None,
        "rss_mb": {"after_warmup": None, "end": None, "growth_pct": None},
    }
    proc = None
    with tempfile.TemporaryDirectory(prefix="bench-load-") as tmp:
        tmp = Path(tmp)
        # A model that does not load is the user's error (`error: …`, exit 2), not a load figure.
        source = model_source or untrained_model_folder(tmp / "model")
        result["model"] = model_source or "untrained resnet10t (temporary folder)"
        result["model_images_per_s"], result["model_batch"] = bare_model_speed(source)
        photo = astronaut_png(tmp)
        phase = "starting the app"
        try:
            downloads = tmp / "downloads"
            proc, url = start_server(source, tmp / "app.log", deadline, app_args)
            result["server"] = url
            capacity = served_queue_max(tmp / "app.log") + 1  # waiting + the one running
            flood = 2 * capacity if flood is None else flood
            phase = "the warm-up"
            warm = warm_up(url, photo, downloads, deadline, api)
            result["warmup_s"] = warm
            result["rss_mb"]["after_warmup"] = rss_mb(proc.pid)
            phase = "the load"
            records = load_phase(url, photo, sessions, requests, downloads, deadline, api)
            result["load"] = summarise_load(records, sessions, requests)
            if deadline.passed() or any(r["outcome"] == "cut" for r in records):
                raise TimeLimit(phase)
            if proc.poll() is not None:
                raise RuntimeError(f"the app exited with code {proc.returncode}:\n{_tail(tmp / 'app.log')}")
            phase = "the flood"
            fates, hang_s = flood_phase(url, photo, flood, statistics.median(warm), downloads, deadline)
            result["flood"] = summarise_flood(fates, flood, capacity, hang_s)
            if result["flood"]["cut"]:
                raise TimeLimit(phase)
        except TimeLimit:
            result["aborted"] = f"time limit of {time_limit_s:.0f} s reached during {phase}"
        except Exception as err:  # reported with what was done, then the server is stopped
            result["aborted"] = f"{_error_text(err)} (during {phase})"
        finally:
            if proc is not None:
                if proc.poll() is None and result["rss_mb"]["after_warmup"] is not None:
                    result["rss_mb"]["end"] = rss_mb(proc.pid)
                stop_server(proc)
    result["wall_s"] = time.perf_counter() - deadline.start
    result["requests_after_warmup"] = (result["load"] or {}).get("done", 0) + (result["flood"] or {}).get(
        "answered", 0
    )
    rss = result["rss_mb"]
    if rss["after_warmup"] and rss["end"]:
        rss["growth_pct"] = 100 * (rss["end"] / rss["after_warmup"] - 1)
    result["targets"] = judge(result)
    return result


def judge(result: dict) -> dict:
    """Each target: True (met), False (missed) or None (not judged: the phase did not run, or too
    few requests for the memory figure)."""
    load, flood, rss = result["load"], result["flood"], result["rss_mb"]
    no_failures = None  # not run, or cut short with no failure so far
    if load is not None and (load["failed"] or load["done"] == load["planned"]):
        no_failures = load["failed"] == 0
    refused = None
    if flood is not None:
        refused = (
            flood["refused"] > 0
            and flood["answered"] + flood["refused"] == flood["flooded"]
            and flood["refused_within_s"] <= REFUSE_WITHIN_S
        )
    memory = None  # --skip-memory, or not run: growth printed, not judged
    if result.get("judge_memory", True):
        if rss["growth_pct"] is not None and result["requests_after_warmup"] >= RSS_MIN_REQUESTS:
            memory = rss["growth_pct"] <= RSS_GROWTH_MAX_PCT
        elif rss["end"] is not None and not result["aborted"]:
            memory = False  # asked to judge and the run could not: a failure, not a pass
    return {"no_failures": no_failures, "refused_cleanly": refused, "rss_growth": memory}


def _verdict(value: bool | None, why_not_judged: str = "not run") -> str:
    return {True: "met", False: "MISSED", None: f"not judged ({why_not_judged})"}[value]


def format_result(result: dict) -> str:
    targets = result["targets"]
    lines = [
        f"model {result.get('model')} · server {result.get('server', '-')} · "
        f"{result['sessions']} sessions × {result['requests']} requests (after {WARMUP_REQUESTS} warm-up)",
    ]
    if "model_images_per_s" in result:
        lines.append(
            f"model alone: {result['model_images_per_s']:.0f} images/s at batch {result['model_batch']} "
            "(bench process, before the load: how busy the machine is)"
        )
    load = result["load"]
    if load:
        lat = load["latency_s"]
        lines.append(
            f"load: {load['done']} of {load['planned']} done: {load['ok']} ok, {load['failed']} failed"
            f"   target 0 failures: {_verdict(targets['no_failures'], 'cut short')}"
        )
        for error, n in load["errors"].items():
            lines.append(f"  {n}× {error}")
        if lat["p50"] is not None:
            first = load.get("first_maps_s") or {}
            fe = _fe(result)
            lines.append(
                f"whole result (ok presses): p50 {lat['p50']:.2f} s{fe(lat['p50'])}, "
                f"p95 {lat['p95']:.2f} s{fe(lat['p95'])}, max {lat['max']:.2f} s"
            )
            if first.get("p50") is not None:
                lines.append(
                    f"first maps: p50 {first['p50']:.2f} s{fe(first['p50'])}, "
                    f"p95 {first['p95']:.2f} s{fe(first['p95'])}"
                )
    flood = result["flood"]
    if flood:
        refused_in = "-" if flood["refused_within_s"] is None else f"{flood['refused_within_s']:.2f} s"
        answered_in = "-" if flood["answered_within_s"] is None else f"{flood['answered_within_s']:.1f} s"
        lines.append(
            f"flood: {flood['flooded']} at once into a queue of {flood['capacity'] - 1} waiting + 1 running: "
            f"{flood['answered']} answered (all within {answered_in}), {flood['refused']} refused "
            f"(all within {refused_in}), {flood['failed']} failed, {flood['hung']} hung "
            f"(no result in {flood['hang_bound_s']:.0f} s)"
            f"   target refused cleanly: {_verdict(targets['refused_cleanly'])}"
        )
        for message in flood["refusal_messages"]:
            lines.append(f"  refused with: {message}")
        for error, n in flood["errors"].items():
            lines.append(f"  {n}× {error}")
    rss = result["rss_mb"]
    if rss["after_warmup"] is not None:
        end = "-" if rss["end"] is None else f"{rss['end']:.0f} MB"
        growth = "" if rss["growth_pct"] is None else f" ({rss['growth_pct']:+.1f} %)"
        n = result["requests_after_warmup"]
        lines.append(
            f"server RSS: {rss['after_warmup']:.0f} MB after the warm-up → {end} at the end{growth} over "
            f"{n} requests   target ≤ {RSS_GROWTH_MAX_PCT:.0f} % over ≥ {RSS_MIN_REQUESTS} requests: "
            + _verdict(targets["rss_growth"], _memory_not_judged(result, n))
        )
        if targets["rss_growth"] is False and n < RSS_MIN_REQUESTS:
            lines.append(f"  only {n} requests: too few to judge memory growth")
    lines.append(f"wall time: {result['wall_s']:.0f} s (limit {result['time_limit_s']:.0f} s)")
    if result["aborted"]:
        lines.append(f"ABORTED: {result['aborted']}; the figures above are what was done")
    return "\n".join(lines)


def _fe(result: dict):
    """Seconds → " (N fe)": the model's own forwards the wait is worth on this machine now."""
    speed = result.get("model_images_per_s")
    return lambda seconds: f" ({seconds * speed:.0f} fe)" if speed else ""


def _memory_not_judged(result: dict, requests: int) -> str:
    if not result.get("judge_memory", True):
        return "--skip-memory"
    return f"{requests} requests" if result["rss_mb"]["growth_pct"] is not None else "not run"


def passed(result: dict) -> bool:
    return result["aborted"] is None and all(v is not False for v in result["targets"].values())


@command
def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m bench.load", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--sessions", type=int, default=20, help="concurrent client sessions; default 20")
    p.add_argument(
        "--requests",
        type=int,
        default=15,
        help=f"presses of Explain per session; default 15 (20 × 15 = {RSS_MIN_REQUESTS}: memory is judged)",
    )
    p.add_argument(
        "--api",
        action="store_true",
        help="each press is one /explain call (the whole result at once) instead of the page's two steps",
    )
    p.add_argument(
        "--skip-memory",
        action="store_true",
        help=f"do not judge memory growth (needed below {RSS_MIN_REQUESTS} requests)",
    )
    p.add_argument(
        "--model", default=None, help="model folder or Hub id to serve; default: an untrained resnet10t"
    )
    p.add_argument(
        "--flood",
        type=int,
        default=None,
        help="calls submitted at once in the refusal phase; default: twice the queue's capacity",
    )
    p.add_argument(
        "--time-limit",
        type=float,
        default=900.0,
        help="seconds for the whole run; past it the run stops and reports what was done; default 900",
    )
    p.add_argument(
        "--lime-samples",
        type=int,
        default=None,
        help="passed to the app: LIME perturbations per face; default: the app's (CI uses fewer)",
    )
    p.add_argument("--json", type=Path, default=None, help="also write the result as JSON here")
    args = p.parse_args(argv)
    if args.sessions < 1 or args.requests < 1:
        p.error("--sessions and --requests must be at least 1")
    if args.flood is not None and args.flood < 1:
        p.error("--flood must be at least 1")
    if args.time_limit <= 0:
        p.error("--time-limit must be positive")
    if not args.skip_memory and args.sessions * args.requests < RSS_MIN_REQUESTS:
        p.error(
            f"{args.sessions} sessions × {args.requests} requests are too few to judge memory growth "
            f"(at least {RSS_MIN_REQUESTS}): raise --sessions or --requests, or pass --skip-memory."
        )
    app_args = None if args.lime_samples is None else ["--lime-samples", str(args.lime_samples)]
    result = run(
        args.sessions,
        args.requests,
        args.model,
        args.time_limit,
        args.flood,
        app_args,
        api=args.api,
        judge_memory=not args.skip_memory,
    )
    emit(format_result(result), result, args.json)
    return 0 if passed(result) else 1


if __name__ == "__main__":
    sys.exit(main())
