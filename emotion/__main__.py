"""`python -m emotion explain IMAGE [--model SRC] [--out DIR] [--json] [--faithfulness]`
`python -m emotion video VIDEO --out OUT.mp4 [--model SRC]`

explain: prints each face's probabilities and its maps' figures (or the whole Report as JSON:
background share, LIME's R², with --faithfulness deletion/insertion AUC) and, with --out, writes
one PNG overlay per explanation method and emotion, the photo with its boxes, a summary figure
and report.json. The methods are those registered in emotion.explainers.registry.
video: writes the video back with every face boxed, its top emotion, and that emotion's
Grad-CAM over it (detection + classification + Grad-CAM per frame, no LIME).
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

from emotion import load_model  # the package's name for it, wherever the model I/O lives
from emotion.cli import command, program_name
from emotion.errors import ImageError
from emotion.explainers.figures import faithfulness_caption, figure_caption
from emotion.explainers.lime import LimeConfig
from emotion.explainers.registry import default_methods, method_names, parse_methods, title_of
from emotion.explainers.render import overlay, save_summary
from emotion.photo.faces import draw_boxes, load_image
from emotion.photo.pipeline import explain
from emotion.photo.report import Report

log = logging.getLogger("emotion")


def face_choice(text: str) -> int | str:
    """--face: 'all' or a face index from 0."""
    if text == "all":
        return text
    if text.isdigit():
        return int(text)
    raise argparse.ArgumentTypeError(f"{text!r} is neither a face index (0 = the largest) nor 'all'")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=program_name("emotion"),
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = parser.add_subparsers(dest="command", required=True)
    ex = sub.add_parser("explain", help="classify the faces of a photo and explain every emotion")
    ex.add_argument("image", type=Path, help="photo file (JPEG, PNG, WebP, BMP, TIFF)")
    ex.add_argument("--model", default=None, help="model folder or Hub id; default: the demo model")
    ex.add_argument("--out", type=Path, default=None, help="folder for overlays, summary and report.json")
    ex.add_argument("--json", action="store_true", help="print the Report as JSON")
    ex.add_argument("--face", type=face_choice, default=0, help="face index (0 = largest) or 'all'")
    ex.add_argument(
        "--whole-image",
        choices=("never", "if_no_face", "always"),
        default="never",
        help="when the centred square of the photo stands in for a face",
    )
    ex.add_argument(
        "--methods",
        default=",".join(default_methods()),
        help=f"comma-separated, from {','.join(method_names())} (default %(default)s; empty: classify only)",
    )
    ex.add_argument("--lime-samples", type=int, default=LimeConfig().num_samples)
    ex.add_argument(
        "--faithfulness",
        action="store_true",
        help="add the deletion and insertion AUC of each method's map of the top emotion (one batch "
        "of 42 faces through the model per method and face: 1-2 s each on 2 CPU cores)",
    )
    vid = sub.add_parser("video", help="annotate every frame of a video with emotions and Grad-CAM")
    vid.add_argument("video", type=Path, help="video file OpenCV can read (MP4, AVI, MKV, WebM)")
    vid.add_argument("--out", type=Path, required=True, help="annotated video to write (.mp4 or .avi)")
    vid.add_argument("--model", default=None, help="model folder or Hub id; default: the demo model")
    return parser


def annotate_video(model, source: Path, out: Path) -> int:
    """Write `source` annotated frame by frame to `out`; returns the number of frames."""
    import cv2
    from tqdm import tqdm

    from emotion.video.frames import (
        FRAMES_PER_FORWARD,
        VIDEO_DETECT,
        analyze_frames,
        annotate_frame,
        batches,
        frames,
        open_video,
    )
    from emotion.video.locate import FaceLocator

    capture = open_video(source)
    locator = FaceLocator(VIDEO_DETECT)  # every frame is drawn: follow faces between detections
    fps = capture.get(cv2.CAP_PROP_FPS) or 25.0
    total = int(capture.get(cv2.CAP_PROP_FRAME_COUNT)) or None
    out.parent.mkdir(parents=True, exist_ok=True)
    partial = out.with_name(f".{out.stem}.partial{out.suffix}")  # a crash leaves no half video at `out`
    writer = None
    written = 0
    try:
        with tqdm(total=total, desc=source.name, unit="frame") as bar:
            for batch in batches(frames(capture), FRAMES_PER_FORWARD):
                if writer is None:
                    codec = cv2.VideoWriter_fourcc(*("mp4v" if out.suffix.lower() == ".mp4" else "MJPG"))
                    writer = cv2.VideoWriter(str(partial), codec, fps, (batch[0].shape[1], batch[0].shape[0]))
                for frame, faces in zip(batch, analyze_frames(model, batch, locator=locator), strict=True):
                    drawn = annotate_frame(frame, faces, model.labels)
                    writer.write(cv2.cvtColor(drawn, cv2.COLOR_RGB2BGR))
                written += len(batch)
                bar.update(len(batch))
    finally:
        if writer is not None:
            writer.release()
    if written:
        partial.replace(out)
    return written


def write_outputs(report: Report, photo, out: Path) -> list[Path]:
    """Overlays as PNG (face{i}_{method}_{label}.png), summary figures, boxes and report.json."""
    from PIL import Image

    out.mkdir(parents=True, exist_ok=True)
    written = [out / "faces.png"]
    Image.fromarray(draw_boxes(photo, report.boxes, report.faces[0].index if report.faces else 0)).save(
        written[0]
    )
    for result in report.faces:
        stem = f"face{result.index}"
        Image.fromarray(result.face).save(out / f"{stem}.png")
        for method, maps in result.maps.items():
            for label, heat in maps.items():
                path = out / f"{stem}_{method}_{label}.png"
                Image.fromarray(overlay(result.face, heat)).save(path)
                written.append(path)
        if result.maps:
            written.append(save_summary(result, out / f"{stem}_summary.png"))
    (out / "report.json").write_text(json.dumps(report.to_dict(), indent=2) + "\n")
    written.append(out / "report.json")
    return written


def print_table(report: Report) -> None:
    if report.is_demo_model:
        print("Note: demo model trained on synthetic faces; it does not read real photos well.")
    for r in report.faces:
        probs = "  ".join(f"{k} {v:6.1%}" for k, v in sorted(r.probs.items(), key=lambda kv: -kv[1]))
        print(f"face {r.index} at {r.box.as_list()} ({r.source}): {r.top.upper()}   {probs}")
        for method, figures in r.figures.items():
            parts = (figure_caption(figures, r.top), faithfulness_caption(figures, r.top))
            if text := " · ".join(part for part in parts if part):
                print(f"  {title_of(method)}, {r.top}: {text}")
        for sentence in r.sentences:
            print(f"  {sentence}")
    print("time: " + ", ".join(f"{k} {v:.0f} ms" for k, v in report.timings_ms.items()))


@command
def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    if args.command == "video":
        frames = annotate_video(load_model(args.model), args.video, args.out)
        if not frames:
            raise ImageError(
                f"No frame could be read from {args.video}: check that the file is a whole video."
            )
        print(f"{frames} annotated frames written to {args.out}")
        return 0
    methods = parse_methods(args.methods)  # an unknown name fails here, before the model loads
    model = load_model(args.model)
    photo = load_image(args.image)
    report = explain(
        model,
        photo,
        methods,
        face=args.face,
        whole_image=args.whole_image,
        faithfulness=args.faithfulness,
        lime=LimeConfig(num_samples=args.lime_samples),
    )
    if args.out:
        write_outputs(report, photo, args.out)
    if args.json:
        print(json.dumps(report.to_dict(), indent=2))
    else:
        print_table(report)
        if args.out:
            print(f"overlays and report.json written to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
