"""The journal: whole entries survive, a torn last line is cut off, damage elsewhere is named."""

from __future__ import annotations

import json
import logging
import os
import stat
import sys

import pytest

from emotion.errors import EmotionLensError
from emotion.storage.files import Journal, JournalBusyError, JournalError, read_journal

ENTRIES = [{"file": "clip/é_0.png", "label": "happy"}, {"undo": "clip/é_0.png"}, {"n": 3, "box": [1, 2]}]


def _write(path, entries) -> None:
    with Journal(path) as journal:
        for entry in entries:
            journal.append(entry)


def _entries_of_an_open_journal(path) -> list[dict]:
    with Journal(path) as journal:
        return journal.entries()


def test_appended_entries_come_back_in_order_after_a_reopen(tmp_path):
    path = tmp_path / "new" / "log.jsonl"  # the folder is created too
    with Journal(path) as journal:
        assert journal.entries() == []
        for entry in ENTRIES:
            journal.append(entry)
        assert journal.entries() == ENTRIES
    with Journal(path) as journal:
        assert journal.entries() == ENTRIES
        journal.append({"more": True})
    assert read_journal(path) == [*ENTRIES, {"more": True}]
    # One JSON object a line, as the extractor and the labelling page have always written them.
    assert [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()] == read_journal(path)


def test_entries_are_copies_of_what_was_written_not_the_callers_objects(tmp_path):
    entry = {"box": [1, 2]}
    with Journal(tmp_path / "log.jsonl") as journal:
        journal.append(entry)
        entry["box"].append(3)
        assert journal.entries() == [{"box": [1, 2]}]
        with pytest.raises(TypeError, match="mapping"):
            journal.append(["not", "an", "object"])


def test_lines_written_before_the_journal_existed_still_read(tmp_path):
    """Pools and datasets from earlier versions: ASCII-escaped JSON, blank lines, no final newline."""
    path = tmp_path / "manifest.jsonl"
    old = [{"source": "/films/café.mp4", "frame": 5}, {"source": "/b.png", "frame": 0}]
    path.write_text(json.dumps(old[0]) + "\n\n" + json.dumps(old[1]), encoding="utf-8")
    with Journal(path) as journal:
        assert journal.entries() == old
        journal.append({"source": "/c.png", "frame": 0})  # lands on a line of its own
    assert read_journal(path) == [*old, {"source": "/c.png", "frame": 0}]


@pytest.mark.parametrize(
    "torn",
    [b'{"file": "clip/a.png", "lab', b'{"file": "\xc3', b"\x00\x00\x00\x00", b'{"file": "x"\n'],
    ids=["cut-json", "cut-utf8", "zeros", "cut-with-newline"],
)
def test_a_torn_last_line_is_cut_off_with_a_warning_and_whole_entries_kept(tmp_path, caplog, torn):
    path = tmp_path / "log.jsonl"
    _write(path, ENTRIES)
    whole = path.read_bytes()
    with open(path, "ab") as f:
        f.write(torn)  # what a crash mid-append leaves

    assert read_journal(path) == ENTRIES  # a reader beside the writer skips it ...
    assert path.read_bytes() == whole + torn  # ... and changes nothing
    with caplog.at_level(logging.WARNING, logger="emotion.storage.files"), Journal(path) as journal:
        assert journal.entries() == ENTRIES
        assert path.read_bytes() == whole  # the writer cuts it off
        journal.append({"next": 1})
    assert any("cut short by a crash" in r.message for r in caplog.records)
    assert read_journal(path) == [*ENTRIES, {"next": 1}]


def test_a_damaged_line_before_the_last_is_an_error_that_names_it(tmp_path):
    path = tmp_path / "log.jsonl"
    _write(path, ENTRIES)
    lines = path.read_text(encoding="utf-8").splitlines()
    for bad in ("{oops", "[1, 2]"):
        path.write_text("\n".join([lines[0], bad, *lines[1:]]) + "\n", encoding="utf-8")
        before = path.read_bytes()
        for read in (read_journal, _entries_of_an_open_journal):
            with pytest.raises(JournalError, match=r"log.jsonl line 2 is not a JSON object.*fix or delete"):
                read(path)
        assert path.read_bytes() == before  # nothing guessed away
    assert issubclass(JournalError, EmotionLensError)  # a command reports it in one line


@pytest.mark.skipif(sys.platform == "win32", reason="no flock on Windows")
def test_an_exclusive_journal_has_one_writer(tmp_path):
    path = tmp_path / "log.jsonl"
    with Journal(path, exclusive=True), pytest.raises(JournalBusyError, match="held by another process"):
        Journal(path, exclusive=True)
    with Journal(path, exclusive=True) as journal:  # closing released it
        journal.append({"ok": 1})


@pytest.mark.skipif(sys.platform == "win32", reason="folders cannot be fsynced on Windows")
def test_appends_reach_the_disk_and_so_does_a_new_files_name(tmp_path, monkeypatch):
    synced: list[str] = []
    real_fsync = os.fsync

    def fsync(fd: int) -> None:
        synced.append("folder" if stat.S_ISDIR(os.fstat(fd).st_mode) else "file")
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", fsync)
    with Journal(tmp_path / "log.jsonl") as journal:
        assert synced == ["folder"]  # created: its name in the folder is made durable
        journal.append({"a": 1})
        assert synced == ["folder", "file"]
        journal.append({"b": 2}, sync=False)  # a batch: synced once at its end
        assert synced == ["folder", "file"]
        journal.sync()
        assert synced == ["folder", "file", "file"]
    synced.clear()
    with Journal(tmp_path / "log.jsonl"):
        assert synced == []  # an existing, whole journal: nothing to write
