"""The explanation methods, by name: what the pipeline, the page, the figures, the CLI and the
model card iterate.

Every method has one signature (`ExplainFn`): (model, N×H×W×3 uint8 faces, the classification
forward's N×K×h×w features of `model.last_stage_layer`, progress, the method's config) → one
{label: H×W float32 map in [0, 1]} per face, labels in the model's order. A method that has
no use for the features ignores them; one that has settings keeps them in a frozen dataclass
whose default instance its entry carries.

A new method is one module that ends with `register(Explainer(...))` and one import line in
`emotion/explainers/__init__.py`; the import order there is the order the methods are shown in.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

from emotion.errors import UnknownMethodError

if TYPE_CHECKING:
    import torch

    from emotion.model import EmotionModel

ProgressFn = Callable[[float, str], None]  # (fraction done in [0, 1], what is being done)
Maps = dict[str, np.ndarray]  # label → H×W float32 map in [0, 1]


class ExplainFn(Protocol):
    def __call__(
        self,
        model: EmotionModel,
        faces: np.ndarray,
        features: torch.Tensor | None,
        progress: ProgressFn | None,
        config: Any,
    ) -> list[Maps]: ...


NoteFn = Callable[["EmotionModel", Any], str]  # (model, config) → what the maps read, in a sentence


@dataclass(frozen=True)
class Explainer:
    name: str  # key of Report maps and timings, CLI --methods, PNG file names: [a-z][a-z0-9_]*
    title: str  # what the page, the figures and the card call it ("Grad-CAM")
    run: ExplainFn
    describe: NoteFn
    config: Any = None  # the method's default settings (a frozen dataclass), None if it has none
    default: bool = True  # runs when the caller names no methods (explain(), the CLI, the page)
    # Costs about a forward and a backward: the page shows its maps first, and does not queue
    # them behind other visitors' slow methods (app/ui.py).
    quick: bool = False

    def __call__(
        self,
        model: EmotionModel,
        faces: np.ndarray,
        features: torch.Tensor | None = None,
        *,
        progress: ProgressFn | None = None,
        config: Any = None,
    ) -> list[Maps]:
        """One {label: map} per face of the N×H×W×3 batch; `features` (the cam layer's output for
        these faces, from `model.predict_with_features`) spares a forward where the method uses it."""
        return self.run(model, faces, features, progress, self.settings(config))

    def for_face(
        self,
        model: EmotionModel,
        face: np.ndarray,
        features: torch.Tensor | None = None,
        *,
        progress: ProgressFn | None = None,
        config: Any = None,
    ) -> Maps:
        """{label: map} of one H×W×3 face (features, if given, 1×K×h×w)."""
        return self(model, face[None], features, progress=progress, config=config)[0]

    def note(self, model: EmotionModel, config: Any = None) -> str:
        """What this method's maps read for `model`, in a sentence built from their configs."""
        return self.describe(model, self.settings(config))

    def settings(self, config: Any = None) -> Any:
        """`config`, or the default one; a config of another method's type is refused."""
        if config is None:
            return self.config
        if self.config is not None and not isinstance(config, type(self.config)):
            raise TypeError(
                f"The {self.name} method takes a {type(self.config).__name__}, not a {type(config).__name__}."
            )
        return config


_REGISTRY: dict[str, Explainer] = {}
_NAME = re.compile(r"[a-z][a-z0-9_]*")


def register(explainer: Explainer) -> Explainer:
    """Add a method (after those already registered) and return it."""
    if not _NAME.fullmatch(explainer.name):
        raise ValueError(
            f"Explainer name {explainer.name!r} must be lower-case letters, digits and '_': it names "
            "files and is listed after --methods."
        )
    if explainer.name in _REGISTRY:
        raise ValueError(f"An explainer named {explainer.name!r} is already registered.")
    _REGISTRY[explainer.name] = explainer
    return explainer


def unregister(name: str) -> None:
    """Remove a method (tests register their own and remove them after)."""
    _REGISTRY.pop(name, None)


def explainers() -> tuple[Explainer, ...]:
    """Every registered method, in display order."""
    return tuple(_REGISTRY.values())


def method_names() -> tuple[str, ...]:
    return tuple(_REGISTRY)


def default_methods() -> tuple[str, ...]:
    """The methods that run when the caller names none."""
    return tuple(name for name, e in _REGISTRY.items() if e.default)


def get_explainer(name: str) -> Explainer:
    try:
        return _REGISTRY[name]
    except KeyError:
        raise _unknown([name]) from None


def resolve_methods(names: Iterable[str] | None = None) -> tuple[Explainer, ...]:
    """The named methods (None: the default ones) in display order, each once."""
    if names is None:
        names = default_methods()
    names = {names} if isinstance(names, str) else set(names)
    unknown = sorted(names - set(_REGISTRY))
    if unknown:
        raise _unknown(unknown)
    return tuple(e for e in _REGISTRY.values() if e.name in names)


def split_quick(names: Iterable[str] | None = None) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """(the quick methods, the others) among `names` (None: the default ones), each in display
    order."""
    chosen = resolve_methods(names)
    return tuple(e.name for e in chosen if e.quick), tuple(e.name for e in chosen if not e.quick)


def parse_methods(text: str) -> tuple[str, ...]:
    """Comma-separated method names, as a command line gives them (empty: none), checked."""
    names = tuple(name.strip() for name in text.split(",") if name.strip())
    resolve_methods(names)
    return names


def check_configs(configs: dict[str, Any]) -> None:
    """Refuse settings given for a method that is not registered (a misspelt keyword argument)."""
    unknown = sorted(set(configs) - set(_REGISTRY))
    if unknown:
        raise _unknown(unknown, what="Settings given for unknown explanation method(s)")


def title_of(name: str) -> str:
    """The method's display title; its name if it is not registered (any more)."""
    return _REGISTRY[name].title if name in _REGISTRY else name


def explainer_notes(
    model: EmotionModel, names: Iterable[str] | None = None, **configs: Any
) -> dict[str, str]:
    """{name: what its maps read for `model`} for the named methods (None: every registered one),
    with `configs` (e.g. lime=LimeConfig(...)) in place of the defaults."""
    check_configs(configs)
    chosen = explainers() if names is None else resolve_methods(names)
    return {e.name: e.note(model, configs.get(e.name)) for e in chosen}


def _unknown(names: list[str], what: str = "Unknown explanation method(s)") -> UnknownMethodError:
    registered = ", ".join(_REGISTRY) or "none"
    return UnknownMethodError(f"{what} {', '.join(map(repr, names))}: choose from {registered}.")
