"""Cut faces out of videos and photos into a face pool, the way one runs a cascade over film overnight.

    python -m training.extract INPUT... --out POOL [--every N] [--min-size PX]
        [--hash-threshold H] [--min-sharpness S] [--workers W]

INPUTs are video files, image files and folders of them (searched recursively). Every face goes
through `emotion.photo.faces` (load_image, detect_faces, crop_face), so a pooled face is cut exactly as
the app cuts it at inference. Blurry crops and near-duplicates (perceptual hash) are dropped.

The pool:

    POOL/faces/<source-stem>-<path hash>/<frame>_<face>_<phash>.png   100x100 RGB crops
    POOL/manifest.jsonl   one line per kept face: source, frame, timestamp, box, hash, sharpness, file
    POOL/done.jsonl       one line per finished input file: path, size, mtime

A killed run is resumed by running the same command again: finished files are skipped and an
unfinished one is redone from its start without duplicating the faces it had already written.
Files are processed in parallel by spawned worker processes; the parent process alone writes
the pool and commits files in input order, so the pool does not depend on --workers.
"""

from __future__ import annotations

import argparse
import hashlib
import logging
import multiprocessing as mp
import os
import re
import signal
import sys
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ProcessPoolExecutor, wait
from dataclasses import dataclass, field
from multiprocessing.queues import Queue as MPQueue
from pathlib import Path
from queue import Empty

import cv2
import imagehash
import numpy as np
from PIL import Image, UnidentifiedImageError

from emotion.cli import command, program_name
from emotion.errors import EmotionLensError, ImageError
from emotion.photo.faces import DetectConfig, crop_face, detect_faces, load_image
from emotion.storage.files import Journal, write_file_atomically
from emotion.storage.media import VIDEO_EXTENSIONS, kind_from_name

try:  # POSIX only; on Windows the pool is simply not locked.
    import fcntl
except ImportError:  # pragma: no cover
    fcntl = None

log = logging.getLogger(__name__)

MANIFEST = "manifest.jsonl"
DONE = "done.jsonl"
FACES = "faces"
LOCK = ".lock"
# How often a worker reports frame progress: often enough for a live bar, rare enough to cost nothing.
PROGRESS_EVERY_S = 0.5


class ExtractError(EmotionLensError):
    """The run cannot start as asked: an input is missing, or the pool is held by another run or
    was damaged by hand."""


class UnreadableMediaError(EmotionLensError):
    """An input file is not a video or image this machine can decode."""


@dataclass(frozen=True)
class ExtractConfig:
    # Look at every N-th video frame: neighbouring frames hold the same face, detection is the cost.
    every: int = 5
    # Smallest face side in source pixels the cascade looks for (DetectConfig.min_size); smaller
    # faces are upscaled mush at 100x100 anyway.
    min_size: int = 40
    # Perceptual-hash (phash, 64 bits) Hamming distance at or below which two crops count as the
    # same shot. Measured on synthetic faces in 320x240 frames: the same face moved by 2-6 px gives
    # a median distance of 2-4 (90th percentile 6-8); two different faces are at least 8 apart
    # (1st percentile 14).
    hash_threshold: int = 6
    # Variance of the Laplacian of the grey 100x100 crop below which a face is dropped as blurry.
    # Measured on 150 synthetic faces (100-200 px) in JPEG'd 640x360 frames: sharp crops have a
    # median of 380 and only 2% fall below 30; blurring the frame with a Gaussian of sigma 2 / 3 px
    # puts 43% / 81% of the crops below 30. 30 rather than 40 because real film faces are softer
    # than drawn ones: a blurry face can still be rejected when labelling, a dropped one is gone.
    min_sharpness: float = 30.0
    # Files decoded at once, each in its own spawned process; 1 runs everything in this process.
    workers: int = field(default_factory=lambda: os.cpu_count() or 1)

    def __post_init__(self) -> None:
        if self.every < 1:
            raise ValueError(f"every must be >= 1 (1 = every frame), got {self.every}.")
        if self.min_size < 1:
            raise ValueError(f"min_size must be a positive number of pixels, got {self.min_size}.")
        if not 0 <= self.hash_threshold <= 64:
            raise ValueError(
                f"hash_threshold is a Hamming distance of 64-bit hashes: use 0-64, got {self.hash_threshold}."
            )
        if self.min_sharpness < 0:
            raise ValueError(f"min_sharpness must be >= 0 (0 keeps blurry faces), got {self.min_sharpness}.")
        if self.workers < 1:
            raise ValueError(f"workers must be >= 1, got {self.workers}.")


@dataclass
class ExtractSummary:
    """What one run did. Counts cover this run only; `seconds` is its wall time."""

    done: list[Path] = field(default_factory=list)  # files processed to the end in this run
    skipped: list[Path] = field(default_factory=list)  # finished by an earlier run and unchanged
    failed: dict[Path, str] = field(default_factory=dict)  # unreadable or unknown file -> why
    frames: int = 0  # frames (and photos) run through the detector
    kept: int = 0  # faces written to the pool
    blurry: int = 0  # faces dropped as blurry
    duplicates: int = 0  # faces dropped as near-duplicates (of this run's faces or the pool's)
    resumed: int = 0  # faces found again in a redone file, already in the pool from a killed run
    seconds: float = 0.0

    def describe(self) -> str:
        """One line of counts and rates, then one line per failed input with the reason."""
        files = f"{len(self.done)} files done, {len(self.skipped)} skipped (finished before)"
        files += f", {len(self.failed)} failed"
        faces = f"{self.kept} faces kept, {self.blurry} dropped as blurry, {self.duplicates} as duplicates"
        if self.resumed:
            faces += f", {self.resumed} already in the pool"
        speed = f"{self.frames} frames in {self.seconds:.1f} s"
        if self.seconds > 0:
            speed += f" ({self.frames / self.seconds:.1f} frames/s, {self.kept / self.seconds:.1f} faces/s)"
        lines = [f"{files}; {faces}; {speed}"]
        lines += [f"  failed: {path}: {why}" for path, why in self.failed.items()]
        return "\n".join(lines)


@dataclass(frozen=True)
class FileTask:
    """One input file for a worker: what to read and how."""

    path: Path  # absolute, resolved
    kind: str  # "video" or "image"
    config: ExtractConfig
    # Size and mtime before reading, recorded in done.jsonl: a file still growing while it is
    # read (a download, a recording) then differs on the next run and is redone.
    size: int
    mtime: float


@dataclass(frozen=True)
class FaceRecord:
    """A kept face as a worker hands it to the parent, which names and writes it."""

    frame: int  # frame index in the video; 0 for a photo
    face: int  # index among the frame's detections, largest first
    timestamp: float | None  # seconds into the video; None for a photo
    box: tuple[int, int, int, int]  # x, y, w, h of the detection in the source frame
    hash: int  # 64-bit phash of the crop
    sharpness: float  # variance of the Laplacian of the grey crop
    image: np.ndarray  # 100x100x3 uint8 RGB, as crop_face cuts it


@dataclass
class FileResult:
    """Everything one file gave, after the within-file dedupe; `error` set means it failed."""

    path: Path
    faces: list[FaceRecord] = field(default_factory=list)
    frames: int = 0
    blurry: int = 0
    duplicates: int = 0
    error: str | None = None


ProgressFn = Callable[[Path, int, int], None]  # (file, frames read, frames expected or 0)


# ---------------------------------------------------------------------------------------------
# Per face: sharpness and perceptual hash


def sharpness(face: np.ndarray) -> float:
    """Variance of the Laplacian of the grey crop: edges make it large, blur makes it small."""
    return float(cv2.Laplacian(cv2.cvtColor(face, cv2.COLOR_RGB2GRAY), cv2.CV_64F).var())


def perceptual_hash(face: np.ndarray) -> int:
    """64-bit phash of an RGB crop: robust to JPEG noise, brightness and a few pixels of shift."""
    return int(str(imagehash.phash(Image.fromarray(face))), 16)


def hash_hex(value: int) -> str:
    return f"{value:016x}"


def _popcount(values: np.ndarray) -> np.ndarray:
    if hasattr(np, "bitwise_count"):  # numpy >= 2
        return np.bitwise_count(values)
    return np.unpackbits(values.view(np.uint8)).reshape(len(values), 64).sum(1)  # pragma: no cover


class HashIndex:
    """Kept hashes with a vectorised "is anything within distance d" query.

    A linear XOR + popcount over a uint64 array: ~0.07 ms for 100k faces, simpler than a BK-tree
    and fast enough for a pool a person can still label.
    """

    def __init__(self) -> None:
        self._hashes = np.empty(1024, np.uint64)
        self._n = 0

    def __len__(self) -> int:
        return self._n

    def add(self, value: int) -> None:
        if self._n == len(self._hashes):
            self._hashes = np.concatenate([self._hashes, np.empty_like(self._hashes)])
        self._hashes[self._n] = value
        self._n += 1

    def near(self, value: int, threshold: int) -> bool:
        if not self._n:
            return False
        return bool(_popcount(self._hashes[: self._n] ^ np.uint64(value)).min() <= threshold)


# ---------------------------------------------------------------------------------------------
# Worker side: decode, detect, crop, filter. Runs in a spawned process (or inline for 1 worker).


@dataclass(frozen=True)
class _Frame:
    index: int
    timestamp: float | None
    rgb: np.ndarray


def _image_frames(path: Path) -> Iterator[_Frame]:
    yield _Frame(0, None, load_image(path))


def _video_frames(path: Path, every: int, progress: ProgressFn | None) -> Iterator[_Frame]:
    """Every `every`-th frame as RGB. grab() skips the colour conversion of the frames left out."""
    cap = cv2.VideoCapture(str(path))
    if not cap.isOpened():
        raise UnreadableMediaError(
            f"OpenCV cannot open {path.name} as a video: the file is damaged or its container is not "
            "supported by this OpenCV build; re-encode it (e.g. ffmpeg -i IN -c:v libx264 OUT.mp4)."
        )
    try:
        fps = cap.get(cv2.CAP_PROP_FPS) or 0.0
        expected = max(0, int(cap.get(cv2.CAP_PROP_FRAME_COUNT)))
        index, last_report = -1, time.monotonic()
        while cap.grab():
            index += 1
            if progress and time.monotonic() - last_report > PROGRESS_EVERY_S:
                progress(path, index, expected)
                last_report = time.monotonic()
            if index % every:
                continue
            ok, bgr = cap.retrieve()
            if not ok or bgr is None:
                log.warning("%s: frame %d could not be decoded; skipped.", path.name, index)
                continue
            yield _Frame(index, _timestamp(cap, index, fps), cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB))
    finally:
        cap.release()
    if index < 0:
        raise UnreadableMediaError(
            f"OpenCV opened {path.name} but decoded no frame: the file is truncated or uses a codec this "
            "OpenCV build lacks; re-encode it (e.g. ffmpeg -i IN -c:v libx264 OUT.mp4)."
        )
    if expected and index + 1 < expected * 0.9:
        log.warning("%s: read %d of %d frames; the file may be truncated.", path.name, index + 1, expected)
    if progress:
        progress(path, index + 1, index + 1)


def _timestamp(cap: cv2.VideoCapture, index: int, fps: float) -> float | None:
    # The container's own clock is right for variable frame rates; some demuxers report 0 for
    # every frame, then frame / fps is the best guess.
    ms = cap.get(cv2.CAP_PROP_POS_MSEC)
    if ms > 0 or index == 0:
        return round(ms / 1000.0, 3)
    return round(index / fps, 3) if fps > 0 else None


def _faces_in_frame(
    frame: _Frame, config: ExtractConfig, seen: HashIndex, result: FileResult
) -> Iterator[FaceRecord]:
    """The frame's faces that are sharp and not near a face already kept from this file."""
    for i, box in enumerate(detect_faces(frame.rgb, DetectConfig(min_size=config.min_size))):
        crop = crop_face(frame.rgb, box)
        sharp = sharpness(crop)
        if sharp < config.min_sharpness:  # before hashing: cheaper, and blurry faces are common
            result.blurry += 1
            continue
        value = perceptual_hash(crop)
        if seen.near(value, config.hash_threshold):
            result.duplicates += 1
            continue
        seen.add(value)
        yield FaceRecord(frame.index, i, frame.timestamp, tuple(box.as_list()), value, round(sharp, 2), crop)


def extract_file(task: FileTask, progress: ProgressFn | None = None) -> FileResult:
    """All kept faces of one file, deduplicated within the file (the parent dedupes across files).

    Deduping here keeps what crosses the process boundary small: a film gives thousands of frames
    of the same few faces, and only the distinct ones are sent back.
    """
    result, seen = FileResult(task.path), HashIndex()
    frames = (
        _image_frames(task.path)
        if task.kind == "image"
        else _video_frames(task.path, task.config.every, progress)
    )
    try:
        for frame in frames:
            result.frames += 1
            result.faces.extend(_faces_in_frame(frame, task.config, seen, result))
    except (ImageError, UnreadableMediaError) as err:
        return FileResult(task.path, error=str(err))
    return result


_progress_queue: MPQueue | None = None


def _init_worker(queue: MPQueue, threads: int) -> None:
    global _progress_queue
    _progress_queue = queue
    # Ctrl-C is the parent's to handle: a worker hit by it would report the interrupt as its
    # file's result and go on with the next queued file.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    # Each worker has its own file; OpenCV's default of one thread per core would oversubscribe.
    cv2.setNumThreads(threads)


def _report_to_parent(path: Path, done: int, expected: int) -> None:
    if _progress_queue is not None:
        _progress_queue.put((path, done, expected))


def _extract_in_worker(task: FileTask) -> FileResult:
    return extract_file(task, _report_to_parent)


# ---------------------------------------------------------------------------------------------
# Inputs: what to read, in a fixed order (the order decides which of two duplicates is kept).


def _is_hidden(path: Path, root: Path) -> bool:
    return any(part.startswith(".") for part in path.relative_to(root).parts)


def expand_inputs(inputs: Iterable[Path], pool: Path) -> tuple[list[Path], dict[Path, str]]:
    """Files to read (folders searched recursively, sorted; each file once) and the missing inputs.

    Hidden files and the pool itself are left out, so a pool kept inside a photo folder is never
    mined for faces of its own faces.
    """
    pool, files, seen, missing = pool.resolve(), [], set(), {}
    for given in inputs:
        path = Path(given).resolve()
        if path.is_dir():
            found = sorted(p for p in path.rglob("*") if p.is_file() and not _is_hidden(p, path))
        elif path.is_file():
            found = [path]
        else:
            missing[Path(given)] = "no such file or folder: check the path."
            continue
        for p in found:
            if p not in seen and not p.is_relative_to(pool):
                seen.add(p)
                files.append(p)
    return files, missing


def media_kind(path: Path) -> str:
    """The kind of file, "video" or "image"; UnreadableMediaError says why it is neither."""
    suffix = path.suffix.lower()
    named = kind_from_name(path)
    if named is not None:
        return named
    try:  # an image with an odd or missing extension: PIL reads only the header here
        with Image.open(path):
            return "image"
    except (UnidentifiedImageError, OSError) as err:
        raise UnreadableMediaError(
            f"not an image, and {suffix or 'no extension'} is not a video extension "
            f"({', '.join(sorted(VIDEO_EXTENSIONS))}): rename it if it is a video."
        ) from err


# ---------------------------------------------------------------------------------------------
# Parent side: the pool, written by one process only.


def _file_key(path: Path) -> tuple[str, int, float]:
    """What identifies a finished file in done.jsonl: path, size, mtime."""
    st = path.stat()
    return str(path), st.st_size, st.st_mtime


def _face_dir_name(source: Path) -> str:
    # The stem for people, a hash of the full path so two clips named "clip.mp4" never collide.
    stem = re.sub(r"[^A-Za-z0-9._-]+", "_", source.stem)[:60] or "file"
    return f"{stem}-{hashlib.sha1(str(source).encode()).hexdigest()[:8]}"


def _write_png(path: Path, rgb: np.ndarray) -> None:
    # Temp name then os.replace: a killed run never leaves a truncated PNG under a final name.
    ok, png = cv2.imencode(".png", rgb[:, :, ::-1])
    if not ok:
        raise RuntimeError(f"OpenCV could not encode {path.name}.")
    write_file_atomically(path, png.tobytes())


def _fields(journal: Journal, keys: tuple[str, ...]) -> Iterator[tuple]:
    """The values of `keys` in each entry; an entry without them was not written by this tool."""
    for n, row in enumerate(journal.entries(), 1):
        try:
            yield tuple(row[key] for key in keys)
        except KeyError as err:
            raise ExtractError(
                f"Entry {n} of {journal.path} has no {err} field, so this tool did not write it: "
                f"{str(row)[:200]}. Fix or delete that line, or use another --out."
            ) from None


class FacePool:
    """POOL/faces, manifest.jsonl and done.jsonl; one writer, crash-safe at every step.

    Both lists are journals (emotion.storage.files.Journal). Order of writes for a file: each face PNG
    (atomic), then its manifest line (flushed); after the file's last face, the manifest is
    fsynced and only then its done line is appended (fsynced). So a manifest line always has its
    image, and a done line always has all its faces.
    """

    def __init__(self, root: Path, hash_threshold: int) -> None:
        self.root, self.hash_threshold = root, hash_threshold
        self.index = HashIndex()
        self.written: set[tuple[str, int, int, str]] = set()  # (source, frame, face, hash) in the manifest
        self.finished: set[tuple[str, int, float]] = set()  # (path, size, mtime) in done.jsonl
        self._lock = self._manifest = self._done = None

    def __enter__(self) -> FacePool:
        (self.root / FACES).mkdir(parents=True, exist_ok=True)
        self._take_lock()  # before the journals are opened: opening repairs them
        try:
            self._manifest = Journal(self.root / MANIFEST)
            self._done = Journal(self.root / DONE)
            self._load()
        except BaseException:
            self.__exit__()
            raise
        return self

    def _load(self) -> None:
        for source, frame, face, hex_hash in _fields(self._manifest, ("source", "frame", "face", "hash")):
            self.index.add(int(hex_hash, 16))
            self.written.add((source, frame, face, hex_hash))
        self.finished = set(_fields(self._done, ("path", "size", "mtime")))

    def __exit__(self, *exc) -> None:
        for f in (self._manifest, self._done, self._lock):
            if f is not None:
                f.close()

    def _take_lock(self) -> None:
        # flock, not a lock file: the kernel drops it when a killed run dies, so resuming just works.
        self._lock = open(self.root / LOCK, "a")  # noqa: SIM115
        if fcntl is None:  # pragma: no cover
            return
        try:
            fcntl.flock(self._lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError as err:
            self._lock.close()
            raise ExtractError(
                f"Another extraction is writing to {self.root}: wait for it to finish or use another --out."
            ) from err

    def is_finished(self, key: tuple[str, int, float]) -> bool:
        return key in self.finished

    def commit(self, task: FileTask, result: FileResult, summary: ExtractSummary) -> None:
        """Write a finished file's faces (dropping those near the pool), then its done line."""
        source = str(result.path)
        folder = self.root / FACES / _face_dir_name(result.path)
        kept_before = summary.kept
        for rec in result.faces:
            hex_hash = hash_hex(rec.hash)
            if (source, rec.frame, rec.face, hex_hash) in self.written:
                summary.resumed += 1  # written before a kill; its hash is already in the index
                continue
            if self.index.near(rec.hash, self.hash_threshold):
                summary.duplicates += 1
                continue
            folder.mkdir(exist_ok=True)
            name = f"{rec.frame:07d}_{rec.face}_{hex_hash}.png"
            _write_png(folder / name, rec.image)
            row = {
                "source": source,
                "frame": rec.frame,
                "face": rec.face,
                "timestamp": rec.timestamp,
                "box": list(rec.box),
                "hash": hex_hash,
                "sharpness": rec.sharpness,
                "file": f"{FACES}/{folder.name}/{name}",
            }
            # The image exists, so the line may go out now; one fsync for the file's lines below.
            self._manifest.append(row, sync=False)
            self.index.add(rec.hash)
            self.written.add((source, rec.frame, rec.face, hex_hash))
            summary.kept += 1
        self._manifest.sync()
        done = {
            "path": source,
            "size": task.size,
            "mtime": task.mtime,
            "frames": result.frames,
            "faces": summary.kept - kept_before,
        }
        self._done.append(done)
        self.finished.add((source, task.size, task.mtime))


# ---------------------------------------------------------------------------------------------
# Running it


class _Progress:
    """A files bar whose postfix shows each open file's frame progress (one line, any --workers)."""

    def __init__(self, total: int, enabled: bool | None) -> None:
        from tqdm import tqdm

        # disable=None: no bar when stderr is not a terminal (logs, CI).
        self.bar = tqdm(
            total=total, desc="files", unit="file", disable=None if enabled is None else not enabled
        )
        self.open: dict[Path, str] = {}
        self.kept = 0
        self._shown = 0.0

    def frames(self, path: Path, done: int, expected: int) -> None:
        self.open[path] = f"{done * 100 // expected}%" if expected else f"{done}fr"
        if time.monotonic() - self._shown > 0.2:  # redrawing on every report would flicker
            self._show()

    def file_done(self, path: Path, kept: int) -> None:
        self.open.pop(path, None)
        self.kept = kept
        self.bar.update()
        self._show()

    def _show(self) -> None:
        names = " | ".join(f"{p.name[:24]} {v}" for p, v in self.open.items())
        self.bar.set_postfix_str(f"faces={self.kept}" + (f" | {names}" if names else ""))
        self._shown = time.monotonic()

    def close(self) -> None:
        self.bar.close()


OnResult = Callable[[FileTask, FileResult], None]


def _run_inline(tasks: list[FileTask], on_result: OnResult, progress: _Progress) -> None:
    for task in tasks:
        on_result(task, extract_file(task, progress.frames))


def _run_in_pool(tasks: list[FileTask], workers: int, on_result: OnResult, progress: _Progress) -> None:
    """Workers decode files in parallel; results are committed strictly in input order.

    In-order commits make the pool independent of --workers and of which file finishes first
    (which of two near-duplicates is kept depends on order). The window of files in flight is
    bounded, so finished results waiting behind a long video cannot pile up in memory.
    """
    # spawn, not fork: the parent may hold torch/OpenMP threads, which a forked child inherits broken.
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    threads = max(1, (os.cpu_count() or 1) // workers)
    pool = ProcessPoolExecutor(workers, mp_context=ctx, initializer=_init_worker, initargs=(queue, threads))
    window: deque[tuple[FileTask, Future[FileResult]]] = deque()
    pending = iter(tasks)
    try:
        while True:
            while len(window) < 4 * workers and (task := next(pending, None)) is not None:
                window.append((task, pool.submit(_extract_in_worker, task)))
            if not window:
                break
            task, future = window[0]
            wait([future], timeout=0.25)
            _drain(queue, progress)
            if future.done():
                window.popleft()
                on_result(task, future.result())
    except BaseException:
        _stop_workers(pool)
        raise
    pool.shutdown()


def _stop_workers(pool: ProcessPoolExecutor) -> None:
    """Ctrl-C or an error: stop now rather than wait for workers inside a long video. Workers
    only compute (the parent alone writes the pool), so killing them loses nothing."""
    if hasattr(pool, "terminate_workers"):  # Python >= 3.14
        pool.terminate_workers()
        return
    processes = list((pool._processes or {}).values())  # shutdown() forgets them: take them first
    pool.shutdown(wait=False, cancel_futures=True)
    for process in processes:
        process.terminate()


def _drain(queue: MPQueue, progress: _Progress) -> None:
    while True:
        try:
            progress.frames(*queue.get_nowait())
        except Empty:
            return


def _plan(
    files: list[Path], pool: FacePool, config: ExtractConfig, summary: ExtractSummary
) -> list[FileTask]:
    tasks = []
    for path in files:
        try:
            key = _file_key(path)
            if pool.is_finished(key):
                summary.skipped.append(path)
                continue
            tasks.append(FileTask(path, media_kind(path), config, size=key[1], mtime=key[2]))
        except UnreadableMediaError as err:
            summary.failed[path] = str(err)
        except OSError as err:  # vanished or unreadable since the folder was listed
            summary.failed[path] = f"cannot read it ({err.strerror}): check it exists and is readable."
    return tasks


def extract(
    inputs: list[Path], pool: Path, config: ExtractConfig, *, progress: bool | None = None
) -> ExtractSummary:
    """Extract the faces of `inputs` (videos, photos, folders) into the face pool at `pool`.

    Unreadable or unknown files are listed in `summary.failed` with the reason and the run goes
    on. Rerunning with the same inputs resumes: files in done.jsonl (same size and mtime) are
    skipped. `progress`: None shows tqdm bars only on a terminal.
    """
    t0 = time.perf_counter()
    summary = ExtractSummary()
    files, missing = expand_inputs(inputs, Path(pool))
    summary.failed.update(missing)
    with FacePool(Path(pool).resolve(), config.hash_threshold) as face_pool:
        tasks = _plan(files, face_pool, config, summary)
        if summary.skipped:
            log.info("Skipping %d files finished by an earlier run.", len(summary.skipped))
        bar = _Progress(len(tasks), progress)

        def on_result(task: FileTask, result: FileResult) -> None:
            if result.error:
                summary.failed[result.path] = result.error
                log.warning("%s: %s", result.path, result.error)
            else:
                face_pool.commit(task, result, summary)
                summary.done.append(result.path)
                summary.frames += result.frames
                summary.blurry += result.blurry
                summary.duplicates += result.duplicates
            bar.file_done(result.path, summary.kept)

        try:
            workers = min(config.workers, len(tasks))
            if workers > 1:
                _run_in_pool(tasks, workers, on_result, bar)
            else:
                _run_inline(tasks, on_result, bar)
        finally:
            bar.close()
    summary.seconds = time.perf_counter() - t0
    log.info("Extraction into %s: %s", pool, summary.describe())
    return summary


# ---------------------------------------------------------------------------------------------
# CLI


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def _check_inputs_exist(inputs: list[Path]) -> None:
    """A path typed on the command line that is not there is a typo: say so before hours of work."""
    missing = [str(path) for path in inputs if not path.exists()]
    if missing:
        raise ExtractError(f"No such file or folder: {', '.join(missing)}. Check the path(s) and rerun.")


@command
def main(argv: list[str] | None = None) -> int:
    """CLI. Exit status 0: every input read; 1: the run finished but some inputs failed (listed in
    the log); 2: bad arguments, a missing input, or the pool is busy or damaged (one line on
    stderr); 130: interrupted (rerun to resume)."""
    from tqdm.contrib.logging import logging_redirect_tqdm

    defaults = ExtractConfig()
    parser = argparse.ArgumentParser(
        prog=program_name("training.extract"),
        description="Cut 100x100 faces out of videos and photos into a deduplicated face pool.",
        epilog="Rerun the same command after an interruption: finished files are skipped.",
    )
    parser.add_argument(
        "inputs", nargs="+", type=Path, metavar="INPUT", help="video, image or folder (recursive)"
    )
    parser.add_argument("--out", type=Path, required=True, metavar="POOL", help="face pool folder (created)")
    parser.add_argument(
        "--every", type=_positive_int, default=defaults.every, help="look at every N-th frame"
    )
    parser.add_argument(
        "--min-size", type=_positive_int, default=defaults.min_size, help="smallest face side, px"
    )
    parser.add_argument(
        "--hash-threshold",
        type=int,
        default=defaults.hash_threshold,
        help="phash distance counted as duplicate",
    )
    parser.add_argument(
        "--min-sharpness",
        type=float,
        default=defaults.min_sharpness,
        help="Laplacian variance below = blurry",
    )
    parser.add_argument(
        "--workers", type=_positive_int, default=defaults.workers, help="files decoded at once"
    )
    args = parser.parse_args(argv)
    try:
        config = ExtractConfig(
            every=args.every,
            min_size=args.min_size,
            hash_threshold=args.hash_threshold,
            min_sharpness=args.min_sharpness,
            workers=args.workers,
        )
    except ValueError as err:
        parser.error(str(err))
    _check_inputs_exist(args.inputs)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        with logging_redirect_tqdm():
            summary = extract(args.inputs, args.out, config)
    except KeyboardInterrupt:
        log.warning("Interrupted: rerun the same command to resume (finished files are skipped).")
        return 130
    return 1 if summary.failed else 0


if __name__ == "__main__":
    sys.exit(main())
