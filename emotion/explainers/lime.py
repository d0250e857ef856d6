"""LIME for every label from one set of perturbations: lime_image's method, run on the model's device.

All five labels are explained from the same perturbed faces, so five maps cost one set of model
calls. The project's LIME (`sampling="orthogonal"`) keeps lime_image's estimand: the same
interpretable features (SLIC segments here), the same cosine distance of each on/off pattern to
the whole face and the same kernel (lime_image's own functions, `lime_kernel_weights`), and the
same kernel-weighted ridge per label. What it does otherwise:
- the patterns become faces on the model's device (`perturbed_faces`), the probabilities stay
  there, and one float64 solve fits all labels at once (`weighted_ridge`): only the C×S weights
  come back to the host. lime_image builds every face on the host, passes the answers through
  numpy and fits five scikit-learn ridges, each with its input validation; those host round
  trips cost more than anything but the forward. A test holds the weights and R² to lime_base's
  on the same patterns to 1e-6;
- the patterns are drawn differently (`orthogonal_patterns`). What that guarantees, exactly:
  - each pattern on its own is uniform over all on/off patterns, as lime_image's are;
  - so, as the samples grow, the fits converge to the same estimand as lime_image's;
  - with lower variance per sample: patterns come in complementary pairs (antithetic), which
    cancels much of the segment-segment interactions a linear model cannot fit, and each block
    of pairs is a two-level orthogonal array (a Hadamard matrix's columns, chosen and flipped at
    random), so every segment is on exactly half the time and balanced against every other;
  - not the same estimate at a small sample count: the patterns are not independent, and a
    pattern and its complement get different kernel weights (LIME weighs a sample by its
    distance to the whole face), so the cancellation is only partial and a small-sample bias
    remains. How large it is, is measured (`python -m bench.lime_designs`).
`sampling="independent"` is lime_image itself (`_lime_image_fit`): the reference.

LIME's cost is the model's forward over its perturbed faces, one forward-equivalent each, and
nothing else costs as much. The defaults (96 SLIC segments asked for, 256 samples) are the
cheapest setting measured that meets both of the project's tests of a LIME map: agreement with a
1000-sample lime_image run as close as a second such run's (≥ 0.9 of that noise floor; it takes
about three samples a segment), and the predicted emotion's map pointing at the brow, eye or
mouth that defines it on drawn faces (≥ 90 %; it takes segments about as small as a brow). The
designs measured, and why the cheaper ones fail, are in docs/findings.md and
`bench/results/lime-designs.txt`.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial
from typing import Literal

import cv2
import numpy as np
import sklearn.metrics
import torch
from lime import lime_image
from scipy.linalg import hadamard
from skimage.segmentation import felzenszwalb, slic

from emotion.explainers.figures import FIT_R2, MapsWithFigures
from emotion.explainers.registry import Explainer, Maps, ProgressFn, register
from emotion.model import EmotionModel

# lime 0.2.0.1 wraps its sampling loop in a tqdm bar it offers no switch for; a server would
# print one per request. Progress is reported through `progress` instead.
lime_image.tqdm = partial(lime_image.tqdm, disable=True)
# lime_image's default kernel (width 0.25) on cosine distances, taken from lime_image itself.
_LIME_IMAGE_KERNEL = lime_image.LimeImageExplainer().base.kernel_fn


@dataclass(frozen=True)
class LimeConfig:
    # Perturbed faces the local models are fitted on: with 96 segments asked for, enough to agree
    # with a 1000-sample lime_image run about as well as a second such run does (module docstring).
    num_samples: int = 256
    batch_size: int = 128  # faces per model call: large batches keep the network busy
    # "orthogonal": paired orthogonal-array patterns (module docstring); "independent":
    # lime_image's own sampling, for comparison.
    sampling: Literal["orthogonal", "independent"] = "orthogonal"
    # SLIC superpixels asked for (SLIC finds a few fewer): small enough that the strongest one
    # lies on a brow, an eye or the mouth rather than spilling onto the skin around them
    # (`bench.truth`'s pointing game). Quickshift's defaults give about a dozen blobs on a
    # 100-px face, which merge brow with eye and mouth with chin.
    n_segments: int = 96
    compactness: float = 10.0  # SLIC colour/space trade-off; higher = more grid-like segments
    # "slic": SLIC superpixels, about `n_segments` of even size. "felzenszwalb": skimage's
    # graph-based segmentation, whose segments follow colour edges at any size: a brow, an eye or
    # a mouth is a segment of its own, the skin and a plain background a few large ones.
    segmenter: Literal["slic", "felzenszwalb"] = "slic"
    scale: float = 100.0  # felzenszwalb: higher = fewer, larger segments
    min_size: int = 40  # felzenszwalb: the smallest segment, in pixels
    random_state: int = 0  # fixed, so the same face gives the same map
    # What a hidden segment shows. "median": the face under a median filter `hide_width` of its
    # side wide, where brows, eyes and mouth (all thinner than half of it) vanish into the skin
    # around them. "mean": lime_image's default, each segment filled with its own mean colour.
    # SLIC traces a mouth as a segment of its own, so its mean colour redraws the mouth's
    # outline: a smile "hidden" that way stays a smile to the model, and LIME never asks what
    # the smile was worth (see `hidden_face`).
    hide: Literal["median", "mean"] = "median"
    hide_width: float = 0.31  # the median filter's width as a share of the face's side
    # The ridge penalty of each label's fit: lime_base's Ridge(alpha=1). Larger values shrink
    # the weights towards 0, a prior that trades bias for variance at few samples (BayLIME).
    alpha: float = 1.0
    # A prior that neighbouring segments weigh alike (a Gaussian Markov random field on the
    # segments' adjacency): `smoothness` × Σ over touching segments (w_i - w_j)² is added to each
    # label's ridge penalty. 0 = lime_base's fit.
    smoothness: float = 0.0


def segment_face(face: np.ndarray, config: LimeConfig = LimeConfig()) -> np.ndarray:
    """Superpixel labels (H×W int, from 0) used as LIME's interpretable features."""
    if config.segmenter == "felzenszwalb":
        return felzenszwalb(face, scale=config.scale, sigma=0.8, min_size=config.min_size)
    if config.segmenter != "slic":
        raise ValueError(f"LimeConfig.segmenter must be 'slic' or 'felzenszwalb', not {config.segmenter!r}.")
    return slic(face, n_segments=config.n_segments, compactness=config.compactness, sigma=1.0, start_label=0)


def lime_explain(
    model: EmotionModel,
    faces: np.ndarray,
    features: torch.Tensor | None,
    progress: ProgressFn | None,
    config: LimeConfig,
) -> list[Maps]:
    """One {label: H×W float32 map in [0, 1]} per face (the features are not used: LIME asks the
    model about perturbed faces). A map shows positive evidence only: segment weight / the
    label's largest weight, negatives clipped to 0. The segments are `segment_face(face, config)`.
    Each face's maps carry the R² of each label's surrogate fit (`.figures["fit_r2"]`)."""
    return [
        _face_maps(model, face, config, progress=_face_progress(progress, i, len(faces)))
        for i, face in enumerate(faces)
    ]


def _face_maps(
    model: EmotionModel, face: np.ndarray, config: LimeConfig, *, progress: ProgressFn | None = None
) -> MapsWithFigures:
    segments = segment_face(face, config)
    weights, r2 = lime_fit(model, face, segments, config, progress=progress)
    maps = {label: weights_to_map(w, segments) for label, w in zip(model.labels, weights, strict=True)}
    return MapsWithFigures(maps, {FIT_R2: dict(zip(model.labels, map(float, r2), strict=True))})


def _face_progress(progress: ProgressFn | None, index: int, count: int) -> ProgressFn | None:
    """Face `index`'s own 0→1 progress as a share of the whole batch's."""
    if progress is None or count == 1:
        return progress
    return lambda fraction, desc: progress((index + fraction) / count, f"face {index + 1}/{count}: {desc}")


def lime_note(model: EmotionModel, config: LimeConfig) -> str:
    """How many segments of what size LIME hides, from how many perturbed faces."""
    size = model.preprocessing.input_size
    shown = (
        f"the face under a {median_width(config, size)}-px median filter (features vanish)"
        if config.hide == "median"
        else "each superpixel's mean colour"
    )
    return (
        f"LIME asks SLIC for {config.n_segments} superpixels "
        f"(at most {size / config.n_segments**0.5:.0f} px each) "
        f"of the {size}×{size} face at random, showing {shown} in their place, in "
        f"{config.num_samples} perturbed faces, and fits a linear model per emotion; maps show "
        "positive evidence only."
    )


def lime_weights(
    model: EmotionModel,
    face: np.ndarray,
    segments: np.ndarray,
    config: LimeConfig = LimeConfig(),
    *,
    progress: ProgressFn | None = None,
) -> np.ndarray:
    """C×S float64: LIME's weight of each of the S segments for each of the C labels."""
    return lime_fit(model, face, segments, config, progress=progress)[0]


def lime_fit(
    model: EmotionModel,
    face: np.ndarray,
    segments: np.ndarray,
    config: LimeConfig = LimeConfig(),
    *,
    progress: ProgressFn | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """(C×S weights as `lime_weights`, C float64 R² of each label's ridge fit on the
    kernel-weighted samples: 1 = the linear surrogate explains every move of the probability,
    0 = no better than its weighted mean, below 0 worse)."""
    if config.sampling == "orthogonal":
        return _orthogonal_fit(model, face, segments, config, progress)
    if config.sampling == "independent":
        return _lime_image_fit(model, face, segments, config, progress)
    raise ValueError(f"LimeConfig.sampling must be 'orthogonal' or 'independent', not {config.sampling!r}.")


def _orthogonal_fit(
    model: EmotionModel,
    face: np.ndarray,
    segments: np.ndarray,
    config: LimeConfig,
    progress: ProgressFn | None,
) -> tuple[np.ndarray, np.ndarray]:
    """The project's LIME: paired orthogonal-array patterns, the perturbed faces made, classified
    and fitted on the model's device; only the C×S weights come back. Distances and kernel are
    lime_image's own functions; the fits equal lime_base's to 1e-6 (tests/test_fast_explain.py)."""
    n_features = int(segments.max()) + 1
    data = orthogonal_patterns(config.num_samples, n_features, np.random.RandomState(config.random_state))
    probs = perturbed_probabilities(
        model, face, fill_face(face, segments, config), segments, data, config.batch_size, progress
    )
    device = probs.device
    penalty = None
    if config.smoothness:
        penalty = torch.from_numpy(config.smoothness * segment_laplacian(segments)).to(device)
    weights, r2 = weighted_ridge(
        torch.from_numpy(data).to(device, torch.float64),
        probs.double(),
        torch.from_numpy(lime_kernel_weights(data)).to(device),
        alpha=config.alpha,
        penalty=penalty,
    )
    return weights.cpu().numpy(), r2.cpu().numpy()


def perturbed_probabilities(
    model: EmotionModel,
    face: np.ndarray,
    fill: np.ndarray,
    segments: np.ndarray,
    data: np.ndarray,
    batch_size: int,
    progress: ProgressFn | None = None,
) -> torch.Tensor:
    """N×C probabilities, on the model's device, of the faces `perturbed_faces` makes from the
    N patterns in `data`, `batch_size` faces per model call."""
    device = model.device
    face_t, fill_t, segments_t = (
        torch.from_numpy(np.ascontiguousarray(a)).to(device) for a in (face, fill, segments)
    )
    patterns = torch.from_numpy(data.astype(bool)).to(device)
    out = []
    for start in range(0, len(data), batch_size):
        batch = perturbed_faces(face_t, fill_t, segments_t, patterns[start : start + batch_size])
        out.append(model.probabilities(batch.permute(0, 3, 1, 2)))
        _samples_done(progress, min(start + batch_size, len(data)), len(data))
    return torch.cat(out)


def _samples_done(progress: ProgressFn | None, done: int, total: int) -> None:
    if progress:
        progress(done / total, f"LIME {done}/{total} samples")


def lime_kernel_weights(data: np.ndarray) -> np.ndarray:
    """N float64 sample weights, as lime_image gives them: the cosine distance of each pattern to
    the first (the whole face) through lime_image's default kernel (width 0.25)."""
    distances = sklearn.metrics.pairwise_distances(data, data[:1], metric="cosine").ravel()
    return _LIME_IMAGE_KERNEL(distances)


def segment_laplacian(segments: np.ndarray) -> np.ndarray:
    """S×S float64 graph Laplacian of the segments' adjacency (segments touching side by side or
    one above the other): wᵀLw = Σ over touching pairs (w_i - w_j)²."""
    n = int(segments.max()) + 1
    pairs = np.concatenate(
        [
            np.stack([segments[:, :-1].ravel(), segments[:, 1:].ravel()], 1),
            np.stack([segments[:-1].ravel(), segments[1:].ravel()], 1),
        ]
    )
    pairs = np.unique(np.sort(pairs[pairs[:, 0] != pairs[:, 1]], axis=1), axis=0)
    adjacency = np.zeros((n, n))
    adjacency[pairs[:, 0], pairs[:, 1]] = adjacency[pairs[:, 1], pairs[:, 0]] = 1.0
    return np.diag(adjacency.sum(1)) - adjacency


def weighted_ridge(
    data: torch.Tensor,
    targets: torch.Tensor,
    weights: torch.Tensor,
    alpha: float = 1.0,
    penalty: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """(C×S coefficients, C R²) of one ridge regression per target column, as lime_base fits each
    label: scikit-learn's `Ridge(alpha=1, fit_intercept=True)` with `sample_weight`, then its
    weighted `score`. All C labels in one solve, on whatever device the tensors are on (float64,
    as scikit-learn fits)."""
    total = weights.sum()
    data_mean, target_mean = weights @ data / total, weights @ targets / total
    root = weights.sqrt()[:, None]
    x, y = (data - data_mean) * root, (targets - target_mean) * root
    gram = x.T @ x + alpha * torch.eye(x.shape[1], dtype=x.dtype, device=x.device)
    if penalty is not None:  # S×S, added to the ridge's: a prior on the weights (LimeConfig.smoothness)
        gram = gram + penalty
    coef = torch.linalg.solve(gram, x.T @ y).T
    predicted = (data - data_mean) @ coef.T + target_mean
    residual = weights @ (targets - predicted) ** 2
    spread = weights @ (targets - target_mean) ** 2
    # r2_score's convention for a constant target: 1 if the fit is exact too, else 0.
    r2 = torch.where(spread > 0, 1 - residual / spread.clamp_min(1e-300), (residual == 0).to(residual.dtype))
    return coef, r2


def _lime_image_fit(
    model: EmotionModel,
    face: np.ndarray,
    segments: np.ndarray,
    config: LimeConfig,
    progress: ProgressFn | None,
) -> tuple[np.ndarray, np.ndarray]:
    """lime_image's own pipeline, its independent sampling included, with the project's fill:
    the reference the project's LIME is measured against (`python -m bench.explain`)."""
    done = [0]

    def classify(batch: np.ndarray) -> np.ndarray:
        probs = model.predict(batch, batch_size=config.batch_size)
        done[0] += len(batch)
        _samples_done(progress, done[0], config.num_samples)
        return probs

    # "none" keeps every segment, as the default "auto" does when there are more than six, but
    # without its extra ridge fit per label to rank them first: identical weights (to 1e-15).
    explainer = HiddenAsLimeExplainer(feature_selection="none", random_state=config.random_state)
    explainer.hidden = hidden_face(face, config)
    # lime 0.2.0.1 assigns every label's fit score to the same `explanation.score`, so only the
    # last label's survives; the per-label scores are caught as each fit returns them.
    r2 = np.full(len(model.labels), np.nan)
    fit = explainer.base.explain_instance_with_data

    def scored_fit(data, labels, distances, label, *args, **kwargs):
        intercept, local_exp, score, local_pred = fit(data, labels, distances, label, *args, **kwargs)
        r2[label] = score
        return intercept, local_exp, score, local_pred

    explainer.base.explain_instance_with_data = scored_fit
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
    weights = np.zeros((len(model.labels), int(segments.max()) + 1))
    for label, pairs in explanation.local_exp.items():
        for segment, weight in pairs:
            weights[label, segment] = weight
    return weights, r2


def weights_to_map(weights: np.ndarray, segments: np.ndarray) -> np.ndarray:
    """Paint each segment with its positive weight (`weights[s]` for segment s), scaled so the
    strongest segment is 1."""
    table = np.maximum(weights, 0.0).astype(np.float32)
    peak = table.max()
    return (table[segments] / peak if peak > 0 else table[segments]).astype(np.float32)


def hidden_face(face: np.ndarray, config: LimeConfig = LimeConfig()) -> np.ndarray | None:
    """What the perturbed faces show where a segment is hidden: the face under a median filter
    for `hide="median"`, None for `hide="mean"` (lime_image then fills each segment with its own
    mean colour, as it does by default)."""
    if config.hide == "mean":
        return None
    if config.hide != "median":
        raise ValueError(f"LimeConfig.hide must be 'median' or 'mean', not {config.hide!r}.")
    width = median_width(config, min(face.shape[:2]))
    return cv2.medianBlur(np.ascontiguousarray(face, dtype=np.uint8), width)


def fill_face(face: np.ndarray, segments: np.ndarray, config: LimeConfig = LimeConfig()) -> np.ndarray:
    """What the perturbed faces show where a segment is off: `hidden_face`, or for `hide="mean"`
    lime_image's fill (each segment its own mean colour, truncated to uint8 as lime_image's
    assignment does)."""
    hidden = hidden_face(face, config)
    if hidden is not None:
        return hidden
    counts = np.bincount(segments.ravel())
    means = np.stack(
        [
            np.bincount(segments.ravel(), weights=face[..., ch].ravel()) / np.maximum(counts, 1)
            for ch in range(3)
        ],
        axis=1,
    )
    return means[segments].astype(face.dtype)


def median_width(config: LimeConfig, side: int) -> int:
    """The median filter's width in pixels for a face `side` px wide: odd, as the filter needs,
    and at least 3."""
    return max(int(round(config.hide_width * side)) | 1, 3)


class HiddenAsLimeExplainer(lime_image.LimeImageExplainer):
    """lime_image's explainer, its own sampling included, whose perturbed faces show `hidden`
    where a segment is off, in place of the image lime_image fills from `hide_color` (None keeps
    lime_image's). Everything else (distances, kernel, the per-label ridge fits) is lime_image's."""

    hidden: np.ndarray | None = None

    def data_labels(self, image, fudged_image, segments, classifier_fn, num_samples, batch_size=10):
        fudged = fudged_image if self.hidden is None else self.hidden
        return self.sample(image, fudged, segments, classifier_fn, num_samples, batch_size)

    def sample(self, image, fudged_image, segments, classifier_fn, num_samples, batch_size):
        return super().data_labels(image, fudged_image, segments, classifier_fn, num_samples, batch_size)


def orthogonal_patterns(num_samples: int, n_features: int, random_state: np.random.RandomState) -> np.ndarray:
    """num_samples × n_features 0/1 patterns: all ones first (the face itself, as lime_image
    does), then blocks of 2m rows, m the smallest power of two above n_features: m rows of a
    Hadamard matrix on n_features random non-constant columns, each column flipped at random,
    in random order, each row followed by its complement. Every row on its own is uniform; rows
    are not independent of each other (see the module docstring for what that does and does not
    guarantee)."""
    m = 1 << n_features.bit_length()  # > n_features, so there are enough non-constant columns
    design = (hadamard(m)[:, 1:] > 0).astype(np.int64)
    blocks = [np.ones((1, n_features), np.int64)]
    total = 1
    while total < num_samples:
        columns = random_state.permutation(m - 1)[:n_features]
        flips = random_state.randint(0, 2, n_features)
        rows = (design[:, columns] ^ flips)[random_state.permutation(m)]
        block = np.empty((2 * m, n_features), np.int64)
        block[0::2], block[1::2] = rows, 1 - rows
        blocks.append(block)
        total += 2 * m
    return np.concatenate(blocks)[:num_samples]


def perturbed_faces(
    face: torch.Tensor, fill: torch.Tensor, segments: torch.Tensor, patterns: torch.Tensor
) -> torch.Tensor:
    """N×H×W×3 faces (on the tensors' device): where row n of `patterns` is on for a segment,
    the face's pixels (H×W×3); where off, `fill`'s."""
    keep = patterns.bool()[:, segments]  # N×H×W
    return torch.where(keep[..., None], face, fill)


LIME = register(Explainer("lime", "LIME", lime_explain, lime_note, config=LimeConfig()))
