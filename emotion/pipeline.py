"""`explain`: photo → faces → probabilities → per-emotion maps, timed step by step."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Literal

import numpy as np
import torch

from emotion.errors import NoFaceError
from emotion.explainers.gradcam import gradcam_maps
from emotion.explainers.lime import LimeConfig, lime_maps
from emotion.faces import Box, DetectConfig, ImageInput, center_box, crop_face, detect_faces, load_image
from emotion.model import EmotionModel
from emotion.report import FaceResult, Report
from emotion.timing import timed

METHODS = ("gradcam", "lime")
ProgressFn = Callable[[float, str], None]
WholeImage = Literal["never", "if_no_face", "always"]


def explain(
    model: EmotionModel,
    image: ImageInput,
    methods: Sequence[str] = METHODS,
    *,
    face: int | Literal["all"] = 0,
    whole_image: WholeImage = "never",
    detect: DetectConfig | None = None,
    lime: LimeConfig | None = None,
    progress: ProgressFn | None = None,
) -> Report:
    """Classify the face(s) in `image` and explain every emotion with each of `methods`.

    `face` picks which detected face to explain (0 = largest) or "all". `whole_image` says when
    the centred square of the photo stands in for a face: never (no face → NoFaceError), only if
    no face is found, or always (the input is already a face crop).
    """
    unknown = set(methods) - set(METHODS)
    if unknown:
        raise ValueError(f"Unknown explanation method(s) {sorted(unknown)}: choose from {METHODS}.")
    timings: dict[str, float] = {}
    with timed(timings, "total"):
        with timed(timings, "load"):
            photo = load_image(image)
        with timed(timings, "detect"):
            boxes = [] if whole_image == "always" else detect_faces(photo, detect)
        chosen = _choose_faces(photo, boxes, face, whole_image)
        results = []
        for index, box, source in chosen:
            margin = (detect or DetectConfig()).margin if source == "detected" else 0.0
            crop = crop_face(photo, box, margin=margin)
            with timed(timings, "classify"):
                # The last block's output comes along: Grad-CAM there needs nothing more (gradcam.py).
                probs, features = model.predict_with_features(crop)
            result = FaceResult(
                index, box, source, crop, dict(zip(model.labels, map(float, probs[0]), strict=True))
            )
            _add_maps(model, result, features, methods, timings, lime or LimeConfig(), progress)
            results.append(result)
    return Report(
        image_size=(photo.shape[1], photo.shape[0]),
        boxes=boxes,
        faces=results,
        model=model.source,
        is_demo_model=model.is_demo,
        cam_layer=model.cam_layer_name,
        timings_ms=timings,
    )


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
        raise ValueError(f"Face {face!r} does not exist: {len(boxes)} face(s) found, numbered from 0.")
    return [(face, boxes[face], "detected")]


def _add_maps(
    model: EmotionModel,
    result: FaceResult,
    features: torch.Tensor,
    methods: Sequence[str],
    timings: dict[str, float],
    lime: LimeConfig,
    progress: ProgressFn | None,
) -> None:
    if "gradcam" in methods:
        with timed(timings, "gradcam"):
            result.maps["gradcam"] = gradcam_maps(model, result.face, features)
    if "lime" in methods:
        with timed(timings, "lime"):
            result.maps["lime"], _ = lime_maps(model, result.face, lime, progress=progress)
