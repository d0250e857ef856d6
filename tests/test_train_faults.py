"""Training faults: an unwritable or full run folder is a clear error at the start of a run,
before any data is drawn or any step runs, not after the first epoch."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

import training.train as train
from emotion.errors import RunFolderError
from emotion.storage.runs import RunFolder
from training.train import TrainConfig, Trainer, check_run_folder, run_folder_bytes
from training.train import main as train_main

# The tiniest run there is; none of these tests gets as far as drawing its faces.
TINY = dict(data="synthetic:4", arch="resnet10t", epochs=1, batch_size=4, precision="fp32", device="cpu")
TINY_FLAGS = ["--data", "synthetic:4", "--arch", "resnet10t", "--epochs", "1", "--precision", "fp32"]
MiB = 2**20


@pytest.fixture
def no_data(monkeypatch):
    """Fail the test if the run draws its data: the folder check must come first."""
    calls = []

    def load(cfg):
        calls.append(cfg.data)
        raise AssertionError("training data drawn before the run folder was checked")

    monkeypatch.setattr(train, "load_training_data", load)
    return calls


def under_a_file(tmp_path: Path) -> Path:
    # mkdir fails below a regular file (ENOTDIR) for every user, root included.
    (tmp_path / "file").write_text("not a folder\n")
    return tmp_path / "file" / "run"


def read_only_folder(tmp_path: Path) -> Path:
    folder = tmp_path / "read-only"
    folder.mkdir()
    folder.chmod(0o500)
    try:
        (folder / "probe").write_bytes(b"")
    except PermissionError:
        return folder
    (folder / "probe").unlink()
    folder.chmod(0o700)
    pytest.skip("the permission bits do not stop this user (root): the next case covers it")


def a_folder_that_refuses_files(tmp_path: Path) -> Path:
    # It exists, its bits say writable, and procfs still refuses a new file, to root as well:
    # the case the write probe is there for.
    if not Path("/proc/self").is_dir():
        pytest.skip("no procfs here")
    return Path("/proc")


def full_disk(monkeypatch, free: int) -> None:
    # The function check_run_folder calls: a real full disk cannot be made in a test.
    usage = shutil.disk_usage("/")
    monkeypatch.setattr(shutil, "disk_usage", lambda path: usage._replace(free=free))


@pytest.mark.parametrize("make_out", [under_a_file, read_only_folder, a_folder_that_refuses_files])
def test_an_unwritable_run_folder_stops_the_run_before_any_data_is_drawn(tmp_path, make_out, no_data):
    out = make_out(tmp_path)
    try:
        with pytest.raises(RunFolderError, match=r"run folder .*: pass --out a folder") as info:
            Trainer(TrainConfig(**TINY, out=str(out)))
    finally:
        if make_out is read_only_folder:
            out.chmod(0o700)  # so that pytest can clean tmp_path up
    message = str(info.value)
    assert str(out) in message
    # The OS's own words for what went wrong, not a guess.
    oserror = ("Not a directory", "Permission denied", "No such file or directory")
    assert any(words in message for words in oserror), message
    assert no_data == [], "data was drawn before the folder check"
    assert not RunFolder(out).checkpoints.exists()


def test_a_full_disk_stops_the_run_and_says_free_and_needed_space(tmp_path, monkeypatch, no_data):
    full_disk(monkeypatch, free=MiB)
    cfg = TrainConfig(**TINY, out=str(tmp_path / "run"))
    with pytest.raises(RunFolderError, match="Not enough free space") as info:
        Trainer(cfg)
    message = str(info.value)
    assert f"1.0 MiB ({MiB:,} bytes) free" in message, message
    assert f"({run_folder_bytes(cfg):,} bytes) needed for a resnet10t run" in message, message
    assert "Free space there, or pass --out" in message
    assert no_data == []
    assert [p.name for p in (tmp_path / "run").iterdir()] == [], "the write probe was left behind"


def test_the_space_estimate_covers_the_checkpoints_and_a_rerun_gets_their_bytes_back(tmp_path, monkeypatch):
    cfg = TrainConfig(**TINY, out=str(tmp_path / "run"))
    needed = run_folder_bytes(cfg)
    # resnet10t has 4.9 M parameters: two checkpoints with AdamW's moments, their temp file and
    # the model are ~10× their 19.6 MB.
    assert 190 * 10**6 < needed < 230 * 10**6, needed
    full_disk(monkeypatch, free=needed)
    check_run_folder(cfg)  # exactly enough: no error, and the probe file is gone again
    assert list((tmp_path / "run").iterdir()) == []
    full_disk(monkeypatch, free=needed // 2)
    with pytest.raises(RunFolderError):
        check_run_folder(cfg)
    # A rerun or --resume replaces last.pt and best.pt in place (sparse files: no real bytes).
    run = RunFolder(tmp_path / "run")
    run.checkpoints.mkdir()
    for path in (run.last_checkpoint, run.best_checkpoint):
        with open(path, "wb") as f:
            f.truncate(needed // 4)
    check_run_folder(cfg)


@pytest.mark.parametrize("fault", ["unwritable", "full"])
def test_the_command_prints_one_error_line_and_exits_2(tmp_path, monkeypatch, capsys, fault, no_data):
    out = under_a_file(tmp_path) if fault == "unwritable" else tmp_path / "run"
    if fault == "full":
        full_disk(monkeypatch, free=MiB)
    assert train_main([*TINY_FLAGS, "--out", str(out)]) == 2
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert "Traceback" not in err and len(lines) == 1, err
    expected = "Cannot create the run folder" if fault == "unwritable" else "Not enough free space"
    assert lines[0].startswith(f"error: {expected}") and str(out) in lines[0], err
    assert "pass --out" in lines[0], err
    assert no_data == []
