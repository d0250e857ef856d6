"""`python -m app [--model SRC] [--host H] [--port P] [--methods gradcam,lime]`: serve the demo.

The page's method picker offers every registered explanation method; --methods says which are
ticked when it opens.

With no model (no --model and no EMOTION_MODEL), the synthetic demo model is built on first run
(about 3 minutes on 2 CPU cores) and reused after; the page says plainly that it is one.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys

from emotion.cli import command

log = logging.getLogger("app")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m app", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--model",
        default=os.environ.get("EMOTION_MODEL") or None,
        help="model folder or Hub id (user/name[@rev]); default: $EMOTION_MODEL, else the demo model",
    )
    parser.add_argument("--host", default=os.environ.get("GRADIO_SERVER_NAME", "127.0.0.1"))
    parser.add_argument("--port", type=int, default=int(os.environ.get("GRADIO_SERVER_PORT", 7860)))
    parser.add_argument("--lime-samples", type=int, default=None, help="LIME perturbations per face")
    parser.add_argument(
        "--methods",
        default=None,
        help="comma-separated explanation methods ticked when the page opens (the picker offers every "
        "registered one); default: the registry's default ones",
    )
    return parser.parse_args(argv)


@command
def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    args = parse_args(argv)
    from app.ui import CSS, build_demo
    from emotion import load_model
    from emotion.explainers.figures import FaithfulnessConfig
    from emotion.explainers.lime import LimeConfig
    from emotion.explainers.registry import method_names, parse_methods

    methods = None if args.methods is None else parse_methods(args.methods)
    if args.model is None:
        from training.demo import ensure_demo_model

        folder = ensure_demo_model()
        log.warning(
            "No model configured: serving the DEMO model trained on synthetic faces (%s). "
            "It will not read real photos well; pass --model or set EMOTION_MODEL.",
            folder,
        )
        model = load_model(folder)
    else:
        model = load_model(args.model)
    lime = LimeConfig() if args.lime_samples is None else LimeConfig(num_samples=args.lime_samples)
    # The faithfulness figures run one batch of 2·(steps + 1) faces: warm that shape up too.
    faithfulness_batch = 2 * (FaithfulnessConfig().steps + 1)
    model.warm_up(batch_sizes=(1, min(lime.batch_size, lime.num_samples), faithfulness_batch))
    demo = build_demo(model, methods=methods, choices=method_names(), lime=lime)
    demo.queue().launch(server_name=args.host, server_port=args.port, show_error=True, css=CSS)
    return 0


if __name__ == "__main__":
    sys.exit(main())
