"""Face extraction into a pool: planted faces are found, repeats and blur are dropped, bad files
are reported, a killed run resumes, and the pool does not depend on the number of workers."""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image

from bench.video import write_clip
from emotion.labels import EMOTIONS
from emotion.photo.faces import Box, crop_face
from emotion.video.frames import read_frames
from training.extract import (
    DONE,
    MANIFEST,
    ExtractConfig,
    ExtractError,
    FacePool,
    extract,
    main,
    perceptual_hash,
)
from training.synthetic import make_face

ROOT = Path(__file__).resolve().parents[1]
W, H, FPS = 320, 240, 10
SOLO = ExtractConfig(workers=1, every=2)  # inline: no process start-up in the quick tests
MEDIA = ExtractConfig(workers=1, every=3)  # for the `media` fixture: the cascade is ~20 ms a frame


@dataclasses.dataclass(frozen=True)
class Planted:
    face_id: int  # which drawn face: the same id in every frame that shows it
    box: tuple[int, int, int, int]  # x, y, w, h of the pasted face image in the frame


def _background(rng: np.random.Generator) -> np.ndarray:
    """A plain horizontal gradient between two random colours: no texture the cascade could mistake."""
    a, b = rng.uniform(40, 220, 3), rng.uniform(40, 220, 3)
    ramp = np.linspace(0.0, 1.0, W)[None, :, None]
    return np.broadcast_to(a + (b - a) * ramp, (H, W, 3)).astype(np.uint8).copy()


def _scene(rng: np.random.Generator, first_id: int, n_faces: int) -> tuple[np.ndarray, list[Planted]]:
    """A frame with 1 or 2 distinct drawn faces side by side."""
    frame, planted = _background(rng), []
    slots = [(10, 150)] if n_faces == 1 else [(5, 130), (165, 130)]
    for k, (x0, size_max) in enumerate(slots):
        size = int(rng.integers(120, size_max + 1))
        x = x0 + int(rng.integers(0, 150 - size + 1 if n_faces == 2 else W - size - x0))
        y = int(rng.integers(0, H - size + 1))
        label = EMOTIONS[(first_id + k) % len(EMOTIONS)]
        frame[y : y + size, x : x + size] = make_face(
            label, np.random.default_rng([7, first_id + k]), size=size
        ).image
        planted.append(Planted(first_id + k, (x, y, size, size)))
    return frame, planted


def make_video(path: Path, seed: int, scenes: int, repeat: int) -> list[list[Planted]]:
    """A clip of `scenes` scenes, each frame shown `repeat` times (identical frames), with a
    faceless frame after every other scene and a blurred scene at the end. Returns the planted
    faces of every frame ([] for faceless and blurred frames)."""
    rng = np.random.default_rng(seed)
    frames, truth, next_id = [], [], seed * 100
    for s in range(scenes):
        frame, planted = _scene(rng, next_id, 1 + s % 2)
        next_id += len(planted)
        frames += [frame] * repeat
        truth += [planted] * repeat
        if s % 2:
            frames.append(_background(rng))
            truth.append([])
    blurred, _ = _scene(rng, next_id, 2)  # two faces: the cascade misses some blurred ones
    frames += [cv2.GaussianBlur(blurred, (0, 0), 3.0)] * 2
    truth += [[], []]
    write_clip(path, frames, fps=FPS)
    return truth


def _manifest(pool: Path) -> list[dict]:
    return [json.loads(line) for line in (pool / MANIFEST).read_text().splitlines()]


def _done(pool: Path) -> list[dict]:
    return [json.loads(line) for line in (pool / DONE).read_text().splitlines()]


def _inside(box: list[int], planted: Planted) -> float:
    """Share of the detected box that lies inside the planted face image."""
    x, y, w, h = box
    px, py, pw, ph = planted.box
    ix = max(0, min(x + w, px + pw) - max(x, px))
    iy = max(0, min(y + h, py + ph) - max(y, py))
    return ix * iy / (w * h)


# ---------------------------------------------------------------------------------------------


def test_video_faces_are_found_once_each_and_described_in_the_manifest(tmp_path):
    video = tmp_path / "clip.avi"
    truth = make_video(video, seed=1, scenes=6, repeat=4)
    planted_ids = {p.face_id for planted in truth for p in planted}
    pool = tmp_path / "pool"

    summary = extract([video], pool, SOLO, progress=False)

    rows = _manifest(pool)
    assert summary.done == [video.resolve()] and not summary.failed and summary.kept == len(rows)
    assert summary.frames == len(range(0, len(truth), SOLO.every))
    found = []
    for row in rows:
        assert row["frame"] % SOLO.every == 0
        # Every kept face sits on a planted one (no background false positives).
        match = [p for p in truth[row["frame"]] if _inside(row["box"], p) > 0.6]
        assert len(match) == 1, f"face at {row['box']} in frame {row['frame']} matches no planted face"
        found.append(match[0].face_id)
    assert len(set(found)) >= 0.8 * len(planted_ids)
    # Each planted face is shown in 4 identical frames (2 of them examined): kept once.
    assert len(found) == len(set(found))
    faces_shown = sum(len(planted) for i, planted in enumerate(truth) if i % SOLO.every == 0)
    assert len(rows) <= faces_shown // 2
    assert summary.duplicates >= len(rows)  # the second examined copy of each face, at least
    assert summary.blurry >= 1  # the blurred scene is detected but too soft to keep

    decoded = list(read_frames(video))
    for row in rows:
        assert set(row) == {"source", "frame", "face", "timestamp", "box", "hash", "sharpness", "file"}
        assert row["source"] == str(video.resolve())
        assert row["timestamp"] == pytest.approx(row["frame"] / FPS, abs=1e-3)
        assert row["sharpness"] >= SOLO.min_sharpness
        png = np.asarray(Image.open(pool / row["file"]))
        assert png.shape == (100, 100, 3) and png.dtype == np.uint8
        # The very crop the app would cut from that frame, and the hash is that crop's phash.
        np.testing.assert_array_equal(png, crop_face(decoded[row["frame"]], Box(*row["box"])))
        assert row["hash"] == f"{perceptual_hash(png):016x}"
    (done,) = _done(pool)
    assert done["path"] == str(video.resolve()) and done["faces"] == len(rows)
    assert (done["size"], done["mtime"]) == (video.stat().st_size, video.stat().st_mtime)


def test_photos_and_folders_with_bad_files_are_reported_and_the_run_goes_on(tmp_path):
    rng = np.random.default_rng(3)
    photos = tmp_path / "photos"
    (photos / "deeper").mkdir(parents=True)
    Image.fromarray(_scene(rng, 500, 1)[0]).save(photos / "a.png")
    Image.fromarray(_scene(rng, 510, 2)[0]).save(photos / "deeper" / "b.jpg", quality=95)
    Image.fromarray(_background(rng)).save(photos / "empty.png")
    (photos / "corrupt.jpg").write_bytes(np.random.default_rng(0).bytes(3000))
    (photos / "broken.mp4").write_bytes(np.random.default_rng(1).bytes(3000))
    (photos / "notes.txt").write_text("not a picture\n" * 20)
    pool = photos / "pool"  # inside an input folder: must not be read back as input
    missing = tmp_path / "missing.png"

    summary = extract([photos, missing], pool, SOLO, progress=False)

    names = {p.name for p in summary.failed}
    assert names == {"corrupt.jpg", "broken.mp4", "notes.txt", "missing.png"}
    reasons = {p.name: why for p, why in summary.failed.items()}
    assert "not a readable image" in reasons["corrupt.jpg"]
    assert "cannot open" in reasons["broken.mp4"] and "re-encode" in reasons["broken.mp4"]
    assert "rename it if it is a video" in reasons["notes.txt"]
    assert "no such file" in reasons["missing.png"]
    assert {p.name for p in summary.done} == {"a.png", "b.jpg", "empty.png"}
    rows = _manifest(pool)
    assert summary.kept == len(rows) == 3
    assert all(r["frame"] == 0 and r["timestamp"] is None for r in rows)
    assert {Path(r["source"]).name for r in rows} == {"a.png", "b.jpg"}

    # Rerun through the CLI: finished photos are skipped, bad files reported again (exit 1), and
    # the pool's own PNGs are never taken for input.
    assert main([str(photos), "--out", str(pool), "--workers", "1"]) == 1
    assert _manifest(pool) == rows
    assert len(_done(pool)) == 3


def test_the_command_refuses_a_missing_input_in_one_line_before_any_work(tmp_path, capsys):
    Image.fromarray(_background(np.random.default_rng(0))).save(tmp_path / "there.png")
    missing = tmp_path / "typo.png"
    assert main([str(tmp_path / "there.png"), str(missing), "--out", str(tmp_path / "pool")]) == 2
    err = capsys.readouterr().err.strip()
    assert err == f"error: No such file or folder: {missing}. Check the path(s) and rerun."
    assert not (tmp_path / "pool").exists()  # refused before the pool was made


def test_a_second_run_on_the_same_pool_is_refused_while_one_holds_it(tmp_path):
    with FacePool(tmp_path, 6), pytest.raises(ExtractError, match="Another extraction"):
        extract([], tmp_path, SOLO)


def test_damaged_pool_journals_are_named_with_the_fix(tmp_path, capsys):
    (tmp_path / MANIFEST).write_text('{"source": "a", "frame": 0}\n')  # JSON, but not a face record
    with pytest.raises(ExtractError, match=r"Entry 1 of .*manifest.jsonl has no 'face' field"):
        extract([], tmp_path, SOLO)
    (tmp_path / MANIFEST).write_text("")
    (tmp_path / DONE).write_text('{oops\n{"path": "a", "size": 1, "mtime": 2.0}\n')
    assert main([str(tmp_path / MANIFEST), "--out", str(tmp_path)]) == 2  # through the command: one line
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "done.jsonl line 1 is not a JSON object" in err
    assert err.count("\n") == 1


def test_config_errors_say_what_to_use(tmp_path, capsys):
    with pytest.raises(ValueError, match="0-64"):
        ExtractConfig(hash_threshold=70)
    with pytest.raises(ValueError, match="every must be >= 1"):
        ExtractConfig(every=0)
    with pytest.raises(SystemExit) as exit_:
        main([str(tmp_path), "--out", str(tmp_path / "pool"), "--hash-threshold", "70"])
    assert exit_.value.code == 2 and "0-64" in capsys.readouterr().err


# ---------------------------------------------------------------------------------------------
# Resume and parallelism, on media shared by the tests below.


@pytest.fixture(scope="module")
def media(tmp_path_factory) -> list[Path]:
    """Two clips and a folder of photos; one photo repeats a face of the first clip."""
    root = tmp_path_factory.mktemp("media").resolve()
    make_video(root / "a_short.avi", seed=2, scenes=4, repeat=3)
    make_video(root / "b_long.avi", seed=3, scenes=16, repeat=12)
    photos = root / "c_photos"
    photos.mkdir()
    first = next(read_frames(root / "a_short.avi"))
    Image.fromarray(first).save(photos / "same_as_clip.png")
    Image.fromarray(_scene(np.random.default_rng(4), 900, 2)[0]).save(photos / "other.png")
    return [root / "a_short.avi", photos / "other.png", photos / "same_as_clip.png", root / "b_long.avi"]


@pytest.fixture(scope="module")
def clean_pool(media, tmp_path_factory) -> Path:
    pool = tmp_path_factory.mktemp("clean") / "pool"
    summary = extract(media, pool, MEDIA, progress=False)
    assert len(summary.done) == len(media)
    # The photo that repeats the clip's first frame adds nothing: its face is already pooled.
    assert not [r for r in _manifest(pool) if r["source"].endswith("same_as_clip.png")]
    return pool


def _hashes(pool: Path) -> list[str]:
    return [r["hash"] for r in _manifest(pool)]


def test_a_half_finished_file_is_redone_without_duplicating_its_faces(tmp_path, media, clean_pool):
    pool = tmp_path / "pool"
    shutil.copytree(clean_pool, pool)
    last = str(media[-1])
    rows = _manifest(pool)
    theirs = [r for r in rows if r["source"] == last]
    assert len(theirs) >= 2
    # As if killed while committing the last file: its done line and last manifest line missing,
    # that face's PNG already written, and half a manifest line at the end.
    (pool / DONE).write_text("".join(json.dumps(d) + "\n" for d in _done(pool) if d["path"] != last))
    kept_rows = [r for r in rows if r is not theirs[-1]]
    (pool / MANIFEST).write_text("".join(json.dumps(r) + "\n" for r in kept_rows) + '{"source": "/x", "fra')

    summary = extract(media, pool, MEDIA, progress=False)

    assert [p.name for p in summary.done] == [media[-1].name] and len(summary.skipped) == len(media) - 1
    assert summary.resumed == len(theirs) - 1 and summary.kept == 1
    assert _manifest(pool) == kept_rows + [theirs[-1]]
    assert sorted(d["path"] for d in _done(pool)) == sorted(str(p) for p in media)


@pytest.mark.slow
def test_a_killed_run_resumes_and_ends_with_the_clean_runs_pool(tmp_path, media, clean_pool):
    pool = tmp_path / "pool"
    cmd = [sys.executable, "-m", "training.extract", *map(str, media), "--out", str(pool)]
    cmd += ["--workers", "1", "--every", str(MEDIA.every)]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 120
        while not ((pool / DONE).exists() and (pool / DONE).read_text().count("\n") >= 1):
            assert proc.poll() is None, "the extraction ended before finishing its first file"
            assert time.monotonic() < deadline, "no file finished within 120 s"
            time.sleep(0.01)
        proc.kill()  # SIGKILL: no cleanup, like a crash or a power cut of the process
    finally:
        proc.kill()
        proc.wait()
    finished = _done(pool)
    assert 1 <= len(finished) < len(media), "the run finished before it could be killed: lengthen b_long"

    summary = extract(media, pool, MEDIA, progress=False)

    assert summary.skipped == media[: len(finished)]
    assert summary.done == media[len(finished) :]
    paths = [d["path"] for d in _done(pool)]
    assert sorted(paths) == sorted(str(p) for p in media)  # each file once
    hashes = _hashes(pool)
    assert len(hashes) == len(set(hashes)) and len({r["file"] for r in _manifest(pool)}) == len(hashes)
    assert set(hashes) == set(_hashes(clean_pool))


@pytest.mark.slow
def test_two_workers_give_the_same_pool_as_one(tmp_path, media, clean_pool):
    pool = tmp_path / "pool"
    summary = extract(media, pool, dataclasses.replace(MEDIA, workers=2), progress=False)
    assert len(summary.done) == len(media)
    # Commits happen in input order whatever finishes first, so even the order of the manifest
    # (which decides which of two near-duplicates is kept) is the same.
    assert _manifest(pool) == _manifest(clean_pool)
