"""Shared fixtures: tiny models and data made in code; nothing from the network."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest
import torch
from skimage import data

from emotion.model import EmotionModel, build_model
from emotion.storage.model_folder import load_model, save_model

ROOT = Path(__file__).resolve().parents[1]

# Fixtures that train a model or run a benchmark: every test that uses one (directly or through
# another fixture) is marked slow, so `python -m pytest -m "not slow"` leaves it out.
SLOW_FIXTURES = {"demo_folder", "run_dir", "bench_explain"}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if SLOW_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.slow)


@pytest.fixture(scope="session")
def astronaut() -> np.ndarray:
    return data.astronaut()


@pytest.fixture(scope="session")
def untrained_folder(tmp_path_factory) -> Path:
    """A randomly initialised resnet18 saved as a model folder: fast, for plumbing tests."""
    torch.manual_seed(0)
    folder = tmp_path_factory.mktemp("models") / "untrained"
    save_model(build_model("resnet18"), folder)
    return folder


@pytest.fixture(scope="session")
def untrained_model(untrained_folder) -> EmotionModel:
    return load_model(untrained_folder, precision="fp32")


@pytest.fixture(scope="session")
def demo_folder(tmp_path_factory) -> Path:
    """The demo preset trained once per session (a run folder): the recipe the shipped demo model
    was built with, rebuilt here, for meaning checks."""
    from training.demo import ensure_demo_model

    return ensure_demo_model(tmp_path_factory.mktemp("cache") / "demo")


@pytest.fixture(scope="session")
def demo_model(demo_folder) -> EmotionModel:
    return load_model(demo_folder)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def serve(args: list[str], log: Path, *, env: dict[str, str] | None = None, timeout: float = 120):
    """Start `python ARGS --port P` from the repo root; return (process, url) once it listens."""
    port = free_port()
    full_env = {**os.environ, "GRADIO_ANALYTICS_ENABLED": "False", **(env or {})}
    with open(log, "a") as stream:
        proc = subprocess.Popen(
            [sys.executable, *args, "--port", str(port)],
            cwd=ROOT,
            env=full_env,
            stdout=stream,
            stderr=subprocess.STDOUT,
        )
    wait_for_port(proc, port, log, timeout=timeout, name=" ".join(args))
    return proc, f"http://127.0.0.1:{port}/"


@contextmanager
def running(args: list[str], log: Path, *, env: dict[str, str] | None = None, timeout: float = 120):
    """`serve(...)` for the length of a `with` block: the URL, and the server stopped after."""
    proc, url = serve(args, log, env=env, timeout=timeout)
    try:
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def served_untrained_app(untrained_folder: Path, log: Path, *args: str):
    """`python -m app` serving the untrained model (with `args`), as a `running` block."""
    return running(["-m", "app", *args], log, env={"EMOTION_MODEL": str(untrained_folder)})


def wait_for_port(
    proc: subprocess.Popen, port: int, log: Path, *, timeout: float = 120, name: str = "the server"
):
    """Return once `proc` listens on `port`; fail with its log if it exits or takes too long."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"{name} exited early:\n{log.read_text()}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return
        except OSError:
            time.sleep(0.3)
    proc.kill()
    pytest.fail(f"{name} did not start within {timeout:.0f} s:\n{log.read_text()}")


def method_galleries(demo) -> list:
    """The photo tab's galleries, one per method (the video tab's key frames are another gallery)."""
    import gradio as gr

    return [b for b in demo.blocks.values() if isinstance(b, gr.Gallery) and "method-maps" in b.elem_classes]
