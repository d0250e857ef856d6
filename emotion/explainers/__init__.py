"""Per-emotion explanations: one registry of methods (registry.py), the figures beside the maps
(figures.py) and their overlays (render.py). How alike two explanations are lives in
`emotion.evaluation.agreement`.

The `explain` pipeline that runs them lives in `emotion.photo.pipeline`.
"""

from emotion.explainers.registry import (
    Explainer,
    Maps,
    ProgressFn,
    default_methods,
    explainer_notes,
    explainers,
    get_explainer,
    method_names,
    parse_methods,
    register,
    resolve_methods,
    title_of,
    unregister,
)

# The registered methods, in the order the page, the figures and the CLI show them: importing a
# method's module registers it, so a new method is its module and one name on this line.
from emotion.explainers import gradcam, lime, saliency  # noqa: E402, F401, I001  isort: skip

from emotion.explainers.lime import LimeConfig  # noqa: E402

__all__ = [
    "Explainer",
    "LimeConfig",
    "Maps",
    "ProgressFn",
    "default_methods",
    "explainer_notes",
    "explainers",
    "get_explainer",
    "method_names",
    "parse_methods",
    "register",
    "resolve_methods",
    "title_of",
    "unregister",
]
