"""Labelling: the journal is the state, the tree follows it, a restart carries on; the page shows it."""

from __future__ import annotations

import json
import logging
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from emotion import EMOTIONS
from emotion.storage.files import JournalError
from training.label.page import PageConfig, main, page_values
from training.label.session import LOG_NAME, LabelError, LabelSession, tree_name
from training.synthetic import make_face

from .conftest import serve

# Two folders with the same file names: the tree must still get one file per face.
POOL_FILES = [f"clip_{c}/face_{i}.png" for c in "ab" for i in range(4)]


def _write_face(path: Path, i: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(make_face(EMOTIONS[i % len(EMOTIONS)], np.random.default_rng(i)).image).save(path)


@pytest.fixture
def pool(tmp_path) -> Path:
    folder = tmp_path / "pool"
    for i, rel in enumerate(POOL_FILES):
        _write_face(folder / rel, i)
    return folder


@pytest.fixture
def out(tmp_path) -> Path:
    return tmp_path / "dataset"


def _tree(out: Path) -> dict[str, bytes]:
    """Every image in the ImageFolder tree, as {"<emotion>/<name>": bytes}."""
    return {
        p.relative_to(out).as_posix(): p.read_bytes() for e in EMOTIONS for p in sorted((out / e).glob("*"))
    }


def _log_entries(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / LOG_NAME).read_text().splitlines()]


def test_pool_order_is_sorted_paths_or_the_manifest(pool, out):
    with LabelSession(pool, out) as session:
        assert session.files == tuple(sorted(POOL_FILES))
        assert session.current() == "clip_a/face_0.png"
        assert session.upcoming(2) == ["clip_a/face_1.png", "clip_a/face_2.png"]
    order = ["clip_b/face_3.png", "clip_a/face_0.png", "gone.png", "clip_b/face_3.png"]
    lines = [json.dumps({"file": f, "box": [0, 0, 9, 9]}) for f in order] + ['{"file": "clip_a/fa']
    (pool / "manifest.jsonl").write_text("\n".join(lines))
    with LabelSession(pool, out.with_name("other")) as session:
        # Manifest order; a missing file, a duplicate and a broken last line are left out.
        assert session.files == ("clip_b/face_3.png", "clip_a/face_0.png")


def test_tree_names_are_flat_and_unique():
    assert tree_name("clip_a/face_0.png") == "clip_a__face_0.png"
    assert tree_name("face.jpg") == "face.jpg.png"  # beside face.png, still two files
    assert tree_name("face.PNG") == "face.png"


def test_assign_skip_undo_keep_tree_and_counts_in_step(pool, out):
    with LabelSession(pool, out) as s:
        first = s.assign("happy")
        assert first.file == "clip_a/face_0.png"
        saved = out / "happy" / "clip_a__face_0.png"
        assert np.array_equal(np.asarray(Image.open(saved)), np.asarray(Image.open(pool / first.file)))
        assert s.skip().file == "clip_a/face_1.png"
        assert s.counts() == {"happy": 1, "sad": 0, "neutral": 0, "angry": 0, "surprised": 0, "skip": 1}
        assert (s.progress().done, s.progress().total, s.progress().skipped) == (2, 8, 1)
        assert set(_tree(out)) == {"happy/clip_a__face_0.png"}  # a skip writes nothing

        # Undo of a skip: the face comes back, nothing in the tree changes.
        assert s.undo().label == "skip"
        assert s.current() == "clip_a/face_1.png"
        assert s.counts()["skip"] == 0
        # Undo of a label: the copy goes; relabelling puts it in the new class.
        assert s.undo() == first
        assert s.current() == first.file and _tree(out) == {}
        s.assign("sad")
        assert set(_tree(out)) == {"sad/clip_a__face_0.png"}

        # The same file name in two folders gives two files.
        for _ in range(3):
            s.assign("angry")
        s.assign("surprised")  # clip_b/face_0.png
        tree = set(_tree(out))
        assert {"angry/clip_a__face_3.png", "surprised/clip_b__face_0.png"} <= tree and len(tree) == 5
        assert s.counts() == {"happy": 0, "sad": 1, "neutral": 0, "angry": 3, "surprised": 1, "skip": 0}
    assert [e.get("label", "undo") for e in _log_entries(out)] == [
        "happy", "skip", "undo", "undo", "sad", "angry", "angry", "angry", "surprised",
    ]  # fmt: skip
    assert all("time" in e for e in _log_entries(out))


def test_mistakes_are_errors_that_say_what_to_do(pool, out, tmp_path):
    with LabelSession(pool, out) as s:
        with pytest.raises(LabelError, match="Nothing to undo"):
            s.undo()
        with pytest.raises(LabelError, match="use one of happy"):
            s.assign("hapy")
        for _ in POOL_FILES:
            s.skip()
        assert s.current() is None and s.upcoming() == []
        with pytest.raises(LabelError, match="All faces are sorted. Press undo"):
            s.assign("happy")
        # A second session on the same dataset would interleave its lines with ours.
        if sys.platform != "win32":
            with pytest.raises(LabelError, match="in use by another labelling session"):
                LabelSession(pool, out)
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(LabelError, match=re.escape(f"No faces to label in {empty}")):
        LabelSession(empty, out)


def test_a_restart_carries_on_where_it_stopped(pool, out):
    with LabelSession(pool, out) as s:
        for label in ("happy", "sad", "skip", "angry"):
            s.assign(label)
        s.undo()  # angry on clip_a/face_3
        s.assign("neutral")
        before = (s.current(), s.counts(), s.history(), _tree(out))
    mtimes = {p: p.stat().st_mtime_ns for p in out.rglob("*.png")}

    with LabelSession(pool, out) as s:
        assert (s.current(), s.counts(), s.history(), _tree(out)) == before
        assert s.current() == "clip_b/face_0.png"
        assert {p: p.stat().st_mtime_ns for p in out.rglob("*.png")} == mtimes  # nothing rewritten
        s.undo()  # undo still reaches back past the restart
        assert s.current() == "clip_a/face_3.png"
        assert not (out / "neutral" / "clip_a__face_3.png").exists()


def test_a_line_cut_short_by_a_crash_is_ignored_with_a_warning(pool, out, caplog):
    with LabelSession(pool, out) as s:
        s.assign("happy")
        s.assign("sad")
        before = (s.current(), s.counts(), _tree(out))
    with open(out / LOG_NAME, "ab") as f:
        f.write(b'{"file": "clip_a/face_2.png", "lab')  # the crash hit mid-write
    with caplog.at_level(logging.WARNING), LabelSession(pool, out) as s:
        assert (s.current(), s.counts(), _tree(out)) == before
        s.assign("angry")  # the next line must not land on the broken one
    assert any("cut short by a crash" in r.message for r in caplog.records)
    assert [e["label"] for e in _log_entries(out)] == ["happy", "sad", "angry"]

    # A broken line in the middle is not a crash: refuse to guess.
    lines = (out / LOG_NAME).read_text().splitlines()
    (out / LOG_NAME).write_text("\n".join([lines[0], "{oops", *lines[1:]]) + "\n")
    with pytest.raises(JournalError, match=f"{LOG_NAME} line 2 is not a JSON object"):
        LabelSession(pool, out)


def test_a_whole_entry_that_is_no_decision_is_refused_wherever_it_is(pool, out):
    """Valid JSON that this session could not have written was edited by hand: name it, drop nothing."""
    with LabelSession(pool, out) as s:
        s.assign("happy")
    with open(out / LOG_NAME, "a") as f:
        f.write(json.dumps({"file": "clip_a/face_1.png", "label": "hapy"}) + "\n")
    with pytest.raises(LabelError, match=r"Entry 2 of .*labels.jsonl is not a valid decision.*hapy"):
        LabelSession(pool, out)
    assert len(_log_entries(out)) == 2  # refused, not repaired


def test_the_command_prints_one_line_and_exits_2_on_a_missing_pool(tmp_path, capsys):
    assert main([str(tmp_path / "nowhere"), "--out", str(tmp_path / "dataset")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: The face pool") and "\n" not in err and "Traceback" not in err


def test_the_tree_is_repaired_from_the_log_at_start(pool, out):
    """A crash between the log line and the copy leaves the tree behind; the next start fixes it."""
    with LabelSession(pool, out) as s:
        s.assign("happy")
        s.assign("sad")
        s.undo()
    (out / "happy" / "clip_a__face_0.png").unlink()  # copy never written
    (out / "sad" / "clip_a__face_1.png").write_bytes(b"stale")  # undo never removed it
    (out / "happy" / ".clip_a__face_0.png.tmp").write_bytes(b"half")  # temp file left behind
    (out / "angry").mkdir()
    (out / "angry" / "mine.png").write_bytes(b"added by hand")  # not ours: stays
    with LabelSession(pool, out):
        assert set(_tree(out)) == {"happy/clip_a__face_0.png", "angry/mine.png"}
        assert not (out / "happy" / ".clip_a__face_0.png.tmp").exists()


def test_page_shows_the_face_large_and_an_all_done_state(pool, out):
    config = PageConfig()
    with LabelSession(pool, out) as s:
        face, where, strip, progress, _bar, counts, _note, shown, *buttons = page_values(s, config)
        assert face["value"].shape == (300, 300, 3) and shown == "clip_a/face_0.png"
        assert len(strip["value"]) == len(POOL_FILES) - 1 and "Face **1** of 8" in where
        assert "**0 / 8**" in progress and "| happy |" in counts
        for _ in POOL_FILES:
            s.assign("neutral")
        face, where, strip, progress, *_, shown, b1, b2, b3, b4, b5, skip = page_values(s, config)
        assert not face["visible"] and not strip["visible"] and shown is None
        assert "All done" in progress and "undo" in where
        assert not any(b.interactive for b in (b1, b2, b3, b4, b5, skip))


# -- end to end: the page's named endpoints through gradio_client, across a killed server ------


def _serve(pool: Path, out: Path, log: Path) -> tuple[subprocess.Popen, str]:
    return serve(["-m", "training.label", str(pool), "--out", str(out)], log, timeout=90)


@pytest.mark.slow
def test_page_endpoints_survive_a_killed_server(pool, out, tmp_path):
    from gradio_client import Client
    from gradio_client.exceptions import AppError

    log = tmp_path / "server.log"
    proc, url = _serve(pool, out, log)
    try:
        client = Client(url, verbose=False)
        with pytest.raises(AppError, match="Nothing to undo"):
            client.predict(api_name="/undo")
        done = client.predict("happy", api_name="/label")
        assert (done["file"], done["label"], done["current"]) == (
            "clip_a/face_0.png",
            "happy",
            "clip_a/face_1.png",
        )
        client.predict("skip", api_name="/label")
        undone = client.predict(api_name="/undo")
        assert (undone["undone"], undone["label"], undone["done"]) == ("clip_a/face_1.png", "skip", 1)
        client.predict("sad", api_name="/label")
        last = client.predict("surprised", api_name="/label")
        assert last["counts"]["surprised"] == 1 and last["current"] == "clip_a/face_3.png"
    finally:
        proc.kill()  # SIGKILL: no clean shutdown, as in a crash
        proc.wait(timeout=30)

    tree = {"happy/clip_a__face_0.png", "sad/clip_a__face_1.png", "surprised/clip_a__face_2.png"}
    assert set(_tree(out)) == tree
    proc, url = _serve(pool, out, log)
    try:
        client = Client(url, verbose=False)
        status = client.predict(api_name="/status")
        assert (status["current"], status["done"], status["total"]) == ("clip_a/face_3.png", 3, 8)
        assert status["counts"] == {"happy": 1, "sad": 1, "neutral": 0, "angry": 0, "surprised": 1, "skip": 0}
        assert set(_tree(out)) == tree
        assert client.predict("angry", api_name="/label")["file"] == "clip_a/face_3.png"
        assert set(_tree(out)) == tree | {"angry/clip_a__face_3.png"}
    finally:
        proc.terminate()
        proc.wait(timeout=30)
