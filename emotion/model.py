"""EmotionModel: a timm ResNet, its label names and its preprocessing; the network side.

Layer and head names come from timm itself (`feature_info`, `get_classifier()`, `pretrained_cfg`),
so a deep-stem `resnet18d` or a `seresnext26d_32x4d` is handled like a `resnet18`. Reading and
writing model folders and Hub repos lives in `emotion.storage.model_folder`, which builds on this
module and is never imported by it, as timm keeps `_hub.py` apart from `resnet.py`.
"""

from __future__ import annotations

import copy
import math
import statistics
import time
from contextlib import nullcontext
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np
import timm
import torch
from torch import nn

from emotion.errors import UnsupportedArchitectureError
from emotion.labels import EMOTIONS

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
# Stride 16 instead of 32 (layer4 dilated): at 100×100 the last block then gives a 7×7 map instead
# of 4×4, fine enough to tell brows from eyes from mouth, and Grad-CAM there still needs no extra
# backward pass because the head is global-average-pool + linear.
DEFAULT_MODEL_ARGS: dict[str, Any] = {"output_stride": 16}
# The default Grad-CAM reads the deepest stage at this stride: its cells are about 8 px apart on
# a 100-px face, fine enough to tell a brow from an eye (see `emotion.explainers.gradcam`).
GRADCAM_MAX_STRIDE = 8

# timm's `ResNet` class (timm/models/resnet.py): its last stage feeds global-average-pool + one
# linear layer (so Grad-CAM needs no backward pass), and its conv → BatchNorm pairs are the ones
# `fold_batchnorms` knows. Every family here builds with output_stride=16 (checked in tests).
SUPPORTED_FAMILIES = ("resnet*", "resnext*", "seresnet*", "seresnext*", "ecaresnet*", "wide_resnet*")
# The anti-aliased variants (resnetaa50, seresnextaa101d_32x8d, …) downsample with a floor-mode
# average pool while their shortcut rounds up, so a 100×100 face fails inside layer2.
_EXCLUDED = ("*aa*",)
# build_model sets these itself; in model_args they would clash (timm's save_for_hf writes
# num_classes there, which transformers' TimmWrapper then refuses).
_OWN_ARGS = ("num_classes", "drop_rate", "pretrained")


@cache
def supported_architectures() -> tuple[str, ...]:
    """The timm model names `build_model` accepts, e.g. resnet18, resnet18d, resnet50, resnext50_32x4d."""
    return tuple(timm.list_models(SUPPORTED_FAMILIES, module="resnet", exclude_filters=_EXCLUDED))


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
    folder: Path | None = None  # the local model folder it was read from (a Hub model's: its snapshot)
    precision: str = "fp32"  # "fp32" or "bf16" (autocast; AMX on this CPU, tensor cores on GPU)

    def __post_init__(self) -> None:
        self.net.eval()
        mean = torch.tensor(self.preprocessing.mean).view(1, 3, 1, 1)
        std = torch.tensor(self.preprocessing.std).view(1, 3, 1, 1)
        self._scale = (1.0 / (255.0 * std)).to(self.device)
        self._shift = (mean / std).to(self.device)
        self._folded: tuple[int, torch.nn.Module] | None = None
        # Batches of at most this many faces run in fp32 even when `precision` is bf16: set by
        # `warm_up`, which times both (bf16 pays a conversion per layer that a batch of one face
        # does not earn back on some CPUs).
        self.fp32_up_to = 0

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
    def last_stage_layer_name(self) -> str:
        """The module the last-stage Grad-CAM reads (video frames, the training report): the last
        stage in timm's `feature_info`, whose output the pooled head sums up (`layer4` in timm's
        ResNets)."""
        return self.net.feature_info[-1]["module"]

    @property
    def gradcam_layer_name(self) -> str:
        """The module the default Grad-CAM reads: the deepest stage in timm's `feature_info` at
        stride `GRADCAM_MAX_STRIDE` or finer (`layer2` in timm's ResNets at output_stride 16). Why
        not the last stage: `emotion.explainers.gradcam`'s docstring."""
        return self._gradcam_stage["module"]

    @property
    def gradcam_stride(self) -> int:
        return int(self._gradcam_stage["reduction"])

    @property
    def gradcam_grid(self) -> tuple[int, int]:
        """(rows, columns) of `gradcam_layer_name`'s output at the input size: 13×13 at 100×100."""
        return self._grid_at(self.gradcam_stride)

    @property
    def _gradcam_stage(self) -> dict[str, Any]:
        return [f for f in self.net.feature_info if f["reduction"] <= GRADCAM_MAX_STRIDE][-1]

    @property
    def last_stage_layer(self) -> torch.nn.Module:
        return self.net.get_submodule(self.last_stage_layer_name)

    @property
    def output_stride(self) -> int:
        """How many input pixels one cell of the last stage's grid spans (16 with DEFAULT_MODEL_ARGS)."""
        return int(self.net.feature_info[-1]["reduction"])

    @property
    def last_stage_grid(self) -> tuple[int, int]:
        """(rows, columns) of the last stage's output at the input size: 7×7 at 100×100, stride
        16. Every downsampling in the supported ResNets pads to "same" and so rounds up, which makes
        this ceil(size / stride) without running the network (checked against a forward in tests)."""
        return self._grid_at(self.output_stride)

    def _grid_at(self, stride: int) -> tuple[int, int]:
        side = math.ceil(self.preprocessing.input_size / stride)
        return side, side

    @property
    def classifier_name(self) -> str:
        """The head's module name from timm's pretrained_cfg (`fc` in timm's ResNets)."""
        return self.net.pretrained_cfg["classifier"]

    @property
    def first_conv_name(self) -> str:
        """The first convolution's module name from timm's pretrained_cfg (`conv1.0` for a deep stem)."""
        return self.net.pretrained_cfg["first_conv"]

    @property
    def head_weight(self) -> torch.Tensor:
        """The classifier's C×K weight, rows in `labels` order: with a pooled linear head, row c
        applied to the cam layer's output is class c's Grad-CAM (up to the 1/(h·w) of the pool)."""
        return self.net.get_classifier().weight

    @property
    def has_pooled_linear_head(self) -> bool:
        """True when `last_stage_layer`'s output goes straight into global average pooling + one linear
        layer, so a class's Grad-CAM there is its weight row applied to the block's output."""
        from timm.models.resnet import ResNet

        # timm's ResNet.forward_features ends with its last stage and forward_head is
        # pool → dropout → classifier; the pool and the classifier are what the config chose.
        return (
            isinstance(self.net, ResNet)
            and getattr(self.net.global_pool, "pool_type", None) == "avg"
            and type(self.net.get_classifier()) is nn.Linear
        )

    def to(self, device: str | torch.device) -> EmotionModel:
        self.net.to(device)
        self.__post_init__()
        return self

    def autocast(self, batch_size: int | None = None):
        """bf16 autocast when the model is set to bf16 (and a batch of `batch_size` faces is
        not one `warm_up` found faster in fp32), else a no-op context."""
        if self.precision_for(batch_size) != "bf16":
            return nullcontext()
        return torch.autocast(self.device.type, dtype=torch.bfloat16)

    def precision_for(self, batch_size: int | None = None) -> str:
        """The precision a forward of `batch_size` faces runs in (None: `precision`)."""
        if batch_size is not None and batch_size <= self.fp32_up_to:
            return "fp32"
        return self.precision

    def to_tensor(self, faces: np.ndarray) -> torch.Tensor:
        """N×H×W×3 (or H×W×3) uint8 RGB faces → normalised N×3×S×S float tensor."""
        return self.to_tensor_from_uint8(self._uint8_batch(faces))

    @staticmethod
    def _uint8_batch(faces: np.ndarray) -> torch.Tensor:
        """N×H×W×3 (or H×W×3) uint8 array → N×3×H×W uint8 tensor viewing it (channels last)."""
        arr = np.asarray(faces)
        if arr.ndim == 3:
            arr = arr[None]
        arr = np.ascontiguousarray(arr)
        if not arr.flags.writeable:  # torch.from_numpy warns on read-only views (decoded images)
            arr = arr.copy()
        return torch.from_numpy(arr).permute(0, 3, 1, 2)

    def to_tensor_from_uint8(self, x: torch.Tensor) -> torch.Tensor:
        """N×3×H×W uint8 tensor → normalised float tensor at the input size, on the model's device."""
        x = x.to(self.device, non_blocking=True).float()
        size = self.preprocessing.input_size
        if x.shape[-2:] != (size, size):
            x = torch.nn.functional.interpolate(x, size=(size, size), mode="bilinear", antialias=True)
        x = x * self._scale - self._shift
        return x.contiguous(memory_format=torch.channels_last)

    @torch.inference_mode()
    def probabilities(self, faces: torch.Tensor) -> torch.Tensor:
        """N×C float32 class probabilities of N×3×H×W uint8 faces (any strides), left on the
        model's device: for callers that keep their work there, such as LIME's fits."""
        with self.autocast(len(faces)):
            logits = self.inference_net(self.to_tensor_from_uint8(faces))
        return torch.softmax(logits.float(), dim=1)

    @torch.inference_mode()
    def predict(self, faces: np.ndarray, batch_size: int = 256) -> np.ndarray:
        """Class probabilities, N×C float32, columns in `self.labels` order."""
        arr = np.asarray(faces)
        single = arr.ndim == 3
        arr = arr[None] if single else arr
        out = []
        for start in range(0, len(arr), batch_size):
            batch = self._uint8_batch(arr[start : start + batch_size])
            out.append(self.probabilities(batch).cpu().numpy())
        probs = np.concatenate(out) if out else np.zeros((0, len(self.labels)), np.float32)
        return probs[0] if single else probs

    @torch.inference_mode()
    def predict_with_features(self, faces: np.ndarray) -> tuple[np.ndarray, torch.Tensor]:
        """(N×C probabilities, N×K×h×w float32 output of the last block) from one forward pass:
        what Grad-CAM at the last block needs besides the head's weights."""
        net = self.inference_net
        with self.autocast(len(faces) if np.ndim(faces) == 4 else 1):
            features = net.forward_features(self.to_tensor(faces))
            logits = net.forward_head(features)
        return torch.softmax(logits.float(), dim=1).cpu().numpy(), features.float()

    def warm_up(self, batch_sizes: tuple[int, ...] = (1,)) -> None:
        """Throw-away predictions at each batch size, so the first request does not pay for lazy
        set-up (folding BatchNorm, oneDNN's kernels, which are chosen per input shape). A bf16
        model also times small batches in both precisions and runs in fp32 those that fp32 does
        faster (`fp32_up_to`)."""
        size = self.preprocessing.input_size
        if self.precision == "bf16":
            self.fp32_up_to = self._fp32_faster_up_to(SMALL_BATCHES)
        for n in batch_sizes:
            self.predict_with_features(np.zeros((n, size, size, 3), dtype=np.uint8))

    def _fp32_faster_up_to(self, sizes: tuple[int, ...], repeats: int = 5) -> int:
        """The largest of `sizes` (increasing) up to which every batch size runs faster in fp32
        than in bf16, by the median of `repeats` timed forwards each; 0 if batch 1 does not."""
        size = self.preprocessing.input_size
        faster = 0
        for n in sizes:
            faces = torch.zeros((n, 3, size, size), dtype=torch.uint8, device=self.device)
            times = {}
            for precision, fp32_up_to in (("fp32", n), ("bf16", 0)):
                self.fp32_up_to = fp32_up_to
                self.probabilities(faces)  # oneDNN picks its kernels for the shape
                times[precision] = _median_seconds(self.probabilities, faces, repeats)
            if times["fp32"] >= times["bf16"]:
                break
            faster = n
        self.fp32_up_to = faster
        return faster


def fold_batchnorms(net: torch.nn.Module) -> torch.nn.Module:
    """Fold each eval-mode plain BatchNorm2d into the Conv2d just before it, in place; returns `net`.

    Pairs are found where timm's ResNets put them: `convN`/`bnN` attributes (a deep stem's `conv1`
    is a Sequential whose last conv feeds `bn1`) and neighbours in a Sequential (the deep stem
    itself, the shortcut's conv → bn, behind an average pool in the `d` variants). Any other layout
    is left as it is, which is slower but still exact.
    """
    for module in list(net.modules()):
        if isinstance(module, nn.Sequential):
            children = list(module.named_children())
            for (a, conv), (b, bn) in zip(children, children[1:], strict=False):
                _fold_pair(module, a, conv, module, b, bn)
        for i in range(1, 4):
            owner, name, conv = module, f"conv{i}", getattr(module, f"conv{i}", None)
            if isinstance(conv, nn.Sequential) and len(conv) and isinstance(conv[-1], nn.Conv2d):
                owner, name, conv = conv, str(len(conv) - 1), conv[-1]
            _fold_pair(owner, name, conv, module, f"bn{i}", getattr(module, f"bn{i}", None))
    return net


def _fold_pair(
    conv_owner: nn.Module, conv_name: str, conv: Any, bn_owner: nn.Module, bn_name: str, bn: Any
) -> None:
    from torch.nn.utils.fusion import fuse_conv_bn_eval

    if isinstance(conv, nn.Conv2d) and _is_foldable(bn):
        setattr(conv_owner, conv_name, fuse_conv_bn_eval(conv, bn))
        setattr(bn_owner, bn_name, nn.Identity())


def _is_foldable(bn: Any) -> bool:
    # `type is`, not isinstance: timm's BatchNormAct2d subclasses BatchNorm2d and also applies its
    # activation (and dropout), which an Identity in its place would drop (a resnetv2_50d came
    # out 21 % off). Without running statistics, eval mode normalises by the batch: no constant
    # to fold.
    return type(bn) is nn.BatchNorm2d and bn.running_mean is not None and bn.running_var is not None


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
    """A fresh timm ResNet with a `len(labels)`-way head (dropout before it: the original project's fix).

    `architecture` is one of `supported_architectures()`; `model_args` go to `timm.create_model`
    (default: output_stride 16) and are saved in config.json to rebuild the same network.
    """
    if architecture not in supported_architectures():
        raise UnsupportedArchitectureError(
            f"{architecture!r} is not one of the timm ResNets Emotion Lens supports (Grad-CAM at the "
            f"last stage, pooled linear head, BatchNorm folding): the families "
            f"{', '.join(SUPPORTED_FAMILIES)} in timm's resnet module, without the anti-aliased "
            "*aa* variants, e.g. resnet18, resnet18d, resnet34, resnet50, resnext50_32x4d, "
            "seresnet50, wide_resnet50_2. emotion.model.supported_architectures() lists all "
            f"{len(supported_architectures())}."
        )
    args = dict(DEFAULT_MODEL_ARGS if model_args is None else model_args)
    clashing = sorted(set(args) & set(_OWN_ARGS))
    if clashing:
        raise ValueError(
            f"model_args must not set {', '.join(clashing)}: build_model sets them from labels, "
            "drop_rate and pretrained."
        )
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


SMALL_BATCHES = (1, 2, 4, 8, 16)  # the batch sizes `warm_up` times in both precisions


def _median_seconds(fn, faces: torch.Tensor, repeats: int) -> float:
    """Median seconds of `fn(faces)` over `repeats` calls, queued GPU work included."""
    from emotion.timing import sync_device

    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn(faces)
        sync_device(faces.device)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def resolve_precision(precision: str, device: torch.device) -> str:
    """'auto' → bf16 where the device runs it natively (CUDA with bf16, a CPU with AMX or
    AVX512-BF16), else fp32; 'fp32' and 'bf16' are kept as they are."""
    if precision not in ("auto", "fp32", "bf16"):
        raise ValueError(f"precision must be 'auto', 'fp32' or 'bf16', not {precision!r}.")
    if precision != "auto":
        return precision
    if device.type == "cuda":
        return "bf16" if torch.cuda.is_bf16_supported() else "fp32"
    # Without AMX or AVX512-BF16, bf16 on CPU is emulated and slower than fp32.
    return "bf16" if _cpu_has_fast_bf16() else "fp32"


def _cpu_has_fast_bf16() -> bool:
    flags = cpu_info()
    return "amx_bf16" in flags or "avx512_bf16" in flags


def cpu_info() -> str:
    """/proc/cpuinfo's text ("" where there is none): the CPU's model name and flags."""
    try:
        return Path("/proc/cpuinfo").read_text()
    except OSError:
        return ""
