"""Where an EmotionModel is read from and written to: model folders, run folders, Hub repos.

A model folder is `model.safetensors` + `config.json` in timm's Hub layout, so the same folder
loads here, in `timm.create_model("local-dir:…", pretrained=True)` and in
`transformers.pipeline("image-classification", model=folder)`. A run folder (`emotion.storage.runs`) is a
source too: its `model/` is read. Only safetensors weights are ever loaded; pickle checkpoints
can run code.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

from emotion.errors import ModelLoadError, UnsupportedArchitectureError
from emotion.labels import EMOTIONS
from emotion.model import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    EmotionModel,
    Preprocessing,
    build_model,
    resolve_precision,
)
from emotion.storage.files import write_folder_atomically
from emotion.storage.runs import RunFolder

CONFIG_NAME = "config.json"
WEIGHTS_NAME = "model.safetensors"
PICKLE_SUFFIXES = (".bin", ".pth", ".pt", ".ckpt", ".pkl")  # never loaded: they can run code
# Bumped whenever the recipe changes, so a user's cached build of an older recipe is not served.
DEMO_MODEL_NAME = "demo-synthetic-v4"
# The demo model as the project ships it, in the package like OpenCV's Haar cascade: a run
# folder (model/, metrics, plots, the shortcut report) written by `python -m training.demo --ship`.
SHIPPED_DEMO_DIR = Path(__file__).parents[1] / "demo_model"
_HUB_ID = re.compile(r"^(?:hf_hub:|hf-hub:)?([\w.\-]+/[\w.\-]+)(?:@([\w.\-/]+))?$")
_LOCAL_DIR = "local-dir:"  # timm's prefix for a folder, accepted here too
_LAYOUTS = (
    f"a model folder ({CONFIG_NAME} + {WEIGHTS_NAME}) or a run folder (config.yaml, metrics.json "
    f"and model/ holding {CONFIG_NAME} + {WEIGHTS_NAME}, as python -m training.train writes it)"
)


def cache_dir() -> Path:
    """Where Emotion Lens keeps the demo model; `EMOTION_LENS_CACHE` overrides the user cache."""
    root = os.environ.get("EMOTION_LENS_CACHE")
    if root:
        return Path(root)
    from platformdirs import user_cache_dir

    return Path(user_cache_dir("emotion-lens"))


def demo_model_dir() -> Path:
    """The folder of the synthetic-face demo model (built by `training.demo`)."""
    return cache_dir() / DEMO_MODEL_NAME


def shipped_demo_dir() -> Path:
    """The run folder of the demo model shipped in the package."""
    return SHIPPED_DEMO_DIR


def demo_run_folders(*, own: bool = False) -> tuple[Path, ...]:
    """The demo model's run folders in the order they are served: the one built into the cache,
    then (unless `own`) the one shipped in the package."""
    return (demo_model_dir(),) if own else (demo_model_dir(), shipped_demo_dir())


def is_shipped_demo(folder: str | Path) -> bool:
    """Whether a model folder is (inside) the shipped demo model's run folder."""
    return SHIPPED_DEMO_DIR.resolve() in Path(folder).resolve().parents


def load_model(
    source: str | Path | None = None, *, device: str = "cpu", precision: str = "auto"
) -> EmotionModel:
    """Load a model folder, a run folder (its `model/`) or a Hub repo (`user/name`,
    `user/name@rev`, `hf_hub:user/name`); `local-dir:PATH` names a folder as timm does.

    `None` loads the synthetic demo model: the one built into the cache by `python -m
    training.demo` if there is one, else the copy shipped in the package. Only safetensors
    weights are read.
    """
    if source is None:
        # Both are run folders (training.demo runs the training loop).
        folder = next(
            (RunFolder(run).model_dir for run in demo_run_folders()
             if (RunFolder(run).model_dir / WEIGHTS_NAME).is_file()),
            None,
        )  # fmt: skip
        if folder is None:
            raise ModelLoadError(
                f"No demo model: none built in {demo_model_dir()} and none shipped in "
                f"{shipped_demo_dir()}. Run `python -m training.demo` (about 4 minutes on 2 CPU cores)."
            )
        label = f"demo model ({folder})"
    else:
        folder, label = resolve_source(str(source))
    model = read_model_folder(folder, source_label=label)
    model.to(device)
    model.precision = resolve_precision(precision, model.device)
    return model


def save_model(
    model: EmotionModel, folder: str | Path, *, extra_files: dict[str, Path] | None = None
) -> Path:
    """Write `model` as a model folder, atomically: a crash leaves the old folder or none, never
    half of one. `extra_files` ({name in the folder: source path}) are copied beside it."""

    def fill(tmp: Path) -> None:
        state = {k: v.detach().cpu().contiguous() for k, v in model.net.state_dict().items()}
        save_file(state, tmp / WEIGHTS_NAME, metadata={"format": "pt"})
        (tmp / CONFIG_NAME).write_text(json.dumps(hub_config(model), indent=2) + "\n")
        for name, src in (extra_files or {}).items():
            shutil.copy2(src, tmp / name)

    folder = Path(folder)
    write_folder_atomically(folder, fill)
    return folder


def hub_config(model: EmotionModel) -> dict[str, Any]:
    """config.json in timm's Hub layout; no stale fields from a pretrained default.

    `model_args` holds what rebuilds the network besides the head (output_stride …), never
    num_classes: transformers' TimmWrapper passes both and fails on the duplicate.
    """
    size = model.preprocessing.input_size
    return {
        "architecture": model.architecture,
        "num_classes": len(model.labels),
        "num_features": int(getattr(model.net, "num_features", 0)) or None,
        "label_names": list(model.labels),
        "model_args": dict(model.model_args),
        "pretrained_cfg": {
            "input_size": [3, size, size],
            "fixed_input_size": False,
            "interpolation": "bilinear",
            # crop_pct 1.0: timm/transformers preprocessing of a face crop is then identity
            # resize + normalise, the same as ours.
            "crop_pct": 1.0,
            "crop_mode": "center",
            "mean": list(model.preprocessing.mean),
            "std": list(model.preprocessing.std),
            "first_conv": model.first_conv_name,
            "classifier": model.classifier_name,
        },
        "emotion_lens": dict(model.info),
    }


def resolve_source(source: str) -> tuple[Path, str]:
    """(local model folder, label for messages) of a source given as text: a path (model or run
    folder), `local-dir:PATH`, or a Hub id, downloaded into the Hub cache."""
    if source.startswith(_LOCAL_DIR):
        return _local_model_folder(Path(source[len(_LOCAL_DIR) :]).expanduser(), source)
    path = Path(source).expanduser()
    if path.exists():
        return _local_model_folder(path, str(path))
    match = _HUB_ID.match(source)
    if not match:
        raise ModelLoadError(
            f"Model source {source!r} is neither a model folder nor a Hub id: no such path. Give "
            f"{_LAYOUTS}, or 'user/name', 'user/name@revision', 'hf_hub:user/name'."
        )
    repo_id, revision = match.group(1), match.group(2)
    return _download(repo_id, revision), f"{repo_id}@{revision}" if revision else repo_id


def _local_model_folder(path: Path, label: str) -> tuple[Path, str]:
    run = RunFolder.holding(path)
    if run is not None:
        return run.model_dir, str(run.model_dir)
    if path.is_dir() and _has_model_files(path):
        return path, label  # what is missing or wrong in it, read_model_folder says
    run = RunFolder(path)
    if path.is_dir() and (run.config.is_file() or run.metrics.is_file() or run.checkpoints.is_dir()):
        raise ModelLoadError(
            f"{label} is a run folder without a model yet (no {run.model_dir.name}/{CONFIG_NAME}): "
            "the run writes it when it finishes. Let it finish, or resume a stopped one with "
            f"`python -m training.train --out {path} --resume`."
        )
    raise ModelLoadError(f"{label} is neither {_LAYOUTS}.")


def _has_model_files(folder: Path) -> bool:
    return any(
        p.name in (CONFIG_NAME, WEIGHTS_NAME) or p.name.endswith(PICKLE_SUFFIXES) for p in folder.iterdir()
    )


def _download(repo_id: str, revision: str | None) -> Path:
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import HfHubHTTPError, LocalEntryNotFoundError, RepositoryNotFoundError

    try:
        folder = snapshot_download(
            repo_id, revision=revision, allow_patterns=[CONFIG_NAME, WEIGHTS_NAME, "*.md"]
        )
    except RepositoryNotFoundError as err:
        raise ModelLoadError(
            f"No model {repo_id!r} on the Hub (or it is private: log in with `hf auth login` "
            "or set HF_TOKEN)."
        ) from err
    except LocalEntryNotFoundError as err:
        raise ModelLoadError(
            f"Cannot reach the Hub for {repo_id!r} and it is not in the local cache: "
            "connect, or download it once before using HF_HUB_OFFLINE=1."
        ) from err
    except HfHubHTTPError as err:
        raise ModelLoadError(f"The Hub refused {repo_id!r}@{revision or 'main'}: {err}") from err
    if not (Path(folder) / WEIGHTS_NAME).is_file():
        _refuse_repo_without_safetensors(repo_id, revision)
    return Path(folder)


def _refuse_repo_without_safetensors(repo_id: str, revision: str | None) -> None:
    # allow_patterns fetched only the config: list what the repo does hold.
    from huggingface_hub import HfApi
    from huggingface_hub.errors import HfHubHTTPError

    try:
        remote = HfApi().list_repo_files(repo_id, revision=revision)
    except (HfHubHTTPError, OSError):
        remote = []
    raise _no_weights_error(
        f"Hub repo {repo_id}@{revision or 'main'}", remote, then=f" and push {WEIGHTS_NAME}"
    )


def _no_weights_error(where: str, file_names: list[str], *, then: str = "") -> ModelLoadError:
    """No safetensors weights in `where`; names the pickle checkpoints it holds instead, if any,
    so the error says why they are not loaded rather than just "no weights"."""
    pickles = [name for name in file_names if name.endswith(PICKLE_SUFFIXES)]
    hint = (
        f" It holds {', '.join(pickles)}: pickle checkpoints are not loaded because they can run "
        f"code. Convert it with safetensors.torch.save_file{then}."
        if pickles
        else ""
    )
    return ModelLoadError(f"No {WEIGHTS_NAME} in {where}.{hint}")


def read_model_folder(folder: Path, *, source_label: str) -> EmotionModel:
    """The model in a model folder, on the CPU in eval mode; `source_label` names it in errors."""
    weights_path = folder / WEIGHTS_NAME
    if not weights_path.is_file():
        raise _no_weights_error(source_label, [p.name for p in folder.glob("*")])
    config = _read_config(folder / CONFIG_NAME, source_label)
    model = _build_from_config(config, source_label)
    state = load_file(weights_path)
    _check_head(model, state, source_label)
    missing, unexpected = model.net.load_state_dict(state, strict=False)
    if missing or unexpected:
        raise ModelLoadError(
            f"The weights in {source_label} do not fit {model.architecture}: missing "
            f"{missing[:3]}, unexpected {unexpected[:3]}. Is config.json's architecture right?"
        )
    model.source, model.folder = source_label, folder
    model.net.eval()
    return model


def _read_config(path: Path, source_label: str) -> dict[str, Any]:
    if not path.is_file():
        raise ModelLoadError(
            f"No {CONFIG_NAME} in {source_label}: it says which network and labels to build."
        )
    try:
        config = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ModelLoadError(f"{CONFIG_NAME} in {source_label} is not valid JSON: {err}.") from err
    if not isinstance(config, dict) or not config.get("architecture"):
        raise ModelLoadError(
            f"{CONFIG_NAME} in {source_label} has no architecture: it must name the timm network, "
            'e.g. "architecture": "resnet18".'
        )
    return config


def _build_from_config(config: dict[str, Any], source_label: str) -> EmotionModel:
    labels = _labels_from_config(config, source_label)
    pre_cfg = config.get("pretrained_cfg", {})
    size = pre_cfg.get("input_size", [3, 100, 100])
    # The labels decide the head; timm's own save_for_hf also writes num_classes here.
    model_args = {k: v for k, v in config.get("model_args", {}).items() if k != "num_classes"}
    try:
        return build_model(
            config["architecture"],
            labels=labels,
            drop_rate=0.0,
            preprocessing=Preprocessing(
                input_size=int(size[-1]),
                mean=tuple(pre_cfg.get("mean", IMAGENET_MEAN)),
                std=tuple(pre_cfg.get("std", IMAGENET_STD)),
            ),
            model_args=model_args,
            info=config.get("emotion_lens", {}),
        )
    except UnsupportedArchitectureError as err:
        raise ModelLoadError(f"{CONFIG_NAME} in {source_label}: {err}") from err


def _labels_from_config(config: dict[str, Any], source_label: str) -> tuple[str, ...]:
    labels = config.get("label_names") or config.get("pretrained_cfg", {}).get("label_names")
    if not labels:
        raise ModelLoadError(
            f"config.json in {source_label} has no label_names: an emotion model must name its "
            f"classes, e.g. {list(EMOTIONS)}."
        )
    num_classes = config.get("num_classes", len(labels))
    if num_classes != len(labels):
        raise ModelLoadError(
            f"config.json in {source_label} says num_classes={num_classes} but lists "
            f"{len(labels)} label_names: make them agree."
        )
    return tuple(labels)


def _check_head(model: EmotionModel, state: dict[str, torch.Tensor], source_label: str) -> None:
    head = state.get(f"{model.classifier_name}.weight")
    if head is not None and head.shape[0] != len(model.labels):
        raise ModelLoadError(
            f"The weights in {source_label} have a {head.shape[0]}-way head but config.json names "
            f"{len(model.labels)} labels ({', '.join(model.labels)}): the config does not match "
            "the weights."
        )
