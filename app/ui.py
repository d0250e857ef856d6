"""The page: wiring only. Every computation is a call into `emotion`."""

from __future__ import annotations

from pathlib import Path

import gradio as gr
import numpy as np

from emotion import EmotionLensError, EmotionModel, explain
from emotion.explainers.gradcam import cam_grid_size
from emotion.explainers.lime import LimeConfig
from emotion.explainers.render import overlays
from emotion.faces import detect_faces, draw_boxes, load_image

EXAMPLES_DIR = Path(__file__).parent / "examples"
TITLE = "Emotion Lens"


def model_banner(model: EmotionModel) -> str:
    """What the page says about the model; the demo model is named for what it is."""
    if model.is_demo:
        return (
            "⚠️ **Demo model, trained on synthetic drawn faces.** It was built on this machine "
            "because no model was configured. It reads cartoon-like faces well and **will not read "
            "real photos well**: its probabilities on a real face are not meaningful. To use a real "
            "model, start the app with `python -m app --model PATH_OR_HUB_ID` (a model folder or a "
            "Hub id such as `user/name`) or set `EMOTION_MODEL`."
        )
    return f"Model: `{model.source}` ({model.architecture}, labels: {', '.join(model.labels)})."


def cam_note(model: EmotionModel) -> str:
    rows, cols = cam_grid_size(model)
    size = model.preprocessing.input_size
    return (
        f"Grad-CAM reads `{model.cam_layer_name}` (the last residual stage, run at stride 16) of "
        f"{model.architecture}: a {rows}×{cols} map for a {size}×{size} face, fine enough to tell "
        "brows from eyes from mouth. LIME hides ~48 superpixels of the face at random and fits a "
        "linear model per emotion; maps show positive evidence only."
    )


def _photo_or_error(upload: dict | str | None) -> np.ndarray:
    # Events run with preprocess=False: Gradio's own image decoding would answer a file that is
    # not an image with a bare PIL message; ours says what was wrong and what to do.
    path = upload.get("path") if isinstance(upload, dict) else upload
    if not path:
        raise gr.Error("Upload a photo first (or pick an example below).")
    try:
        return load_image(path)
    except EmotionLensError as err:
        raise gr.Error(str(err)) from err


def preview_faces(path: dict | str | None):
    """On upload: box and number every face, so the user can choose one."""
    if not path:
        return None, 1
    photo = _photo_or_error(path)
    boxes = detect_faces(photo)
    if not boxes:
        gr.Warning("No face found. Tick 'Use the whole image' to treat the centred square as the face.")
        return photo, 1
    if len(boxes) > 1:
        gr.Info(f"{len(boxes)} faces found, numbered by size. Pick one in 'Face to explain'.")
    return draw_boxes(photo, boxes, 0), 1


def make_explain_fn(model: EmotionModel, lime: LimeConfig):
    def explain_face(path: dict | str | None, face_number: float, whole_image: bool, progress=gr.Progress()):
        """Classify one face of the photo and explain all five emotions with Grad-CAM and LIME."""
        photo = _photo_or_error(path)
        index = int(face_number or 1) - 1
        try:
            report = explain(
                model,
                photo,
                face=index,
                whole_image="if_no_face" if whole_image else "never",
                lime=lime,
                progress=lambda frac, desc: progress(frac, desc=desc),
            )
        except EmotionLensError as err:
            raise gr.Error(str(err)) from err
        except ValueError as err:  # a face number past the last face
            raise gr.Error(str(err).replace("numbered from 0", "numbered from 1")) from err
        result = report.faces[0]
        boxed = draw_boxes(photo, report.boxes, result.index) if report.boxes else photo
        return (
            boxed,
            result.probs,
            overlays(result, "gradcam"),
            overlays(result, "lime"),
            timings_text(report.timings_ms, result.source),
        )

    return explain_face


def timings_text(timings: dict[str, float], source: str) -> str:
    parts = " · ".join(f"{k} {v:.0f} ms" for k, v in timings.items() if k != "total")
    face = "whole image used as the face · " if source == "whole image" else ""
    return f"{face}**{timings['total']:.0f} ms** in all: {parts}"


def build_demo(model: EmotionModel, *, lime: LimeConfig = LimeConfig()) -> gr.Blocks:
    with gr.Blocks(title=TITLE) as demo:
        gr.Markdown(
            f"# {TITLE}\nWhich emotion does the network see, and **where does it look for each one?**"
        )
        gr.Markdown(model_banner(model))
        with gr.Row():
            with gr.Column(scale=1):
                photo = gr.Image(
                    type="filepath", image_mode=None, label="Photo", sources=["upload", "clipboard", "webcam"]
                )
                face_number = gr.Number(
                    value=1, precision=0, minimum=1, label="Face to explain (1 = largest)"
                )
                whole = gr.Checkbox(value=False, label="Use the whole image if no face is found")
                run = gr.Button("Explain", variant="primary")
            with gr.Column(scale=1):
                boxed = gr.Image(label="Faces found (green: explained)", interactive=False)
                probs = gr.Label(num_top_classes=5, label="Emotion probabilities")
        cam = gr.Gallery(label="Grad-CAM per emotion", columns=5, height="auto", object_fit="contain")
        lime_out = gr.Gallery(label="LIME per emotion", columns=5, height="auto", object_fit="contain")
        timings = gr.Markdown()
        gr.Markdown(cam_note(model))
        examples = sorted(str(p) for p in EXAMPLES_DIR.glob("*") if p.suffix in (".png", ".jpg"))
        if examples:
            gr.Examples(examples=[[p] for p in examples], inputs=[photo], label="Examples")

        photo.change(preview_faces, [photo], [boxed, face_number], api_visibility="private", preprocess=False)
        run.click(
            make_explain_fn(model, lime),
            [photo, face_number, whole],
            [boxed, probs, cam, lime_out, timings],
            api_name="explain",
            preprocess=False,  # the photo is decoded by emotion.faces.load_image (see _photo_or_error)
            concurrency_limit=1,  # two explanations at once would only halve each one's speed
        )
    return demo
