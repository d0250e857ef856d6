"""`pip install .` gives a working install: console scripts that run outside the repo, with the
package data (model-card template, example photos) beside the installed code."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from importlib import metadata
from pathlib import Path

import pytest

from tests.conftest import ROOT

PACKAGES = ("emotion", "app", "training", "hub", "bench")  # as pyproject.toml's packages.find includes
# Every console script pyproject.toml declares, and the module whose main() it runs.
SCRIPTS = {
    "emotion-lens": "emotion.__main__:main",
    "emotion-lens-app": "app.__main__:main",
    "emotion-lens-train": "training.train:main",
    "emotion-lens-evaluate": "training.evaluate:main",
    "emotion-lens-report": "training.report:main",
    "emotion-lens-demo": "training.demo:main",
    "emotion-lens-extract": "training.extract:main",
    "emotion-lens-label": "training.label:main",
    "emotion-lens-synthetic": "training.synthetic:main",
    "emotion-lens-push": "hub.push:main",
    "emotion-lens-space": "hub.space:main",
}

# Run inside the installed copy: where its data files are, and whether each script's main loads.
PROBE = """
import json
from importlib import metadata
import app.ui, emotion, hub.card
eps = [ep for ep in metadata.distribution("emotion-lens").entry_points if ep.group == "console_scripts"]
print(json.dumps({
    "emotion": emotion.__file__,
    "template": str(hub.card.TEMPLATE), "template_exists": hub.card.TEMPLATE.is_file(),
    "examples": sorted(p.name for p in app.ui.EXAMPLES_DIR.iterdir()),
    "scripts": {ep.name: ep.value for ep in eps},
    "loaded": {ep.name: callable(ep.load()) for ep in eps},
}))
"""


def can_build_wheels_offline() -> bool:
    """setuptools ≥ 70.1 builds wheels itself; older ones need the `wheel` package."""
    version = tuple(int(part) for part in metadata.version("setuptools").split(".")[:2])
    if version >= (70, 1):
        return True
    try:
        metadata.version("wheel")
    except metadata.PackageNotFoundError:
        return False
    return True


def copy_source(dest: Path) -> Path:
    """What `pip install .` reads, copied: pip builds in the source folder (build/, *.egg-info), and
    never in the shared checkout."""
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    for package in PACKAGES:
        shutil.copytree(ROOT / package, dest / package, ignore=ignore)
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(ROOT / name, dest / name)
    return dest


def run(args: list[str], cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess:
    result = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=240)
    assert result.returncode == 0, f"{' '.join(args)} exited {result.returncode}:\n{result.stderr[-3000:]}"
    return result


@pytest.mark.slow
def test_pip_install_gives_console_scripts_that_work_outside_the_repo(tmp_path, untrained_folder):
    if not can_build_wheels_offline():
        pytest.skip("setuptools < 70.1 without the `wheel` package cannot build a wheel offline")
    venv = tmp_path / "venv"
    # The venv reuses the installed torch, timm, gradio…; without its own pip or setuptools it builds
    # with the ones already installed, and --no-index proves nothing is downloaded.
    subprocess.run(
        [sys.executable, "-m", "venv", "--system-site-packages", "--without-pip", str(venv)], check=True
    )
    python, bin_dir = venv / "bin" / "python", venv / "bin"
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}
    env.update(HF_HUB_OFFLINE="1", EMOTION_LENS_CACHE=str(tmp_path / "cache"))
    elsewhere = tmp_path / "elsewhere"  # not the repo: only the installed copy can be imported
    elsewhere.mkdir()
    source = copy_source(tmp_path / "src")
    pip = [str(python), "-m", "pip", "install", "--quiet", "--no-cache-dir", "--no-index"]
    run([*pip, "--no-deps", "--no-build-isolation", str(source)], elsewhere, env)

    probe = json.loads(run([str(python), "-c", PROBE], elsewhere, env).stdout)
    site = Path(probe["emotion"]).resolve().parents[1]
    assert site.is_relative_to(venv.resolve()), f"imported {probe['emotion']}, not the installed copy"
    assert Path(probe["template"]).resolve().is_relative_to(site) and probe["template_exists"]
    assert {"astronaut.jpg", "synthetic_sad.png"} <= set(probe["examples"])
    assert probe["scripts"] == SCRIPTS
    assert all(probe["loaded"].values()), probe["loaded"]
    assert all((bin_dir / name).is_file() for name in SCRIPTS)
    assert all((site / package / "__init__.py").is_file() for package in PACKAGES)

    helped = run([str(bin_dir / "emotion-lens"), "--help"], elsewhere, env)
    assert "explain" in helped.stdout and "video" in helped.stdout

    photo = site / "app" / "examples" / "astronaut.jpg"
    explained = run(
        [str(bin_dir / "emotion-lens"), "explain", str(photo), "--model", str(untrained_folder),
         "--methods", "gradcam", "--json"],
        elsewhere, env,
    )  # fmt: skip
    report = json.loads(explained.stdout)
    assert len(report["faces"]) == 1, "the astronaut's face is found by the installed cascade"
    assert sum(report["faces"][0]["probs"].values()) == pytest.approx(1.0, abs=1e-4)
    assert report["faces"][0]["methods"] == ["gradcam"]
