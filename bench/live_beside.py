"""`python -m bench.live_beside [--streams 1,4] [--repeats N] [--every S] [--json PATH]`

How much live streams slow the photo and video requests served beside them. Each stream is a
thread doing what the page does for one viewer: every `--every` seconds (the page's 0.1) it
decodes a 640×480 JPEG frame as Gradio does, runs it through its own `LiveStream` (a frame that
comes while the one before is processed is skipped: the latest wins) and encodes the annotated
frame as the JPEG the page sends back. Beside them, one photo explanation (Grad-CAM and LIME of
the five emotions, the page's default) and one short video (bench.video's drifting faces, 3 s)
are timed, `--repeats` times each, with no stream, with each number of streams, and with none
again; the slowdown is the median time over the median of the two runs without streams. The
bare model's images/s, before and after, is printed beside.
"""

from __future__ import annotations

import argparse
import logging
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

import cv2
import numpy as np

from bench import emit
from bench.explain import model_throughput
from bench.live import moving_face_frames
from bench.video import synthetic_stream, write_clip
from emotion.cli import command
from emotion.photo.faces import load_image
from emotion.photo.pipeline import explain
from emotion.storage.model_folder import load_model
from emotion.video.live import LiveStream
from emotion.video.timeline import VideoLimits, analyze_video

ASTRONAUT = Path(__file__).parents[1] / "app/examples/astronaut.jpg"
CLIP_FPS, CLIP_FRAMES = 12, 36


class Viewers:
    """`count` live streams running in threads until stopped, as a `with` block."""

    def __init__(self, model, count: int, every_s: float):
        self.model, self.count, self.every_s = model, count, every_s
        self.frames = [
            cv2.imencode(".jpg", cv2.cvtColor(f, cv2.COLOR_RGB2BGR))[1] for f in moving_face_frames(24)
        ]
        self.stop = threading.Event()
        self.processed = 0
        self._threads: list[threading.Thread] = []

    def _viewer(self, offset: int) -> None:
        stream = LiveStream()
        tick = time.perf_counter()
        i = offset
        while not self.stop.is_set():
            frame = cv2.cvtColor(
                cv2.imdecode(self.frames[i % len(self.frames)], cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB
            )
            result = stream.process(self.model, frame)
            cv2.imencode(".jpg", cv2.cvtColor(result.image, cv2.COLOR_RGB2BGR))
            self.processed += 1
            i += 1
            tick += self.every_s
            late = time.perf_counter() - tick
            if late > 0:  # frames that came meanwhile were overwritten by the newest: skip them
                tick += self.every_s * np.ceil(late / self.every_s)
            self.stop.wait(max(0.0, tick - time.perf_counter()))

    def __enter__(self) -> Viewers:
        self._threads = [threading.Thread(target=self._viewer, args=(k * 7,)) for k in range(self.count)]
        for t in self._threads:
            t.start()
        time.sleep(self.every_s * 3)  # the streams are flowing before anything is timed
        return self

    def __exit__(self, *exc) -> None:
        self.stop.set()
        for t in self._threads:
            t.join()


def _timed(fn, repeats: int) -> float:
    seconds = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        seconds.append(time.perf_counter() - start)
    return 1000 * statistics.median(seconds)


def run(streams: list[int], repeats: int, every_s: float, model_source: str | None) -> dict:
    model = load_model(model_source)
    model.warm_up(batch_sizes=(1, 128))
    photo = load_image(ASTRONAUT)
    with tempfile.TemporaryDirectory() as folder:
        clip = write_clip(
            Path(folder) / "drifting-faces.mp4", synthetic_stream(CLIP_FRAMES).frames, CLIP_FPS, "mp4v"
        )
        jobs = {
            "photo": lambda: explain(model, photo, ["gradcam", "lime"]),
            "video": lambda: analyze_video(model, clip, VideoLimits()),
        }
        for job in jobs.values():
            job()  # the first call pays the lazy set-up
        before = model_throughput(model, 128)
        rows = []
        for count in [0, *streams, 0]:
            with Viewers(model, count, every_s) as viewers:
                start, done = time.perf_counter(), viewers.processed
                row = {"streams": count, **{name: _timed(job, repeats) for name, job in jobs.items()}}
                row["live_frames_per_s"] = (viewers.processed - done) / (time.perf_counter() - start)
            rows.append(row)
        after = model_throughput(model, 128)
    alone = {name: statistics.median([rows[0][name], rows[-1][name]]) for name in jobs}
    for row in rows:
        row["slowdown"] = {name: row[name] / alone[name] for name in jobs}
    return {
        "model": model.source,
        "precision": model.precision,
        "every_s": every_s,
        "repeats": repeats,
        "rows": rows,
        "bare_images_per_s": {"before": before, "after": after},
    }


def format_result(r: dict) -> str:
    bare = r["bare_images_per_s"]
    lines = [
        f"Photo (Grad-CAM + LIME) and a 3-s video timed beside live streams of a frame every "
        f"{r['every_s']} s, median of {r['repeats']} ({r['precision']}; bare model "
        f"{bare['before']:.0f} / {bare['after']:.0f} images/s before / after)",
        "streams   photo ms  (× alone)   video ms  (× alone)   live frames/s processed",
    ]
    for row in r["rows"]:
        s = row["slowdown"]
        lines.append(
            f"{row['streams']:>7}   {row['photo']:8.0f}  (× {s['photo']:.2f})   {row['video']:8.0f}  "
            f"(× {s['video']:.2f})   {row['live_frames_per_s']:.1f}"
        )
    return "\n".join(lines)


def _counts(text: str) -> list[int]:
    counts = [int(x) for x in text.split(",")]
    if any(c < 1 for c in counts):
        raise argparse.ArgumentTypeError("stream counts are whole numbers from 1")
    return counts


@command
def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m bench.live_beside",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--streams", type=_counts, default=[1, 4], help="stream counts to try; default 1,4")
    p.add_argument("--repeats", type=int, default=5, help="timings of each request per count; default 5")
    p.add_argument("--every", type=float, default=0.1, help="seconds between a stream's frames; default 0.1")
    p.add_argument("--model", default=None, help="model folder or Hub id; default: the demo model")
    p.add_argument("--json", type=Path, default=None, help="also write the result as JSON here")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    if args.repeats < 1 or args.every <= 0:
        p.error("--repeats must be at least 1 and --every above 0")
    result = run(args.streams, args.repeats, args.every, args.model)
    emit(format_result(result), result, args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
