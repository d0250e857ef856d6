"""`python -m app [--model SRC] [--host H] [--port P] [--methods gradcam,lime]`: serve the demo.

The page's method picker offers every registered explanation method; --methods says which are
ticked when it opens.

With no model (no --model and no EMOTION_MODEL), the synthetic demo model is served: the one
shipped in the package, or one built on this machine with `python -m training.demo`; the page
says plainly that it is one. With --own-demo and none built yet, it is built first (about 4
minutes on 2 CPU cores): the page answers at once meanwhile, with the time left.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys

from app.memory import limit_malloc_arenas
from emotion.cli import command, program_name

log = logging.getLogger("app")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog=program_name("app"), description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--model",
        default=os.environ.get("EMOTION_MODEL") or None,
        help="model folder or Hub id (user/name[@rev]); default: $EMOTION_MODEL, else the demo model",
    )
    parser.add_argument("--host", default=os.environ.get("GRADIO_SERVER_NAME", "127.0.0.1"))
    parser.add_argument("--port", type=int, default=int(os.environ.get("GRADIO_SERVER_PORT", 7860)))
    parser.add_argument(
        "--own-demo",
        action="store_true",
        help="serve the demo model built on this machine (python -m training.demo), building it first "
        "if there is none, instead of the shipped one",
    )
    parser.add_argument(
        "--live-seconds",
        type=float,
        default=None,
        help="how long one live camera stream runs before it stops (default: 60)",
    )
    parser.add_argument("--lime-samples", type=int, default=None, help="LIME perturbations per face")
    parser.add_argument(
        "--methods",
        default=None,
        help="comma-separated explanation methods ticked when the page opens (the picker offers every "
        "registered one); default: the registry's default ones",
    )
    return parser.parse_args(argv)


def _warmed_up(model, lime):
    """The model after throw-away predictions at the batch sizes the page uses."""
    from emotion.explainers.figures import FaithfulnessConfig

    # The faithfulness figures run one batch of 2·(steps + 1) faces: warm that shape up too.
    faithfulness_batch = 2 * (FaithfulnessConfig().steps + 1)
    model.warm_up(batch_sizes=(1, min(lime.batch_size, lime.num_samples), faithfulness_batch))
    return model


def _demo_model(lime, *, own: bool = False):
    """The synthetic demo model: loaded now if one is built or shipped, else built in the
    background while the page already answers (a first build takes about 4 minutes)."""
    from app.pending import PendingModel
    from emotion import load_model
    from training.demo import EXPECTED_BUILD_S, ensure_demo_model, ready_demo_model

    def serving(model):
        log.warning(
            "No model configured: serving the DEMO model trained on synthetic faces (%s). "
            "It will not read real photos well; pass --model or set EMOTION_MODEL.",
            model.source,
        )
        return _warmed_up(model, lime)

    ready = ready_demo_model(own=own)  # loaded once: it is the model served
    if ready is not None:
        return PendingModel.ready_now(serving(ready))
    log.warning(
        "No model configured and no demo model built here%s: the page is served now, and the "
        "synthetic demo model is built in the background (about %.0f s on 2 CPU cores).",
        "" if own else " or shipped",
        EXPECTED_BUILD_S,
    )
    return PendingModel(
        lambda: serving(load_model(ensure_demo_model())),
        expected_s=EXPECTED_BUILD_S,
        what="The synthetic demo model",
    )


def upload_guard(max_upload: str):
    """The middleware that accepts only image and video uploads (app/upload_guard.py)."""
    from gradio.utils import _parse_file_size
    from starlette.middleware import Middleware

    from app.upload_guard import UploadTypeGuard

    return Middleware(UploadTypeGuard, limit_bytes=_parse_file_size(max_upload))


@command
def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    args = parse_args(argv)
    limit_malloc_arenas()  # before Gradio starts its worker threads
    from app.pending import PendingModel
    from app.ui import CSS, MAX_UPLOAD, QUEUE_MAX, build_demo
    from emotion import load_model
    from emotion.explainers.lime import LimeConfig
    from emotion.explainers.registry import method_names, parse_methods

    methods = None if args.methods is None else parse_methods(args.methods)
    lime = LimeConfig() if args.lime_samples is None else LimeConfig(num_samples=args.lime_samples)
    if args.model is not None:
        served = PendingModel.ready_now(_warmed_up(load_model(args.model), lime))
    else:
        served = _demo_model(lime, own=args.own_demo)
    live = {} if args.live_seconds is None else {"live_limit_s": args.live_seconds}
    demo = build_demo(served, methods=methods, choices=method_names(), lime=lime, **live)
    # bench.load reads this line to size its flood: it measures the page as served.
    log.info("The queue holds %d requests waiting; more are refused.", QUEUE_MAX)
    # No allowed_paths: the page serves only its own files and Gradio's cache.
    demo.queue(max_size=QUEUE_MAX).launch(
        server_name=args.host,
        server_port=args.port,
        show_error=True,
        css=CSS,
        max_file_size=MAX_UPLOAD,
        prevent_thread_lock=True,
        app_kwargs={"middleware": [upload_guard(MAX_UPLOAD)]},
    )
    # The build starts once the page listens: started earlier, it competes with the server's own
    # start-up for the 2 cores and the page answers later.
    served.start()
    demo.block_thread()
    return 0


if __name__ == "__main__":
    sys.exit(main())
