"""EmotionModel: a timm ResNet, its label names and its preprocessing, saved in the Hub layout.

A model folder is `model.safetensors` + `config.json` in timm's Hub layout, so the same folder
loads here, in `timm.create_model("local-dir:…", pretrained=True)` and in
`transformers.pipeline("image-classification", model=folder)`.
"""

from __future__ import annotations

import copy
import json
import logging
import os
import re
import shutil
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import timm
import torch
from safetensors.torch import load_file, save_file

from emotion.errors import ModelLoadError
from emotion.files import write_folder_atomically
from emotion.labels import EMOTIONS

log = logging.getLogger(__name__)

CONFIG_NAME = "config.json"
WEIGHTS_NAME = "model.safetensors"
PICKLE_SUFFIXES = (".bin", ".pth", ".pt", ".ckpt", ".pkl")  # never loaded: they can run code
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
# Stride 16 instead of 32 (layer4 dilated): at 100×100 the last block then gives a 7×7 map instead
# of 4×4, fine enough to tell brows from eyes from mouth, and Grad-CAM there still needs no extra
# backward pass because the head is global-average-pool + linear.
DEFAULT_MODEL_ARGS: dict[str, Any] = {"output_stride": 16}
DEMO_MODEL_NAME = "demo-synthetic-v1"
_HUB_ID = re.compile(r"^(?:hf_hub:|hf-hub:)?([\w.\-]+/[\w.\-]+)(?:@([\w.\-/]+))?$")


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


@dataclass(frozen=True)
class Preprocessing:
    """What a face goes through before the network; stored in config.json's pretrained_cfg."""

    input_size: int = 100  # square side the network reads
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD


@dataclass
class EmotionModel:
    """A classifier over faces with its label names; call `predict` on uint8 RGB faces."""

    net: torch.nn.Module
    labels: tuple[str, ...]
    architecture: str
    preprocessing: Preprocessing = field(default_factory=Preprocessing)
    model_args: dict[str, Any] = field(default_factory=dict)
    info: dict[str, Any] = field(default_factory=dict)  # provenance: demo flag, training data …
    source: str = "in memory"
    precision: str = "fp32"  # "fp32" or "bf16" (autocast; AMX on this CPU, tensor cores on GPU)

    def __post_init__(self) -> None:
        self.net.eval()
        mean = torch.tensor(self.preprocessing.mean).view(1, 3, 1, 1)
        std = torch.tensor(self.preprocessing.std).view(1, 3, 1, 1)
        self._scale = (1.0 / (255.0 * std)).to(self.device)
        self._shift = (mean / std).to(self.device)
        self._folded: tuple[int, torch.nn.Module] | None = None

    @property
    def inference_net(self) -> torch.nn.Module:
        """`net` with every BatchNorm folded into its convolution: the same function (to float
        rounding) with one memory pass less per layer, about 15 % faster here.

        A copy, so `net` can still be trained, saved and hooked. It is rebuilt whenever `net`'s
        weights change (an optimizer step or load_state_dict bumps the tensors' version
        counters), so a validation pass in the middle of training never sees stale weights.
        """
        if self.net.training:
            return self.net
        version = sum(t._version for t in (*self.net.parameters(), *self.net.buffers()))
        if self._folded is None or self._folded[0] != version:
            self._folded = (version, fold_batchnorms(copy.deepcopy(self.net)))
        return self._folded[1]

    @property
    def device(self) -> torch.device:
        return next(self.net.parameters()).device

    @property
    def is_demo(self) -> bool:
        return bool(self.info.get("demo", False))

    @property
    def cam_layer(self) -> torch.nn.Module:
        """The block Grad-CAM reads: the last stage, whose output the pooled head sums up."""
        return self.net.layer4

    @property
    def cam_layer_name(self) -> str:
        return "layer4"

    def to(self, device: str | torch.device) -> EmotionModel:
        self.net.to(device)
        self.__post_init__()
        return self

    @property
    def has_pooled_linear_head(self) -> bool:
        """True when `cam_layer`'s output goes straight into global average pooling + one linear
        layer, so a class's Grad-CAM there is its weight row applied to the block's output."""
        from timm.models.resnet import ResNet

        # timm's ResNet.forward_features ends with layer4 and forward_head is pool → dropout → fc.
        return (
            isinstance(self.net, ResNet)
            and getattr(self.net.global_pool, "pool_type", None) == "avg"
            and isinstance(self.net.fc, torch.nn.Linear)
        )

    def autocast(self):
        """bf16 autocast when the model is set to bf16, else a no-op context."""
        if self.precision != "bf16":
            return nullcontext()
        return torch.autocast(self.device.type, dtype=torch.bfloat16)

    def to_tensor(self, faces: np.ndarray) -> torch.Tensor:
        """N×H×W×3 (or H×W×3) uint8 RGB faces → normalised N×3×S×S float tensor."""
        arr = np.asarray(faces)
        if arr.ndim == 3:
            arr = arr[None]
        arr = np.ascontiguousarray(arr)
        if not arr.flags.writeable:  # torch.from_numpy warns on read-only views (decoded images)
            arr = arr.copy()
        return self.to_tensor_from_uint8(torch.from_numpy(arr).permute(0, 3, 1, 2))

    def to_tensor_from_uint8(self, x: torch.Tensor) -> torch.Tensor:
        """N×3×H×W uint8 tensor → normalised float tensor at the input size, on the model's device."""
        x = x.to(self.device, non_blocking=True).float()
        size = self.preprocessing.input_size
        if x.shape[-2:] != (size, size):
            x = torch.nn.functional.interpolate(x, size=(size, size), mode="bilinear", antialias=True)
        x = x * self._scale - self._shift
        return x.contiguous(memory_format=torch.channels_last)

    @torch.inference_mode()
    def predict(self, faces: np.ndarray, batch_size: int = 256) -> np.ndarray:
        """Class probabilities, N×C float32, columns in `self.labels` order."""
        arr = np.asarray(faces)
        single = arr.ndim == 3
        arr = arr[None] if single else arr
        out = []
        for start in range(0, len(arr), batch_size):
            with self.autocast():
                logits = self.inference_net(self.to_tensor(arr[start : start + batch_size]))
            out.append(torch.softmax(logits.float(), dim=1).cpu().numpy())
        probs = np.concatenate(out) if out else np.zeros((0, len(self.labels)), np.float32)
        return probs[0] if single else probs

    @torch.inference_mode()
    def predict_with_features(self, faces: np.ndarray) -> tuple[np.ndarray, torch.Tensor]:
        """(N×C probabilities, N×K×h×w float32 output of the last block) from one forward pass:
        what Grad-CAM at the last block needs besides the head's weights."""
        net = self.inference_net
        with self.autocast():
            features = net.forward_features(self.to_tensor(faces))
            logits = net.forward_head(features)
        return torch.softmax(logits.float(), dim=1).cpu().numpy(), features.float()

    def warm_up(self, batch_sizes: tuple[int, ...] = (1,)) -> None:
        """Throw-away predictions at each batch size, so the first request does not pay for lazy
        set-up (folding BatchNorm, oneDNN's kernels, which are chosen per input shape)."""
        size = self.preprocessing.input_size
        for n in batch_sizes:
            self.predict_with_features(np.zeros((n, size, size, 3), dtype=np.uint8))

    def save(self, folder: str | Path, *, extra_files: dict[str, Path] | None = None) -> Path:
        """Write the model folder atomically: a crash leaves the old folder or none, never half."""

        def fill(tmp: Path) -> None:
            state = {k: v.detach().cpu().contiguous() for k, v in self.net.state_dict().items()}
            save_file(state, tmp / WEIGHTS_NAME, metadata={"format": "pt"})
            (tmp / CONFIG_NAME).write_text(json.dumps(self.hub_config(), indent=2) + "\n")
            for name, src in (extra_files or {}).items():
                shutil.copy2(src, tmp / name)

        folder = Path(folder)
        write_folder_atomically(folder, fill)
        return folder

    def hub_config(self) -> dict[str, Any]:
        """config.json in timm's Hub layout; no stale fields from a pretrained default."""
        size = self.preprocessing.input_size
        return {
            "architecture": self.architecture,
            "num_classes": len(self.labels),
            "num_features": int(getattr(self.net, "num_features", 0)) or None,
            "label_names": list(self.labels),
            "model_args": dict(self.model_args),
            "pretrained_cfg": {
                "input_size": [3, size, size],
                "fixed_input_size": False,
                "interpolation": "bilinear",
                # crop_pct 1.0: timm/transformers preprocessing of a face crop is then identity
                # resize + normalise, the same as ours.
                "crop_pct": 1.0,
                "crop_mode": "center",
                "mean": list(self.preprocessing.mean),
                "std": list(self.preprocessing.std),
                "first_conv": "conv1",
                "classifier": "fc",
            },
            "emotion_lens": dict(self.info),
        }


def fold_batchnorms(net: torch.nn.Module) -> torch.nn.Module:
    """Fold each eval-mode BatchNorm2d into the Conv2d just before it, in place; returns `net`.

    Covers timm ResNets' `convN`/`bnN` pairs and `Sequential` stems and shortcuts; any other
    layout is left as it is, which is slower but still correct.
    """
    from torch.nn.utils.fusion import fuse_conv_bn_eval

    for module in list(net.modules()):
        if isinstance(module, torch.nn.Sequential):
            children = list(module.named_children())
            for (a, conv), (b, bn) in zip(children, children[1:], strict=False):
                if isinstance(conv, torch.nn.Conv2d) and isinstance(bn, torch.nn.BatchNorm2d):
                    setattr(module, a, fuse_conv_bn_eval(conv, bn))
                    setattr(module, b, torch.nn.Identity())
        for i in range(1, 4):
            conv, bn = getattr(module, f"conv{i}", None), getattr(module, f"bn{i}", None)
            if isinstance(conv, torch.nn.Conv2d) and isinstance(bn, torch.nn.BatchNorm2d):
                setattr(module, f"conv{i}", fuse_conv_bn_eval(conv, bn))
                setattr(module, f"bn{i}", torch.nn.Identity())
    return net


def build_model(
    architecture: str = "resnet18",
    *,
    labels: tuple[str, ...] = EMOTIONS,
    drop_rate: float = 0.3,
    pretrained: bool = False,
    preprocessing: Preprocessing | None = None,
    model_args: dict[str, Any] | None = None,
    info: dict[str, Any] | None = None,
) -> EmotionModel:
    """A fresh timm ResNet with a `len(labels)`-way head (dropout before it: the seed's fix)."""
    if not architecture.startswith(("resnet", "resnext", "seresnet", "wide_resnet")):
        raise ValueError(
            f"{architecture!r} is not a timm ResNet: use e.g. 'resnet18', 'resnet34', 'resnet50'."
        )
    if architecture not in timm.list_models():
        raise ValueError(f"timm has no model {architecture!r}: see timm.list_models('resnet*').")
    args = dict(DEFAULT_MODEL_ARGS if model_args is None else model_args)
    net = timm.create_model(
        architecture, pretrained=pretrained, num_classes=len(labels), drop_rate=drop_rate, **args
    )
    return EmotionModel(
        net=net.to(memory_format=torch.channels_last),
        labels=tuple(labels),
        architecture=architecture,
        preprocessing=preprocessing or Preprocessing(),
        model_args=args,
        info=dict(info or {}),
    )


def load_model(
    source: str | Path | None = None, *, device: str = "cpu", precision: str = "auto"
) -> EmotionModel:
    """Load a model folder or a Hub repo (`user/name`, `user/name@rev`, `hf_hub:user/name`).

    `None` loads the synthetic demo model from the cache (build it with `python -m training.demo`
    or by starting `python -m app`). Only safetensors weights are read.
    """
    if source is None:
        folder = demo_model_dir()
        if not (folder / WEIGHTS_NAME).is_file():
            raise ModelLoadError(
                f"The demo model is not built yet (looked in {folder}). Run `python -m training.demo` "
                "(about 3 minutes on 2 CPU cores) or start `python -m app`, which builds it."
            )
        label = f"demo model ({folder})"
    else:
        folder, label = _resolve_source(str(source))
    model = _load_folder(folder, source_label=label)
    model.to(device)
    model.precision = resolve_precision(precision, model.device)
    return model


def resolve_precision(precision: str, device: torch.device) -> str:
    if precision not in ("auto", "fp32", "bf16"):
        raise ValueError(f"precision must be 'auto', 'fp32' or 'bf16', not {precision!r}.")
    if precision != "auto":
        return precision
    if device.type == "cuda":
        return "bf16" if torch.cuda.is_bf16_supported() else "fp32"
    # Without AMX or AVX512-BF16, bf16 on CPU is emulated and slower than fp32.
    return "bf16" if _cpu_has_fast_bf16() else "fp32"


def _cpu_has_fast_bf16() -> bool:
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return "amx_bf16" in flags or "avx512_bf16" in flags


def _resolve_source(source: str) -> tuple[Path, str]:
    path = Path(source).expanduser()
    if path.is_dir():
        return path, str(path)
    if source.startswith("local-dir:"):
        return Path(source[len("local-dir:") :]), source
    match = _HUB_ID.match(source)
    if not match or path.exists():
        raise ModelLoadError(
            f"Model source {source!r} is neither a model folder nor a Hub id. Give a folder with "
            "config.json + model.safetensors, or 'user/name', 'user/name@revision', 'hf_hub:user/name'."
        )
    repo_id, revision = match.group(1), match.group(2)
    return _download(repo_id, revision), f"{repo_id}@{revision}" if revision else repo_id


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


def _load_folder(folder: Path, *, source_label: str) -> EmotionModel:
    config_path, weights_path = folder / CONFIG_NAME, folder / WEIGHTS_NAME
    if not weights_path.is_file():
        raise _no_weights_error(source_label, [p.name for p in folder.glob("*")])
    if not config_path.is_file():
        raise ModelLoadError(
            f"No {CONFIG_NAME} in {source_label}: it says which network and labels to build."
        )
    config = json.loads(config_path.read_text())
    labels = _labels_from_config(config, source_label)
    pre_cfg = config.get("pretrained_cfg", {})
    size = pre_cfg.get("input_size", [3, 100, 100])
    model = build_model(
        config["architecture"],
        labels=labels,
        drop_rate=0.0,
        preprocessing=Preprocessing(
            input_size=int(size[-1]),
            mean=tuple(pre_cfg.get("mean", IMAGENET_MEAN)),
            std=tuple(pre_cfg.get("std", IMAGENET_STD)),
        ),
        model_args=config.get("model_args", {}),
        info=config.get("emotion_lens", {}),
    )
    state = load_file(weights_path)
    _check_head(state, labels, source_label)
    missing, unexpected = model.net.load_state_dict(state, strict=False)
    if missing or unexpected:
        raise ModelLoadError(
            f"The weights in {source_label} do not fit {config['architecture']}: missing "
            f"{missing[:3]}, unexpected {unexpected[:3]}. Is config.json's architecture right?"
        )
    model.source = source_label
    model.net.eval()
    return model


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


def _check_head(state: dict[str, torch.Tensor], labels: tuple[str, ...], source_label: str) -> None:
    head = state.get("fc.weight")
    if head is not None and head.shape[0] != len(labels):
        raise ModelLoadError(
            f"The weights in {source_label} have a {head.shape[0]}-way head but config.json names "
            f"{len(labels)} labels ({', '.join(labels)}): the config does not match the weights."
        )
