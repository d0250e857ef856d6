"""`python -m hub.space --repo USER/SPACE --model USER/NAME`: the demo as a Gradio Space, one command.

The Space gets the app and the `emotion` core (what `python -m app --model …` imports; `training`
is only imported without a model, and the Space always pins one), pinned requirements, a README
with the Spaces front matter, and an entry file that runs the same `app.__main__.main`.
"""

from __future__ import annotations

import argparse
import logging
import shutil
import sys
import tempfile
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

from emotion.cli import command, program_name
from emotion.storage.files import write_folder_atomically
from emotion.storage.model_folder import SHIPPED_DEMO_DIR
from hub.errors import check_token, hub_http_errors

log = logging.getLogger(__name__)

ROOT = Path(__file__).resolve().parents[1]
ENTRY_FILE = "space_app.py"  # not app.py: that name would sit beside the app/ package it imports
PACKAGES = ("emotion", "app")  # what the app imports when a model is given
# Distributions the Space installs, pinned to what this checkout runs with (gradio comes from sdk_version).
REQUIREMENTS = (
    "torch",
    "timm",
    "safetensors",
    "huggingface_hub",
    "opencv-python-headless",
    "lime",
    "grad-cam",
    "scikit-image",
    "scipy",
    "numpy",
    "pillow",
    "matplotlib",
    "platformdirs",
)

ENTRY_TEMPLATE = '''"""Hugging Face Space entry: the Emotion Lens demo serving {model}."""

import os
import sys
from pathlib import Path

# `python {entry}` puts this folder on sys.path already; be explicit for runners that do not.
sys.path.insert(0, str(Path(__file__).resolve().parent))
# Spaces route traffic to 0.0.0.0:7860; GRADIO_SERVER_PORT / GRADIO_SERVER_NAME override both.
os.environ.setdefault("EMOTION_MODEL", {model!r})
os.environ.setdefault("GRADIO_SERVER_NAME", "0.0.0.0")
os.environ.setdefault("GRADIO_SERVER_PORT", "7860")

from app.__main__ import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main([]))
'''


@dataclass(frozen=True)
class SpaceConfig:
    """Which Space to deploy, serving which model."""

    repo_id: str  # USER/SPACE
    model: str  # USER/NAME[@rev] the Space serves
    hardware: str | None = None  # e.g. "cpu-basic"; None keeps the Space's current hardware
    private: bool = False
    message: str = "Deploy Emotion Lens demo"


def requirements() -> str:
    """requirements.txt pinned to the versions installed here (known to work together)."""
    lines = []
    for dist in REQUIREMENTS:
        try:
            lines.append(f"{dist}=={metadata.version(dist)}")
        except metadata.PackageNotFoundError:
            lines.append(dist)
    return "\n".join(lines) + "\n"


def space_readme(cfg: SpaceConfig) -> str:
    import gradio
    from huggingface_hub import SpaceCard, SpaceCardData

    model_id = cfg.model.split("@")[0].removeprefix("hf_hub:")
    data = SpaceCardData(
        title="Emotion Lens",
        sdk="gradio",
        sdk_version=gradio.__version__,
        app_file=ENTRY_FILE,
        python_version=f"{sys.version_info.major}.{sys.version_info.minor}",
        models=[model_id],
        license="apache-2.0",
        tags=["emotion-recognition", "grad-cam", "lime"],
        emoji="🔍",
        colorFrom="indigo",
        colorTo="pink",
        pinned=False,
    )
    body = (
        f"\n# Emotion Lens\n\nRecognises happy, sad, neutral, angry and surprised faces with "
        f"[{model_id}](https://huggingface.co/{model_id}) and shows, for each emotion, what the "
        "network looked at (Grad-CAM and LIME).\n\nEmotion recognition from faces is unreliable across "
        "people and cultures and is legally restricted in some settings (e.g. workplaces and schools in "
        "the EU). Read the model card's limitations before relying on it.\n"
    )
    return str(SpaceCard.from_template(data, template_str="---\n{{ card_data }}\n---\n" + body))


def prepare_folder(cfg: SpaceConfig, out: Path) -> tuple[str, ...]:
    """Write the Space repo's content to `out`."""
    out.mkdir(parents=True, exist_ok=True)
    # The Space serves cfg.model: the shipped demo model would be 10 MB uploaded for nothing.
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", ".*", SHIPPED_DEMO_DIR.name)
    for package in PACKAGES:
        shutil.copytree(ROOT / package, out / package, ignore=ignore)
    (out / ENTRY_FILE).write_text(ENTRY_TEMPLATE.format(model=cfg.model, entry=ENTRY_FILE))
    (out / "requirements.txt").write_text(requirements())
    (out / "README.md").write_text(space_readme(cfg), encoding="utf-8")
    return tuple(sorted(str(p.relative_to(out)) for p in out.rglob("*") if p.is_file()))


def deploy(cfg: SpaceConfig) -> str:
    """Create (or update) the Space in one commit; set its hardware; return the commit URL."""
    from huggingface_hub import HfApi

    api = HfApi()
    check_token(api)
    with hub_http_errors(f"Space {cfg.repo_id}", f"Deploying Space {cfg.repo_id}"):
        url = api.create_repo(
            cfg.repo_id,
            repo_type="space",
            space_sdk="gradio",
            space_hardware=cfg.hardware,
            private=cfg.private,
            exist_ok=True,
        )
        with tempfile.TemporaryDirectory(prefix="emotion-space-") as tmp:
            folder = Path(tmp) / "space"
            prepare_folder(cfg, folder)
            info = api.upload_folder(
                repo_id=cfg.repo_id, repo_type="space", folder_path=folder, commit_message=cfg.message
            )
        # create_repo only applies the hardware to a new Space; ask again for an existing one.
        if cfg.hardware:
            api.request_space_hardware(cfg.repo_id, hardware=cfg.hardware)
    log.info("Space %s: %s", url, info.commit_url)
    return info.commit_url


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=program_name("hub.space"), description=__doc__)
    p.add_argument("--repo", required=True, help="USER/SPACE")
    p.add_argument("--model", required=True, help="USER/NAME[@rev] the Space serves")
    p.add_argument("--hardware", default=None, help="e.g. cpu-basic, cpu-upgrade, t4-small")
    p.add_argument("--private", action="store_true")
    p.add_argument("--message", default=SpaceConfig.message)
    p.add_argument(
        "--dry-run", type=Path, default=None, metavar="OUT_DIR", help="write the Space folder only"
    )
    return p


@command
def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    args = build_parser().parse_args(argv)
    cfg = SpaceConfig(
        repo_id=args.repo,
        model=args.model,
        hardware=args.hardware,
        private=args.private,
        message=args.message,
    )
    if args.dry_run is not None:
        write_folder_atomically(args.dry_run, lambda tmp: prepare_folder(cfg, tmp))
        print(f"Dry run: Space folder written to {args.dry_run}")
        return 0
    url = deploy(cfg)
    print(f"Space {cfg.repo_id} deployed: {url}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
