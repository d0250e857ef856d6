"""Every command turns a user's mistake into one line on stderr and exit code 2, never a traceback.

Each case runs a command as a user would (`python -m …` from the repo root) with a model or an input
path that does not exist. Each must fail before any model is trained, so the whole file runs in
seconds per command; the demo model is never built (the cache points at an empty folder).
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
from pathlib import Path

import cv2
import numpy as np
import pytest

from bench.video import write_clip
from tests.conftest import ROOT, free_port

TIMEOUT_S = 180  # far above a failing start; a command that trains instead fails here, not hangs


@pytest.fixture(scope="module")
def places(tmp_path_factory, untrained_folder) -> dict[str, Path]:
    """Paths the cases combine: missing ones, a real model and video, a plain file, an empty folder."""
    root = tmp_path_factory.mktemp("cli")
    video = root / "clip.avi"
    write_clip(video, [np.full((120, 160, 3), 40 * i, np.uint8) for i in range(3)], fps=10)
    plain_file = root / "notes.txt"
    plain_file.write_text("not a folder\n")
    (root / "empty").mkdir()
    (root / "cache").mkdir()
    return {
        "missing": Path("/nonexistent"),
        "missing_model": Path("/nonexistent/model"),
        "astronaut": ROOT / "app" / "examples" / "astronaut.jpg",
        "root": root,
        "model": untrained_folder,
        "video": video,
        "file": plain_file,
        "empty": root / "empty",
        "cache": root / "cache",
    }


def run_command(args: list[str], places: dict[str, Path]) -> subprocess.CompletedProcess:
    env = {
        **os.environ,
        "HF_HUB_OFFLINE": "1",  # a path mistaken for a Hub id must not reach the network
        "EMOTION_LENS_CACHE": str(places["cache"]),  # no demo model here: a fallback to it fails fast
        "GRADIO_ANALYTICS_ENABLED": "False",
    }
    return subprocess.run(
        [sys.executable, *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=TIMEOUT_S,
        stdin=subprocess.DEVNULL,
    )


def assert_one_error_line(result: subprocess.CompletedProcess) -> None:
    lines = result.stderr.strip().splitlines()
    shown = f"exit {result.returncode}; stderr:\n{result.stderr[-3000:]}"
    assert "Traceback" not in result.stderr, shown
    assert result.returncode == 2, shown
    assert len(lines) == 1, shown
    assert lines[0].startswith("error: "), shown
    assert len(lines[0]) > len("error: ") + 10, f"the message should say what to do; {shown}"


# (case id, `python -m` command line); {names} are filled from `places`. Every case exits 2 with one line.
CASES = [
    ("emotion-explain/missing-model", "emotion explain {astronaut} --model {missing_model}"),
    ("emotion-explain/missing-image", "emotion explain {missing}/photo.jpg --model {model}"),
    ("emotion-video/missing-model", "emotion video {video} --out {root}/out.mp4 --model {missing_model}"),
    ("emotion-video/missing-video", "emotion video {missing}/clip.mp4 --out {root}/out.mp4 --model {model}"),
    ("train/missing-data", "training.train --data {missing}/data --out {root}/run"),
    ("train/unknown-arch", "training.train --data synthetic:1 --arch vit_nope --out {root}/run"),
    ("train/missing-config", "training.train --config {missing}/config.yaml --out {root}/run"),
    ("evaluate/missing-model", "training.evaluate --model {missing_model} --data synthetic:1"),
    ("evaluate/missing-data", "training.evaluate --model {model} --data {missing}/data"),
    (
        "report/bad-synthetic-source",
        "training.shortcuts --model {model} --data synthetic:5:furious --out {root}/r",
    ),
    ("report/missing-model", "training.shortcuts --model {missing_model} --data synthetic:2 --out {root}/r"),
    ("train/bad-synthetic-source", "training.train --data synthetic:5:angry:2 --out {root}/run"),
    ("push/missing-source", "hub.push {missing_model} --repo user/name --dry-run {root}/push"),
    ("push/not-a-model-folder", "hub.push {empty} --repo user/name --dry-run {root}/push"),
    ("bench-explain/missing-model", "bench.explain --model {missing_model} --quick --device cpu"),
    ("bench-video/missing-model", "bench.video --model {missing_model} --frames 2 --device cpu"),
    ("bench-train/unknown-arch", "bench.train --arch resnet_nope --steps 1 --device cpu"),
    ("bench-video/missing-video", "bench.video --input {missing}/clip.mp4 --model {model} --device cpu"),
    ("app/missing-model", "app --model {missing_model} --port {port}"),
    ("label/missing-pool", "training.label {missing}/pool --out {root}/labelled --port {port}"),
    ("extract/missing-input", "training.extract {missing}/clip.mp4 --out {root}/pool"),
    ("demo/out-under-a-file", "training.demo --out {file}/model"),
]


@pytest.mark.parametrize("line", [line for _, line in CASES], ids=[name for name, _ in CASES])
def test_a_user_mistake_gives_one_error_line_and_exit_2(line, places):
    args = line.format(port=free_port(), **places).split()  # the paths here hold no spaces
    assert_one_error_line(run_command(["-m", *args], places))


def test_synthetic_refuses_a_file_as_its_output_folder(places):
    # argparse's own error format (usage, then "prog: error: …"), as for the command's other flags
    result = run_command(
        ["-m", "training.synthetic", "--out", str(places["file"]), "--per-class", "1"], places
    )
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr, result.stderr
    last_line = result.stderr.strip().splitlines()[-1]
    assert f"error: --out {places['file']} is a file; give a folder" in last_line
    assert places["file"].read_text() == "not a folder\n"


def test_a_busy_port_gives_the_labelling_page_one_error_line(places):
    pool = places["root"] / "pool"
    pool.mkdir(exist_ok=True)
    cv2.imwrite(str(pool / "face.png"), np.full((100, 100, 3), 128, np.uint8))
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        result = run_command(
            [
                "-m",
                "training.label",
                str(pool),
                "--out",
                str(places["root"] / "labelled"),
                "--port",
                str(port),
            ],
            places,
        )
    assert_one_error_line(result)
    assert "--port" in result.stderr and str(port) in result.stderr


def test_an_opencv_without_the_cascade_gives_one_error_line(places, monkeypatch, capsys):
    from emotion.__main__ import main
    from emotion.photo import faces

    monkeypatch.delattr(cv2, "CascadeClassifier")
    monkeypatch.setattr(faces, "_per_thread", threading.local())  # no cascade loaded yet
    code = main(["explain", str(places["astronaut"]), "--model", str(places["model"]), "--json"])
    lines = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(lines) == 1, lines
    assert "CascadeClassifier" in lines[0] and "opencv-python-headless<5" in lines[0]
