"""`python -m hub.push RUN_OR_MODEL_DIR --repo USER/NAME`: publish a model in one commit.

Like timm's push_to_hf_hub: the model is saved into a temp folder with the same `save` used
locally, the card and plots are added, and `upload_folder` makes ONE commit. A README.md already on
the Hub at the target revision is left alone unless --overwrite-card (it may be hand-edited).
"""

from __future__ import annotations

import argparse
import logging
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from emotion.cli import command, program_name
from emotion.storage.files import write_file_atomically, write_folder_atomically
from hub.card import CardOptions, build_model_card, read_run
from hub.errors import check_token, hub_http_errors

log = logging.getLogger(__name__)

CARD_NAME = "README.md"


@dataclass(frozen=True)
class PushConfig:
    """What to publish where."""

    source: Path  # run folder or model folder
    repo_id: str  # USER/NAME
    revision: str = "main"  # branch to commit to (created from main if missing)
    tag: str | None = None  # tag put on the new commit
    private: bool = False  # visibility when the repo is created
    message: str = "Upload Emotion Lens model"
    overwrite_card: bool = False  # replace a README.md already on the Hub
    license: str = "apache-2.0"
    datasets: tuple[str, ...] = field(default_factory=tuple)


@dataclass(frozen=True)
class PushResult:
    commit_url: str | None
    files: tuple[str, ...]  # paths in the commit
    card_written: bool


def prepare_folder(cfg: PushConfig, out: Path, *, write_card: bool = True) -> tuple[str, ...]:
    """Write into `out` exactly the files that would be committed; return their names. Only
    reads the run folder: its plots are published as the run drew them."""
    from emotion.storage.model_folder import load_model, save_model

    run = read_run(cfg.source)
    model = load_model(run.model_dir, precision="fp32")
    save_model(model, out, extra_files=run.plots())  # the local save layout, atomically
    if write_card:
        card = build_model_card(
            run, model, CardOptions(repo_id=cfg.repo_id, license=cfg.license, datasets=cfg.datasets)
        )
        write_file_atomically(out / CARD_NAME, str(card).encode("utf-8"))
    return tuple(sorted(p.name for p in out.iterdir()))


def dry_run(cfg: PushConfig, out_dir: Path) -> tuple[str, ...]:
    """Write the folder that would be pushed to `out_dir` (replaced atomically); no network."""
    return write_folder_atomically(out_dir, lambda tmp: prepare_folder(cfg, tmp))


def card_exists(api, repo_id: str, revision: str) -> bool:
    return api.file_exists(repo_id, CARD_NAME, revision=revision)


def push(cfg: PushConfig) -> PushResult:
    """Create the repo (and branch) if needed and upload the model, card and plots in one commit."""
    from huggingface_hub import HfApi

    api = HfApi()
    check_token(api)
    with hub_http_errors(cfg.repo_id, f"Pushing to {cfg.repo_id}@{cfg.revision}"):
        api.create_repo(cfg.repo_id, private=cfg.private, exist_ok=True)
        if cfg.revision != "main":
            api.create_branch(cfg.repo_id, branch=cfg.revision, exist_ok=True)
        # A card on the Hub may have been edited by hand there: keep it unless asked not to.
        write_card = cfg.overwrite_card or not card_exists(api, cfg.repo_id, cfg.revision)
        if not write_card:
            log.warning(
                "%s already has a %s at %s: kept (pass --overwrite-card to replace it).",
                cfg.repo_id,
                CARD_NAME,
                cfg.revision,
            )
        with tempfile.TemporaryDirectory(prefix="emotion-push-") as tmp:
            folder = Path(tmp) / "folder"
            files = prepare_folder(cfg, folder, write_card=write_card)
            info = api.upload_folder(
                repo_id=cfg.repo_id,
                folder_path=folder,
                revision=cfg.revision,
                commit_message=cfg.message,
            )
        if cfg.tag:
            api.create_tag(cfg.repo_id, tag=cfg.tag, revision=info.oid, exist_ok=False)
    return PushResult(commit_url=info.commit_url, files=files, card_written=write_card)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=program_name("hub.push"), description=__doc__)
    p.add_argument("source", type=Path, help="run folder (training.train --out) or model folder")
    p.add_argument("--repo", required=True, help="USER/NAME on the Hub")
    p.add_argument("--revision", default="main", help="branch to commit to (created if missing)")
    p.add_argument("--tag", default=None, help="tag the new commit")
    p.add_argument("--private", action="store_true", help="create the repo private")
    p.add_argument("--message", default=PushConfig.message, help="commit message")
    p.add_argument("--overwrite-card", action="store_true", help="replace a README.md already on the Hub")
    p.add_argument("--license", default=PushConfig.license)
    p.add_argument("--dataset", action="append", default=[], help="Hub dataset id for the card (repeatable)")
    p.add_argument(
        "--dry-run", type=Path, default=None, metavar="OUT_DIR", help="write the folder, push nothing"
    )
    return p


@command
def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    args = build_parser().parse_args(argv)
    cfg = PushConfig(
        source=args.source,
        repo_id=args.repo,
        revision=args.revision,
        tag=args.tag,
        private=args.private,
        message=args.message,
        overwrite_card=args.overwrite_card,
        license=args.license,
        datasets=tuple(args.dataset),
    )
    if args.dry_run is not None:
        files = dry_run(cfg, args.dry_run)
        print(f"Dry run: {args.dry_run} holds what would be pushed: {', '.join(files)}")
        return 0
    result = push(cfg)
    card = "card written" if result.card_written else "existing card kept"
    print(f"Pushed {', '.join(result.files)} ({card}): {result.commit_url}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
