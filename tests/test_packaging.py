"""`pip install .` gives a working install: console scripts that run outside the repo, with the
package data (model-card template, example photos) beside the installed code."""

from __future__ import annotations

import json
import os
import shutil
import site
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
    "emotion-lens-shortcuts": "training.shortcuts:main",
    "emotion-lens-demo": "training.demo:main",
    "emotion-lens-extract": "training.extract:main",
    "emotion-lens-label": "training.label.page:main",
    "emotion-lens-synthetic": "training.synthetic:main",
    "emotion-lens-push": "hub.push:main",
    "emotion-lens-space": "hub.space:main",
}

# Run inside the installed copy: where its data files are, and whether each script's main loads.
PROBE = """
import json
from importlib import metadata
import app.ui, emotion, hub.card
from emotion.storage.model_folder import SHIPPED_DEMO_DIR
eps = [ep for ep in metadata.distribution("emotion-lens").entry_points if ep.group == "console_scripts"]
print(json.dumps({
    "emotion": emotion.__file__,
    "template": str(hub.card.TEMPLATE), "template_exists": hub.card.TEMPLATE.is_file(),
    "examples": sorted(p.name for p in app.ui.EXAMPLES_DIR.iterdir()),
    "shipped": sorted(str(p.relative_to(SHIPPED_DEMO_DIR)) for p in SHIPPED_DEMO_DIR.rglob("*")
                      if p.is_file()),
    "shipped_dir": str(SHIPPED_DEMO_DIR),
    "scripts": {ep.name: ep.value for ep in eps},
    "loaded": {ep.name: callable(ep.load()) for ep in eps},
}))
"""


def can_build_wheels_offline() -> bool:
    """setuptools ≥ 70.1 builds wheels itself; older ones need the `wheel` package."""
    try:
        version = tuple(int(part) for part in metadata.version("setuptools").split(".")[:2])
    except metadata.PackageNotFoundError:
        return False
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


def venv_seeing_these_packages(venv: Path) -> Path:
    """A fresh venv that imports what this interpreter imports (torch, timm, gradio…) through a
    .pth file, behind its own site-packages; returns its python. `--system-site-packages` is not
    the same: inside a virtual environment it gives the base interpreter's packages, not the
    ones the tests run on."""
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    python = venv / "bin" / "python"
    venv_site = subprocess.run(
        [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        check=True, capture_output=True, text=True,
    ).stdout.strip()  # fmt: skip
    ours = [*site.getsitepackages(), *([site.getusersitepackages()] if site.ENABLE_USER_SITE else [])]
    Path(venv_site, "tests-running-interpreter.pth").write_text("\n".join(ours) + "\n")
    return python


@pytest.mark.slow
def test_pip_install_gives_console_scripts_that_work_outside_the_repo(tmp_path, untrained_folder):
    if not can_build_wheels_offline():
        pytest.skip(
            f"{sys.executable} has no setuptools ≥ 70.1, nor an older one with the `wheel` package: it "
            "cannot build a wheel offline (pip install 'setuptools>=70.1')"
        )
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}
    env.update(HF_HUB_OFFLINE="1", EMOTION_LENS_CACHE=str(tmp_path / "cache"))
    elsewhere = tmp_path / "elsewhere"  # not the repo: only the installed copy can be imported
    elsewhere.mkdir()
    # The wheel is built by the interpreter whose setuptools the guard above asked about, and
    # --no-index proves nothing is downloaded.
    source, dist = copy_source(tmp_path / "src"), tmp_path / "dist"
    offline = ["--quiet", "--no-cache-dir", "--no-index", "--no-deps"]
    build = [sys.executable, "-m", "pip", "wheel", *offline, "--no-build-isolation", "-w", str(dist)]
    run([*build, str(source)], elsewhere, env)
    (wheel,) = dist.glob("emotion_lens-*.whl")
    venv = tmp_path / "venv"
    python, bin_dir = venv_seeing_these_packages(venv), venv / "bin"
    # --ignore-installed: an editable install in the tests' own environment must not stand in.
    run([str(python), "-m", "pip", "install", *offline, "--ignore-installed", str(wheel)], elsewhere, env)

    probe = json.loads(run([str(python), "-c", PROBE], elsewhere, env).stdout)
    site = Path(probe["emotion"]).resolve().parents[1]
    assert site.is_relative_to(venv.resolve()), f"imported {probe['emotion']}, not the installed copy"
    assert Path(probe["template"]).resolve().is_relative_to(site) and probe["template_exists"]
    assert {"astronaut.jpg", "synthetic_sad.png"} <= set(probe["examples"])
    # The demo model ships inside the wheel, report and all, and the wheel stays small.
    assert Path(probe["shipped_dir"]).resolve().is_relative_to(site)
    assert {"model/config.json", "model/model.safetensors", "metrics.json", "report/report.json"} <= set(
        probe["shipped"]
    )
    # The model may add at most 12 MB to a wheel of about 0.5 MB without it.
    assert wheel.stat().st_size <= 12.5e6, f"the wheel is {wheel.stat().st_size / 1e6:.1f} MB"
    assert probe["scripts"] == SCRIPTS
    assert all(probe["loaded"].values()), probe["loaded"]
    assert all((bin_dir / name).is_file() for name in SCRIPTS)
    assert all((site / package / "__init__.py").is_file() for package in PACKAGES)

    helped = run([str(bin_dir / "emotion-lens"), "--help"], elsewhere, env)
    assert "explain" in helped.stdout and "video" in helped.stdout
    assert helped.stdout.startswith("usage: emotion-lens "), "usage names the command the user typed"

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

    # No --model and an empty cache: the installed copy's shipped demo model explains, untrained.
    shipped = run(
        [str(bin_dir / "emotion-lens"), "explain", str(photo), "--methods", "gradcam", "--json"],
        elsewhere,
        env,
    )
    answer = json.loads(shipped.stdout)
    assert answer["is_demo_model"] and answer["faces"][0]["methods"] == ["gradcam"]
    assert Path(probe["shipped_dir"]) in Path(answer["model"].split("(")[-1].rstrip(")")).parents
    assert not (tmp_path / "cache").exists() or not any((tmp_path / "cache").iterdir())
