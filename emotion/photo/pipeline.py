"""`explain`: photo → faces → probabilities → per-emotion maps, timed step by step; and its two
halves, `classify` (faces and probabilities) and `add_explanations` (maps), for a caller that
shows the first before the second is done."""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from typing import Any, Literal

import numpy as np
import torch

from emotion.errors import FaceIndexError, NoFaceError
from emotion.explainers.figures import (
    BACKGROUND_SHARE,
    DELETION_AUC,
    INSERTION_AUC,
    FaithfulnessConfig,
    deletion_insertion,
    evidence_sentence,
    face_mask_in_crop,
    map_figures,
)
from emotion.explainers.registry import (
    Explainer,
    ProgressFn,
    check_configs,
    method_names,
    resolve_methods,
    title_of,
)
from emotion.model import EmotionModel
from emotion.photo.faces import Box, DetectConfig, ImageInput, center_box, crop_face, detect_faces, load_image
from emotion.photo.report import FaceResult, Report
from emotion.timing import Deadline, timed

WholeImage = Literal["never", "if_no_face", "always"]


def explain(
    model: EmotionModel,
    image: ImageInput,
    methods: Sequence[str] | None = None,
    *,
    face: int | Literal["all"] = 0,
    whole_image: WholeImage = "never",
    detect: DetectConfig | None = None,
    boxes: list[Box] | None = None,
    progress: ProgressFn | None = None,
    faithfulness: bool | FaithfulnessConfig = False,
    deadline: Deadline | None = None,
    **configs: Any,
) -> Report:
    """Classify the face(s) in `image` and explain every emotion with each of `methods`.

    `methods`: registered explanation methods (emotion.explainers.registry), None for the
    default ones (gradcam and lime); they run and are reported in the registry's order.
    `face` picks which detected face to explain (0 = largest) or "all". `whole_image` says when
    the centred square of the photo stands in for a face: never (no face → NoFaceError), only if
    no face is found, or always (the input is already a face crop). `boxes`: the faces already
    found in `image` (as `classify` takes them). A method's settings go by its name:
    `lime=LimeConfig(num_samples=512)`.

    Every map gets its figures (emotion.explainers.figures) in `FaceResult.figures`: the share
    of it outside the face box (detected faces) and LIME's surrogate R², both nearly free.
    `faithfulness` (True or a FaithfulnessConfig) adds the deletion and insertion AUC of the
    top emotion's map of each method: one batch of 42 faces through the model per method and
    face, about what as many LIME samples cost (docs/guide.md, "Figures beside every map").

    `deadline` (a server's time limit per request) is checked before each method and each
    faithfulness figure: past it, TimeLimitError names the step that would have started.

    The same as `classify` followed by `add_explanations`, which a page calls apart to show the
    quick methods' maps before the slow ones are done.
    """
    resolve_methods(methods)
    check_configs(configs)
    report = classify(model, image, face=face, whole_image=whole_image, detect=detect, boxes=boxes)
    return add_explanations(
        model, report, methods, progress=progress, faithfulness=faithfulness, deadline=deadline, **configs
    )


def classify(
    model: EmotionModel,
    image: ImageInput,
    *,
    face: int | Literal["all"] = 0,
    whole_image: WholeImage = "never",
    detect: DetectConfig | None = None,
    boxes: list[Box] | None = None,
) -> Report:
    """The report before any explanation: the faces found, cut out and classified (as `explain`
    takes `face`, `whole_image` and `detect`), with no maps yet. `boxes`: the faces already
    found in this image with `detect`'s settings (a page found them when the photo was
    uploaded), so the cascade does not run again."""
    timings: dict[str, float] = {}
    with timed(timings, "total"):
        with timed(timings, "load"):
            photo = load_image(image)
        if whole_image == "always":
            boxes = []
        elif boxes is None:
            with timed(timings, "detect"):
                boxes = detect_faces(photo, detect)
        margin = (detect or DetectConfig()).margin
        results, features = _classify(model, photo, boxes, face, whole_image, margin, timings)
    return Report(
        image_size=(photo.shape[1], photo.shape[0]),
        boxes=boxes,
        faces=results,
        model=model.source,
        is_demo_model=model.is_demo,
        gradcam_layer=model.gradcam_layer_name,
        timings_ms=timings,
        crop_margin=margin,
        features=features,
    )


def add_explanations(
    model: EmotionModel,
    report: Report,
    methods: Sequence[str] | None = None,
    *,
    progress: ProgressFn | None = None,
    faithfulness: bool | FaithfulnessConfig = False,
    deadline: Deadline | None = None,
    **configs: Any,
) -> Report:
    """Add to `report` (from `classify`, maybe already with some maps) the maps of each of
    `methods` it does not have yet, with their figures, and with `faithfulness` the deletion
    and insertion AUC of every method's top map that lacks them. The time taken is added to the
    report's timings, its total included. Returns `report`."""
    deadline = deadline or Deadline(None)
    chosen = [e for e in resolve_methods(methods) if all(e.name not in r.maps for r in report.faces)]
    check_configs(configs)
    timings = report.timings_ms
    start = time.perf_counter()
    try:
        for explainer in chosen:
            deadline.check(f"starting {explainer.title}")
            _add_maps(model, explainer, report, timings, progress, configs.get(explainer.name))
        with timed(timings, "figures"):
            _add_figures(report.faces, chosen, report.crop_margin)
        if faithfulness:
            config = faithfulness if isinstance(faithfulness, FaithfulnessConfig) else FaithfulnessConfig()
            with timed(timings, "faithfulness"):
                _add_faithfulness(model, report.faces, config, deadline)
    finally:
        timings["total"] = timings.get("total", 0.0) + (time.perf_counter() - start) * 1000
    _sort_maps(report)
    return report


def _sort_maps(report: Report) -> None:
    """Each face's maps and figures in the registry's order, however many calls added them."""
    order = {name: i for i, name in enumerate(method_names())}
    for result in report.faces:
        result.maps = dict(sorted(result.maps.items(), key=lambda kv: order.get(kv[0], len(order))))
        result.figures = dict(sorted(result.figures.items(), key=lambda kv: order.get(kv[0], len(order))))


def _classify(
    model: EmotionModel,
    photo: np.ndarray,
    boxes: list[Box],
    face: int | str,
    whole_image: WholeImage,
    margin: float,
    timings: dict[str, float],
) -> tuple[list[FaceResult], torch.Tensor]:
    """The chosen faces cut out and classified in one batch, and the forward's features, which
    Grad-CAM at the last block needs and nothing more (explainers/gradcam.py)."""
    chosen = _choose_faces(photo, boxes, face, whole_image)
    crops = [
        crop_face(photo, box, margin=margin if source == "detected" else 0.0) for _, box, source in chosen
    ]
    with timed(timings, "classify"):
        probs, features = model.predict_with_features(np.stack(crops))
    results = [
        FaceResult(index, box, source, crop, dict(zip(model.labels, map(float, p), strict=True)))
        for (index, box, source), crop, p in zip(chosen, crops, probs, strict=True)
    ]
    return results, features


def _choose_faces(
    photo: np.ndarray, boxes: list[Box], face: int | str, whole_image: WholeImage
) -> list[tuple[int, Box, str]]:
    if not boxes:
        if whole_image == "never":
            raise NoFaceError(
                "No face found in the image. Use a photo with a front-facing face, or treat the "
                "whole (centre-cropped) image as the face: whole_image='if_no_face' "
                "(in the app: tick 'Use the whole image if no face is found')."
            )
        return [(0, center_box(photo), "whole image")]
    if face == "all":
        return [(i, b, "detected") for i, b in enumerate(boxes)]
    if not isinstance(face, int) or not 0 <= face < len(boxes):
        raise FaceIndexError(face, len(boxes))
    return [(face, boxes[face], "detected")]


def _add_maps(
    model: EmotionModel,
    explainer: Explainer,
    report: Report,
    timings: dict[str, float],
    progress: ProgressFn | None,
    config: Any,
) -> None:
    faces = np.stack([result.face for result in report.faces])
    with timed(timings, explainer.name):
        maps = explainer(model, faces, report.features, progress=progress, config=config)
    for result, face_maps in zip(report.faces, maps, strict=True):
        result.maps[explainer.name] = face_maps


def _add_figures(results: list[FaceResult], methods: Sequence[Explainer], margin: float) -> None:
    """Background share of every map (where the face box is known), the method's own figures,
    and a sentence for each method whose top-emotion map lies mostly outside the face."""
    for result in results:
        mask = face_mask_in_crop(result.box, margin=margin, source=result.source, size=result.face.shape[0])
        for explainer in methods:
            figures = map_figures(result.maps[explainer.name], mask)
            result.figures[explainer.name] = figures
            share = figures.get(BACKGROUND_SHARE, {}).get(result.top, math.nan)
            sentence = evidence_sentence(explainer.title, result.top, share)
            if sentence:
                result.sentences.append(sentence)


def _add_faithfulness(
    model: EmotionModel, results: list[FaceResult], config: FaithfulnessConfig, deadline: Deadline
) -> None:
    """Deletion and insertion AUC of the top emotion's map of every method that lacks them,
    for every face."""
    for result in results:
        for method, maps in result.maps.items():
            if DELETION_AUC in result.figures.get(method, {}):
                continue
            deadline.check(f"measuring the faithfulness of {title_of(method)}")
            deletion, insertion = deletion_insertion(
                model, result.face, maps[result.top], result.top, config=config
            )
            result.figures[method][DELETION_AUC] = {result.top: deletion}
            result.figures[method][INSERTION_AUC] = {result.top: insertion}
