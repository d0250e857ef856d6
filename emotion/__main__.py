"""`python -m emotion explain IMAGE [--model SRC] [--out DIR] [--json]`

Prints each face's probabilities (or the whole Report as JSON) and, with --out, writes one PNG
overlay per method and emotion, the photo with its boxes, a summary figure and report.json.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

from emotion.errors import EmotionLensError
from emotion.explainers.lime import LimeConfig
from emotion.explainers.render import overlay, save_summary
from emotion.faces import draw_boxes, load_image
from emotion.model import load_model
from emotion.pipeline import METHODS, explain
from emotion.report import Report

log = logging.getLogger("emotion")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m emotion", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    sub = parser.add_subparsers(dest="command", required=True)
    ex = sub.add_parser("explain", help="classify the faces of a photo and explain every emotion")
    ex.add_argument("image", type=Path, help="photo file (JPEG, PNG, WebP, BMP, TIFF)")
    ex.add_argument("--model", default=None, help="model folder or Hub id; default: the demo model")
    ex.add_argument("--out", type=Path, default=None, help="folder for overlays, summary and report.json")
    ex.add_argument("--json", action="store_true", help="print the Report as JSON")
    ex.add_argument("--face", default="0", help="face index (0 = largest) or 'all'")
    ex.add_argument(
        "--whole-image",
        choices=("never", "if_no_face", "always"),
        default="never",
        help="when the centred square of the photo stands in for a face",
    )
    ex.add_argument("--methods", default=",".join(METHODS), help="comma-separated: gradcam,lime")
    ex.add_argument("--lime-samples", type=int, default=LimeConfig().num_samples)
    return parser


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
    print("time: " + ", ".join(f"{k} {v:.0f} ms" for k, v in report.timings_ms.items()))


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    face = "all" if args.face == "all" else int(args.face)
    methods = tuple(m for m in args.methods.split(",") if m)
    try:
        model = load_model(args.model)
        photo = load_image(args.image)
        report = explain(
            model,
            photo,
            methods,
            face=face,
            whole_image=args.whole_image,
            lime=LimeConfig(num_samples=args.lime_samples),
        )
    except (EmotionLensError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
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
