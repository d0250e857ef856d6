"""LIME for every label from one set of perturbations, with lime_image.

One `explain_instance` call with `labels=all` fits one local linear model per label on the same
perturbed samples, so five maps cost one set of model calls.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import partial

import numpy as np
from lime import lime_image
from skimage.segmentation import slic

from emotion.model import EmotionModel

ProgressFn = Callable[[float, str], None]

# lime 0.2.0.1 wraps its sampling loop in a tqdm bar it offers no switch for; a server would
# print one per request. Progress is reported through `progress` instead.
lime_image.tqdm = partial(lime_image.tqdm, disable=True)


@dataclass(frozen=True)
class LimeConfig:
    num_samples: int = 600  # perturbed faces the local models are fitted on
    batch_size: int = 200  # faces per model call: large batches keep the network busy
    # SLIC, about 48 superpixels of ~14 px on a 100×100 face: small enough that a brow, an eye
    # or a mouth is a segment of its own (quickshift's defaults give ~13 blobs here, which merge
    # brow with eye and mouth with chin), few enough that the samples pin down every weight.
    n_segments: int = 48
    compactness: float = 10.0  # SLIC colour/space trade-off; higher = more grid-like segments
    random_state: int = 0  # fixed, so the same face gives the same map


def segment_face(face: np.ndarray, config: LimeConfig = LimeConfig()) -> np.ndarray:
    """Superpixel labels (H×W int) used as LIME's interpretable features."""
    return slic(face, n_segments=config.n_segments, compactness=config.compactness, sigma=1.0, start_label=0)


def lime_maps(
    model: EmotionModel,
    face: np.ndarray,
    config: LimeConfig = LimeConfig(),
    *,
    progress: ProgressFn | None = None,
) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """({label: H×W float32 map in [0, 1]}, segments). A map shows positive evidence only:
    segment weight / the label's largest weight, negatives clipped to 0."""
    done = [0]

    def classify(batch: np.ndarray) -> np.ndarray:
        probs = model.predict(batch, batch_size=config.batch_size)
        done[0] += len(batch)
        if progress:
            progress(done[0] / config.num_samples, f"LIME {done[0]}/{config.num_samples} samples")
        return probs

    segments = segment_face(face, config)
    explainer = lime_image.LimeImageExplainer(random_state=config.random_state)
    explanation = explainer.explain_instance(
        face,
        classify,
        labels=tuple(range(len(model.labels))),
        top_labels=None,
        num_samples=config.num_samples,
        batch_size=config.batch_size,
        segmentation_fn=lambda _img: segments,
        random_seed=config.random_state,
    )
    maps = {
        label: weights_to_map(dict(explanation.local_exp[i]), segments)
        for i, label in enumerate(model.labels)
    }
    return maps, segments


def weights_to_map(weights: dict[int, float], segments: np.ndarray) -> np.ndarray:
    """Paint each segment with its positive weight, scaled so the strongest segment is 1."""
    table = np.zeros(int(segments.max()) + 1, dtype=np.float32)
    for seg, w in weights.items():
        table[seg] = max(w, 0.0)
    peak = table.max()
    return (table[segments] / peak if peak > 0 else table[segments]).astype(np.float32)
