"""`explain`: photo → faces → probabilities → per-emotion maps, timed step by step."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal

import numpy as np
import torch

from emotion.errors import FaceIndexError, NoFaceError
from emotion.explainers.registry import Explainer, ProgressFn, check_configs, resolve_methods
from emotion.faces import Box, DetectConfig, ImageInput, center_box, crop_face, detect_faces, load_image
from emotion.model import EmotionModel
from emotion.report import FaceResult, Report
from emotion.timing import timed

WholeImage = Literal["never", "if_no_face", "always"]


def explain(
    model: EmotionModel,
    image: ImageInput,
    methods: Sequence[str] | None = None,
    *,
    face: int | Literal["all"] = 0,
    whole_image: WholeImage = "never",
    detect: DetectConfig | None = None,
    progress: ProgressFn | None = None,
    **configs: Any,
) -> Report:
    """Classify the face(s) in `image` and explain every emotion with each of `methods`.

    `methods`: registered explanation methods (emotion.explainers.registry), None for the
    default ones (gradcam and lime); they run and are reported in the registry's order.
    `face` picks which detected face to explain (0 = largest) or "all". `whole_image` says when
    the centred square of the photo stands in for a face: never (no face → NoFaceError), only if
    no face is found, or always (the input is already a face crop). A method's settings go by
    its name: `lime=LimeConfig(num_samples=256)`.
    """
    chosen_methods = resolve_methods(methods)
    check_configs(configs)
    timings: dict[str, float] = {}
    with timed(timings, "total"):
        with timed(timings, "load"):
            photo = load_image(image)
        with timed(timings, "detect"):
            boxes = [] if whole_image == "always" else detect_faces(photo, detect)
        results, features = _classify(model, photo, boxes, face, whole_image, detect, timings)
        for explainer in chosen_methods:
            _add_maps(model, explainer, results, features, timings, progress, configs.get(explainer.name))
    return Report(
        image_size=(photo.shape[1], photo.shape[0]),
        boxes=boxes,
        faces=results,
        model=model.source,
        is_demo_model=model.is_demo,
        cam_layer=model.cam_layer_name,
        timings_ms=timings,
    )


def _classify(
    model: EmotionModel,
    photo: np.ndarray,
    boxes: list[Box],
    face: int | str,
    whole_image: WholeImage,
    detect: DetectConfig | None,
    timings: dict[str, float],
) -> tuple[list[FaceResult], torch.Tensor]:
    """The chosen faces cut out and classified in one batch, and the forward's features, which
    Grad-CAM at the last block needs and nothing more (explainers/gradcam.py)."""
    margin = (detect or DetectConfig()).margin
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
    results: list[FaceResult],
    features: torch.Tensor,
    timings: dict[str, float],
    progress: ProgressFn | None,
    config: Any,
) -> None:
    faces = np.stack([result.face for result in results])
    with timed(timings, explainer.name):
        maps = explainer(model, faces, features, progress=progress, config=config)
    for result, face_maps in zip(results, maps, strict=True):
        result.maps[explainer.name] = face_maps
