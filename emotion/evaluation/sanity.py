"""The model-randomisation sanity check (Adebayo et al. 2018, "Sanity Checks for Saliency Maps").

An explanation that describes what the network learned must change when what it learned is
destroyed. The cascading test re-initialises the network from the top down (the head, then each
ResNet stage, then the stem), cumulatively, and measures how much each method's maps for the same
faces still resemble the trained model's. A method whose maps barely move is explaining the image
(edges, contrast), not the model: it "fails the sanity check".

API (used by training/shortcuts.py and bench/truth.py)::

    from emotion.evaluation.sanity import cascading_randomisation, save_sanity_plot

    result = cascading_randomisation(model, faces, ("gradcam", "guided_backprop"))
    result.flagged_methods()          # ("guided_backprop",) when its maps barely change
    result.mean("gradcam", "layer3")  # mean rank correlation, head + layer4 + layer3 randomised
    print(result.describe())          # a text table
    json.dumps(result.to_dict())      # report.json / bench output
    save_sanity_plot(result, "sanity.png")

- `cascade_stages(model)`: the stage names, top-down, e.g. ("fc", "layer4", …, "stem").
- `randomisation_cascade(model, seed=0)`: yields (stage, randomised copy) top-down; stage k has the
  head and the k top blocks re-initialised. The caller's model is never modified.
- `cascading_randomisation(model, faces, methods=None, *, labels="predicted", seed=0,
  config=SanityConfig(), progress=None) -> SanityResult`.
- `spearman_map_correlation(a, b)`: Spearman rank correlation of two maps.
- `SanityConfig(threshold=0.5, after_blocks=2)`: the flag rule (see `SanityResult.flagged`).

Maps are compared for the trained model's predicted label of each face (labels="predicted") or for
every label (labels="all"). Every registered map is already non-negative (Grad-CAM after its ReLU,
gradients as |∂/∂pixel|, LIME's positive evidence), so Adebayo's "rank correlation with and
without absolute value" is one figure here; SSIM of the maps is reported beside it.
"""

from __future__ import annotations

import copy
import dataclasses
import logging
import math
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from torch import nn

from emotion.errors import EmotionLensError
from emotion.evaluation.agreement import rank_correlation
from emotion.explainers.registry import ProgressFn, resolve_methods, title_of
from emotion.model import EmotionModel
from emotion.storage.files import save_figure

log = logging.getLogger(__name__)

STEM = "stem"  # the stage name of everything before the first ResNet stage (conv1, bn1)
TRAINED = "trained"  # the reference point of the plot: no layer randomised (correlation 1)


class SanityCheckError(EmotionLensError, ValueError):
    """The sanity check was asked for something it cannot do (no faces, an unknown label mode,
    a layer it does not know how to re-initialise)."""


@dataclass(frozen=True)
class SanityConfig:
    # Why these defaults: a method that explains the model must have lost most of its resemblance
    # to the trained maps once the head and the two top stages (half of a ResNet's four stages,
    # the layers that hold the class-specific features) are random. Rank correlation 0.5 is
    # halfway between "unchanged" (1) and "unrelated" (0); in Adebayo et al.'s figures the
    # methods they call failing (guided backprop, guided Grad-CAM) stay near or above it while
    # gradients and Grad-CAM fall well below it after a few layers.
    threshold: float = 0.5  # flagged when the mean rank correlation is still ≥ this …
    after_blocks: int = 2  # … with the head and this many top stages randomised (capped at all)


@dataclass
class SanityResult:
    """Per method and per cumulative stage, one rank correlation (and SSIM) per compared map.

    `stages[k]` names the stage randomised last at step k: step k has `stages[0..k]` random.
    `rank_correlation[method][stage]` holds one value per face (labels="predicted") or per face
    and label (labels="all", face-major).
    """

    methods: tuple[str, ...]
    stages: tuple[str, ...]
    rank_correlation: dict[str, dict[str, list[float]]]
    ssim: dict[str, dict[str, list[float]]]
    labels: str = "predicted"
    faces: int = 0
    seed: int = 0
    architecture: str = ""
    config: SanityConfig = field(default_factory=SanityConfig)
    seconds: dict[str, float] = field(default_factory=dict)  # per method, all stages together

    def mean(self, method: str, stage: str, metric: str = "rank_correlation") -> float:
        """Mean over the compared maps of `metric` ("rank_correlation" or "ssim")."""
        return float(np.mean(self._values(method, stage, metric)))

    def spread(self, method: str, stage: str, metric: str = "rank_correlation") -> float:
        """Standard deviation over the compared maps of `metric`."""
        return float(np.std(self._values(method, stage, metric)))

    @property
    def flag_stage(self) -> str:
        """The stage the flag rule reads: the head plus `config.after_blocks` top stages."""
        return self.stages[min(self.config.after_blocks, len(self.stages) - 1)]

    def flagged(self, method: str) -> bool:
        """True when `method` fails the check: its mean rank correlation with the trained maps is
        still ≥ `config.threshold` at `flag_stage`."""
        return self.mean(method, self.flag_stage) >= self.config.threshold

    def flagged_methods(self) -> tuple[str, ...]:
        return tuple(m for m in self.methods if self.flagged(m))

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: the rule, and per method its flag and per stage mean, spread and values."""
        return {
            "test": "cascading model randomisation (Adebayo et al. 2018)",
            "architecture": self.architecture,
            "labels": self.labels,
            "faces": self.faces,
            "seed": self.seed,
            "stages": list(self.stages),
            "rule": {
                **dataclasses.asdict(self.config),
                "stage": self.flag_stage,
                "text": self.rule_text(),
            },
            "methods": {
                m: {
                    "title": title_of(m),
                    "flagged": self.flagged(m),
                    "seconds": round(self.seconds.get(m, 0.0), 3),
                    "stages": {
                        s: {
                            "rank_correlation_mean": self.mean(m, s),
                            "rank_correlation_std": self.spread(m, s),
                            "ssim_mean": self.mean(m, s, "ssim"),
                            "ssim_std": self.spread(m, s, "ssim"),
                            "rank_correlation": list(self.rank_correlation[m][s]),
                            "ssim": list(self.ssim[m][s]),
                        }
                        for s in self.stages
                    },
                }
                for m in self.methods
            },
        }

    def rule_text(self) -> str:
        return (
            f"fails when the mean rank correlation with the trained model's maps is still "
            f"≥ {self.config.threshold:g} with {self.flag_stage} and every stage above it randomised"
        )

    def describe(self) -> str:
        """A text table: mean rank correlation (± spread) per method and cumulative stage."""
        width = max(len(title_of(m)) for m in self.methods) + 2
        header = "method".ljust(width) + "".join(
            f"{'+' + s if i else s:>13}" for i, s in enumerate(self.stages)
        )
        lines = [
            f"Cascading randomisation, {self.architecture}, {self.faces} faces, labels={self.labels}: "
            "Spearman rank correlation with the trained model's maps (mean ± std)",
            header + "  verdict",
        ]
        for m in self.methods:
            cells = "".join(f"{self.mean(m, s):>7.2f} ±{self.spread(m, s):4.2f}" for s in self.stages)
            verdict = "FAILS (barely changes)" if self.flagged(m) else "passes"
            lines.append(title_of(m).ljust(width) + cells + "  " + verdict)
        lines.append(f"Rule: {self.rule_text()}.")
        return "\n".join(lines)

    def _values(self, method: str, stage: str, metric: str) -> list[float]:
        table = {"rank_correlation": self.rank_correlation, "ssim": self.ssim}.get(metric)
        if table is None:
            raise SanityCheckError(f"Unknown metric {metric!r}: use 'rank_correlation' or 'ssim'.")
        return table[method][stage]


def spearman_map_correlation(a: np.ndarray, b: np.ndarray) -> float:
    """Spearman rank correlation of two maps of one shape, pixel by pixel (`rank_correlation`: a
    map that a random network collapses to a constant counts as changed)."""
    if np.size(a) != np.size(b):
        raise SanityCheckError(
            f"Maps of different sizes ({np.size(a)} and {np.size(b)} pixels) cannot be compared."
        )
    return rank_correlation(a, b)


def map_ssim(a: np.ndarray, b: np.ndarray) -> float:
    """Structural similarity of two maps in [0, 1] (scikit-image, data range 1)."""
    from skimage.metrics import structural_similarity

    return float(structural_similarity(np.asarray(a, np.float64), np.asarray(b, np.float64), data_range=1.0))


# ---------------------------------------------------------------------------------------------
# The cascade


def cascade_stages(model: EmotionModel) -> tuple[str, ...]:
    """Stage names in randomisation order: the head, the ResNet stages top-down, then the stem."""
    blocks = [info["module"] for info in model.net.feature_info[1:]]
    return (model.classifier_name, *reversed(blocks), STEM)


def _stage_modules(net: nn.Module, model: EmotionModel, stage: str) -> list[nn.Module]:
    if stage != STEM:
        return [net.get_submodule(stage)]
    # The stem is every top-level module with weights that is neither a stage nor the head
    # (conv1 and bn1; a deep stem's conv1 is a Sequential of three convolutions).
    others = set(cascade_stages(model)) - {STEM}
    return [m for name, m in net.named_children() if name not in others and any(True for _ in m.parameters())]


@torch.no_grad()
def _reinitialise(module: nn.Module, generator: torch.Generator) -> None:
    """Fresh weights for every layer in `module`, as a newly built timm ResNet would get them.

    Convolutions: Kaiming normal (fan_out, ReLU), timm ResNet's own init (without its
    zero_init_last, which would turn every block into the identity and so hide the change).
    Linear: PyTorch's default. BatchNorm: weight 1, bias 0 and reset running statistics, because
    the trained statistics describe the trained convolution's outputs, not the random one's; in
    eval mode the layer is then (almost) the identity. Values are drawn on the CPU from
    `generator`, so a seed gives the same network on any device.
    """
    for sub in module.modules():
        own = list(sub.parameters(recurse=False))
        if not own:
            continue
        if isinstance(sub, nn.modules.conv._ConvNd):
            _draw(sub.weight, nn.init.kaiming_normal_, generator, mode="fan_out", nonlinearity="relu")
            if sub.bias is not None:
                sub.bias.zero_()
        elif isinstance(sub, nn.Linear):
            _draw(sub.weight, nn.init.kaiming_uniform_, generator, a=math.sqrt(5))
            if sub.bias is not None:
                bound = 1.0 / math.sqrt(sub.in_features) if sub.in_features else 0.0
                _draw(sub.bias, nn.init.uniform_, generator, a=-bound, b=bound)
        elif isinstance(sub, nn.modules.batchnorm._NormBase):
            sub.reset_parameters()
        else:
            raise SanityCheckError(
                f"Cannot re-initialise a {type(sub).__name__} layer for the sanity check: only "
                "convolutions, linear layers and BatchNorm are known. Use one of "
                "emotion.model.supported_architectures()."
            )


def _draw(
    param: torch.Tensor, init: Callable[..., torch.Tensor], generator: torch.Generator, **kwargs
) -> None:
    """Overwrite `param` with `init`'s values drawn on the CPU (same numbers on any device)."""
    values = torch.empty(param.shape, dtype=torch.float32)
    init(values, generator=generator, **kwargs)
    param.copy_(values)


def randomisation_cascade(model: EmotionModel, *, seed: int = 0) -> Iterator[tuple[str, EmotionModel]]:
    """Yield (stage, copy of `model` with that stage and every one above it re-initialised),
    top-down: the head, layer4, layer3, layer2, layer1, the stem.

    Cumulative like Adebayo's cascade: step k keeps the random weights of step k-1 and adds the
    next stage's. Each stage draws from its own seed (`seed`, stage index), so its weights do not
    depend on how many stages came before. Each yielded model is a copy of its own (keeping them
    all costs one network each); `model` is never modified. A generator, so only the copies the
    caller holds stay in memory.
    """
    net = copy.deepcopy(model.net)
    for index, stage in enumerate(cascade_stages(model)):
        generator = torch.Generator().manual_seed(
            int(np.random.SeedSequence([seed, index]).generate_state(1)[0])
        )
        for module in _stage_modules(net, model, stage):
            _reinitialise(module, generator)
        # A new EmotionModel, not a deepcopy of `model`: its __post_init__ drops the BatchNorm-
        # folded inference copy, which would otherwise still hold the trained weights.
        yield (
            stage,
            dataclasses.replace(
                model,
                net=copy.deepcopy(net),
                model_args=dict(model.model_args),
                info={**model.info, "randomised": list(cascade_stages(model)[: index + 1])},
                source=f"{model.source}, randomised down to {stage}",
            ),
        )


def cascading_randomisation(
    model: EmotionModel,
    faces: np.ndarray,
    methods: Iterable[str] | None = None,
    *,
    labels: Literal["predicted", "all"] = "predicted",
    seed: int = 0,
    config: SanityConfig = SanityConfig(),
    progress: ProgressFn | None = None,
) -> SanityResult:
    """Run the cascading randomisation test of `methods` (registry names; None: the default
    methods) on N×H×W×3 uint8 `faces`.

    For each method and each cumulative stage: the Spearman rank correlation (and SSIM) between
    the trained model's map and the randomised copy's map, for the trained model's predicted
    label of each face (labels="predicted") or for every label ("all"). Costs one run of each
    method per stage plus one on the trained model (7 runs for a ResNet).
    """
    faces = np.asarray(faces)
    if faces.ndim == 3:
        faces = faces[None]
    if faces.ndim != 4 or faces.shape[-1] != 3 or len(faces) == 0:
        raise SanityCheckError(
            f"faces must be an N×H×W×3 uint8 array with N ≥ 1, not shape {faces.shape}: crop them with "
            "emotion.photo.faces first."
        )
    if labels not in ("predicted", "all"):
        raise SanityCheckError(f"labels must be 'predicted' or 'all', not {labels!r}.")
    chosen = resolve_methods(methods)
    stages = cascade_stages(model)
    if labels == "predicted":
        picks = [[model.labels[i]] for i in model.predict(faces).argmax(axis=1)]
    else:
        picks = [list(model.labels)] * len(faces)

    seconds = {e.name: 0.0 for e in chosen}
    steps = len(chosen) * (len(stages) + 1)

    def run_all(stage_model: EmotionModel, step0: int, what: str) -> dict[str, list[np.ndarray]]:
        maps = {}
        for j, explainer in enumerate(chosen):
            if progress:
                progress((step0 + j) / steps, f"{explainer.title}, {what}")
            start = time.perf_counter()
            per_face = explainer(stage_model, faces)
            seconds[explainer.name] += time.perf_counter() - start
            maps[explainer.name] = [
                face_maps[label] for face_maps, pick in zip(per_face, picks, strict=True) for label in pick
            ]
        return maps

    reference = run_all(model, 0, "trained model")
    rank = {e.name: {} for e in chosen}
    ssim = {e.name: {} for e in chosen}
    for k, (stage, randomised) in enumerate(randomisation_cascade(model, seed=seed), start=1):
        maps = run_all(randomised, k * len(chosen), f"randomised down to {stage}")
        for name, trained_maps in reference.items():
            pairs = list(zip(trained_maps, maps[name], strict=True))
            rank[name][stage] = [spearman_map_correlation(a, b) for a, b in pairs]
            ssim[name][stage] = [map_ssim(a, b) for a, b in pairs]
        del randomised  # one randomised network alive at a time
    if progress:
        progress(1.0, "sanity check done")

    result = SanityResult(
        methods=tuple(e.name for e in chosen),
        stages=stages,
        rank_correlation=rank,
        ssim=ssim,
        labels=labels,
        faces=len(faces),
        seed=seed,
        architecture=model.architecture,
        config=config,
        seconds=seconds,
    )
    for name in result.flagged_methods():
        log.warning(
            "%s fails the sanity check: rank correlation %.2f with the trained maps after randomising "
            "down to %s (its maps barely depend on the weights).",
            title_of(name),
            result.mean(name, result.flag_stage),
            result.flag_stage,
        )
    return result


# ---------------------------------------------------------------------------------------------
# The figure


def save_sanity_plot(result: SanityResult, path: str | Path) -> Path:
    """A PNG of mean rank correlation (band: ± one std) against the cumulatively randomised stage,
    one line per method; methods that fail are marked in the legend. Written atomically."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    # A bare Figure, not pyplot: no global state, so a server thread can draw one safely.
    fig = Figure(figsize=(7.5, 4.2))
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    x = np.arange(len(result.stages) + 1)
    for method in result.methods:
        means = np.array([1.0] + [result.mean(method, s) for s in result.stages])
        spreads = np.array([0.0] + [result.spread(method, s) for s in result.stages])
        name = title_of(method) + (" — FAILS (barely changes)" if result.flagged(method) else "")
        (line,) = ax.plot(x, means, marker="o", linestyle="--" if result.flagged(method) else "-", label=name)
        ax.fill_between(x, means - spreads, means + spreads, color=line.get_color(), alpha=0.12)
    ax.axhline(result.config.threshold, color="grey", linewidth=0.8, linestyle=":")
    ax.axvline(result.stages.index(result.flag_stage) + 1, color="grey", linewidth=0.8, linestyle=":")
    ax.set_xticks(x, [TRAINED] + [s if i == 0 else f"+{s}" for i, s in enumerate(result.stages)])
    ax.set_xlabel("cumulatively randomised, top-down")
    ax.set_ylabel("Spearman rank correlation\nwith the trained model's map")
    ax.set_ylim(-0.3, 1.05)
    ax.set_title(
        f"Sanity check: cascading randomisation ({result.architecture}, {result.faces} faces)", fontsize=10
    )
    ax.legend(fontsize=8, loc="lower left")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    return save_figure(fig, path, dpi=100)
