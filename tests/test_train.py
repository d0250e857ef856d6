"""The training recipe: run folder contents, exact resume after a kill, Accelerate, evaluation."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import replace

import numpy as np
import pytest
import torch
import yaml
from safetensors.torch import load_file

from emotion import EMOTIONS, load_model
from emotion.model import build_model
from emotion.storage.runs import CONFUSION_MATRIX, CURVES, MEAN_GRADCAM, METRICS, RunFolder
from training.train import TrainConfig, TrainConfigError, Trainer, load_config
from training.train import main as train_main

from .conftest import ROOT

TINY = ["--data", "synthetic:12", "--batch-size", "16", "--precision", "fp32"]


def _run_cmd(*args: str) -> list[str]:
    return [sys.executable, "-m", "training.train", *TINY, *args]


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("runs") / "tiny"
    assert train_main([*TINY, "--out", str(out), "--epochs", "2"]) == 0
    return out


def test_run_folder_holds_model_metrics_plots_and_config(run_dir):
    names = {p.name for p in run_dir.iterdir()}
    assert {
        "config.yaml",
        "metrics.json",
        "confusion_matrix.png",
        "curves.png",
        "model",
        "tensorboard",
        "mean_gradcam.png",
    } <= names
    assert {p.name for p in (run_dir / "checkpoints").iterdir()} == {"best.pt", "last.pt"}
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert set(metrics["per_class"]) == set(EMOTIONS)
    assert len(metrics["confusion_matrix"]) == 5 and all(len(r) == 5 for r in metrics["confusion_matrix"])
    assert sum(map(sum, metrics["confusion_matrix"])) == sum(metrics["val_counts"].values())
    assert 0 <= metrics["macro_f1"] <= 1 and [h["epoch"] for h in metrics["history"]] == [1, 2]
    assert metrics["images_per_s"] > 0 and all(h["images_per_s"] > 0 for h in metrics["history"])
    assert metrics["mean_gradcam_faces"] == sum(metrics["val_counts"].values())
    model = load_model(run_dir / "model")
    assert model.labels == EMOTIONS
    saved = yaml.safe_load((run_dir / "config.yaml").read_text())
    assert saved["epochs"] == 2 and saved["data"] == "synthetic:12"
    assert any((run_dir / "tensorboard").iterdir())


def test_checkpoints_load_without_pickle_and_carry_what_rebuilds_the_model(run_dir):
    state = torch.load(run_dir / "checkpoints" / "last.pt", weights_only=True)
    assert state["epoch"] == 1 and state["labels"] == list(EMOTIONS)
    model = build_model(
        state["arch"], labels=tuple(state["labels"]), model_args=json.loads(state["model_args"])
    )
    model.net.load_state_dict(state["model"])  # strict: every tensor fits
    assert json.loads(state["model_args"]) == load_model(run_dir).model_args


def test_evaluate_and_push_read_the_run_folder_train_wrote(run_dir, tmp_path):
    from hub.push import PushConfig, dry_run
    from training.evaluate import main as evaluate_main

    run = RunFolder(run_dir)
    # A run folder is a model source for every command that takes a model.
    assert load_model(run_dir).labels == load_model(run.model_dir).labels
    assert (
        evaluate_main(["--model", str(run_dir), "--data", "synthetic:2", "--out", str(tmp_path / "eval")])
        == 0
    )
    assert {p.name for p in (tmp_path / "eval").iterdir()} == {METRICS, CONFUSION_MATRIX, MEAN_GRADCAM}
    files = dry_run(PushConfig(source=run_dir, repo_id="tester/run"), tmp_path / "push")
    # hub reads the figures training drew, byte for byte; it draws nothing of its own.
    for name in (CONFUSION_MATRIX, CURVES, MEAN_GRADCAM):
        assert name in files
        assert (tmp_path / "push" / name).read_bytes() == (run_dir / name).read_bytes()
    card = (tmp_path / "push" / "README.md").read_text()
    assert "![Mean Grad-CAM per emotion](mean_gradcam.png)" in card and "Not shown" not in card


def test_demo_preset_and_flags_merge():
    cfg = load_config(None, {"epochs": 2}, preset="demo")
    assert cfg.demo and cfg.data == "synthetic:1000" and cfg.epochs == 2
    # the same model on any CPU's precision and however busy it is: fp32, and no clock
    assert cfg.precision == "fp32" and cfg.time_budget_s is None
    with pytest.raises(TrainConfigError, match="Unknown preset"):
        load_config(None, {"data": "synthetic:5"}, preset="nope")


@pytest.mark.slow
def test_trainers_of_any_precision_follow_each_other_in_one_process(tmp_path):
    """bf16, then fp32, then bf16 in one process (a notebook; a test after the demo model): each
    run trains in its own precision. Precision is asked for, never "auto", which picks by CPU."""
    logit_dtypes = []
    for i, precision in enumerate(("bf16", "fp32", "bf16")):
        cfg = TrainConfig(
            data="synthetic:4", arch="resnet10t", epochs=1, batch_size=4, precision=precision,
            device="cpu", out=str(tmp_path / f"run{i}"), validate_every_epoch=False,
        )  # fmt: skip
        trainer = Trainer(cfg)
        seen = []
        hook = trainer.net.register_forward_hook(
            lambda module, args, out, seen=seen: seen.append(out.dtype) if module.training else None
        )
        trainer.fit()
        hook.remove()
        logit_dtypes.append(set(seen))
        assert load_model(trainer.run.model_dir).labels == EMOTIONS
    assert logit_dtypes == [{torch.bfloat16}, {torch.float32}, {torch.bfloat16}]


@pytest.mark.slow
def test_time_budget_stops_early_with_the_learning_rate_annealed(tmp_path, monkeypatch):
    cfg = load_config(
        None,
        {
            "data": "synthetic:12",
            "out": str(tmp_path / "r"),
            "batch_size": 8,
            "precision": "fp32",
            "epochs": 500,
            "time_budget_s": 4.0,
            "validate_every_epoch": False,
        },
    )
    trainer = Trainer(cfg)
    # A clock on which every step takes 0.1 s: the behaviour, not the machine's speed, is under
    # test (on the real clock a slow first step or a busy machine left the last step at 84 %).
    monkeypatch.setattr(trainer, "elapsed", lambda: 0.1 * trainer.step)
    metrics = trainer.fit()
    history = metrics["history"]
    assert len(history) < 500, "the budget did not stop the run"
    assert history[-1]["lr"] < 0.05 * cfg.lr, "the cosine did not follow the clock to its end"
    # Validated once, at the end, and that epoch's model is the one saved.
    assert [("val_loss" in h) for h in history] == [False] * (len(history) - 1) + [True]
    assert metrics["best_epoch"] == len(history)


@pytest.mark.slow
def test_progressive_resizing_trains_small_then_full_size(tmp_path, monkeypatch):
    cfg = load_config(
        None,
        {
            "data": "synthetic:8",
            "out": str(tmp_path / "r"),
            "batch_size": 8,
            "precision": "fp32",
            "epochs": 2,
            "small_until": 0.5,
            "small_size": 48,
        },
    )
    trainer = Trainer(cfg)
    sizes = []
    forward = trainer.net.forward

    def recording_forward(x):
        if trainer.net.training:  # not the validation passes
            sizes.append(x.shape[-1])
        return forward(x)

    monkeypatch.setattr(trainer.net, "forward", recording_forward)
    trainer.fit()
    assert trainer.total_steps == 10 and sizes == [48] * 5 + [100] * 5, sizes


def test_config_file_and_flags_merge_and_unknown_keys_are_refused(tmp_path):
    cfg_file = tmp_path / "cfg.yaml"
    cfg_file.write_text("epochs: 7\nlr: 0.01\naugment: {flip: 0.0}\n")
    cfg = load_config(cfg_file, {"data": "synthetic:5", "lr": 0.02})
    assert isinstance(cfg, TrainConfig) and cfg.epochs == 7 and cfg.lr == 0.02 and cfg.augment.flip == 0.0
    cfg_file.write_text("epoch: 7\n")
    with pytest.raises(TrainConfigError, match="Unknown config keys"):
        load_config(cfg_file, {"data": "synthetic:5"})


@pytest.mark.slow
def test_resume_after_a_kill_continues_exactly(tmp_path):
    straight, killed = tmp_path / "straight", tmp_path / "killed"
    subprocess.run(
        _run_cmd("--out", str(straight), "--epochs", "3"), cwd=ROOT, check=True, capture_output=True
    )

    proc = subprocess.Popen(
        _run_cmd("--out", str(killed), "--epochs", "3"),
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    last = killed / "checkpoints" / "last.pt"
    deadline = time.time() + 180
    while not last.exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    done_epochs = torch.load(last, weights_only=True)["epoch"] + 1
    assert done_epochs < 3, "the run finished before it could be killed"

    resumed = subprocess.run(
        _run_cmd("--out", str(killed), "--epochs", "3", "--resume"),
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    )
    assert f"after epoch {done_epochs}" in resumed.stderr + resumed.stdout
    a = load_file(straight / "model" / "model.safetensors")
    b = load_file(killed / "model" / "model.safetensors")
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=1e-4, atol=1e-5, msg=key)
    hist_a = json.loads((straight / "metrics.json").read_text())["history"]
    hist_b = json.loads((killed / "metrics.json").read_text())["history"]
    assert [h["epoch"] for h in hist_b] == [1, 2, 3]
    assert [round(h["train_loss"], 4) for h in hist_a] == [round(h["train_loss"], 4) for h in hist_b]


@pytest.mark.slow
def test_two_process_accelerate_launch_on_cpu(tmp_path):
    out = tmp_path / "ddp"
    # torchrun-style launch (--multi_gpu); with no GPU the two processes join over gloo.
    launch = "accelerate.commands.launch --multi_gpu --num_processes 2 --num_machines 1"
    launch += " --mixed_precision no --dynamo_backend no"
    cmd = [
        sys.executable,
        "-m",
        *launch.split(),
        "-m",
        "training.train",
        *TINY,
        "--out",
        str(out),
        "--epochs",
        "2",
    ]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, env=env, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["world_size"] == 2
    assert set(metrics["per_class"]) == set(EMOTIONS) and len(metrics["confusion_matrix"]) == 5
    assert load_model(out / "model").labels == EMOTIONS


def test_evaluate_gives_the_same_metrics_format(run_dir, tmp_path, capsys):
    from training.evaluate import main as evaluate_main

    assert (
        evaluate_main(["--model", str(run_dir / "model"), "--data", "synthetic:4", "--out", str(tmp_path)])
        == 0
    )
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    train_metrics = json.loads((run_dir / "metrics.json").read_text())
    for key in ("accuracy", "macro_f1", "per_class", "confusion_matrix", "label_names"):
        assert key in metrics and type(metrics[key]) is type(train_metrics[key])
    assert sum(map(sum, metrics["confusion_matrix"])) == 20
    assert (tmp_path / "confusion_matrix.png").is_file()
    assert "macro-F1" in capsys.readouterr().out


# --- against background shortcuts -----------------------------------------------------------
def test_swap_backgrounds_gives_each_face_another_faces_background_and_keeps_the_face():
    from training.augment import swap_backgrounds

    n = 16
    faces = torch.arange(n, dtype=torch.uint8).view(n, 1, 1, 1).expand(n, 3, 10, 10).clone()
    on_face = torch.zeros(1, 1, 10, 10, dtype=torch.bool)
    on_face[..., 3:7, 3:7] = True
    swapped = swap_backgrounds(faces, on_face, 1.0, torch.Generator().manual_seed(0))
    assert torch.equal(swapped[:, :, 3:7, 3:7], faces[:, :, 3:7, 3:7])  # the face is its own
    backgrounds = swapped[:, 0, 0, 0]
    # Each background went to one face (a permutation of the batch), and most moved.
    assert sorted(backgrounds.tolist()) == list(range(n)) and (backgrounds != torch.arange(n)).sum() >= n // 2
    assert (swapped[:, :, ~on_face[0, 0]] == backgrounds.view(n, 1, 1)).all()  # whole, not in patches
    assert torch.equal(swap_backgrounds(faces, on_face, 0.0, torch.Generator().manual_seed(0)), faces)
    # Per-face masks (drawn faces): each face keeps its own face region.
    own = torch.zeros(n, 1, 10, 10, dtype=torch.bool)
    own[torch.arange(n), 0, torch.arange(n) % 10, 0] = True
    swapped = swap_backgrounds(faces, own, 1.0, torch.Generator().manual_seed(1))
    assert torch.equal(swapped[own.expand(-1, 3, -1, -1)], faces[own.expand(-1, 3, -1, -1)])


def test_against_background_is_a_flag_a_config_key_and_a_preset():
    from training.train import build_parser

    assert build_parser().parse_args(["--against-background"]).against_background == 1.0
    assert build_parser().parse_args(["--against-background", "0.5"]).against_background == 0.5
    assert build_parser().parse_args([]).against_background is None  # the config's value stays
    assert load_config(None, {"data": "synthetic:5", "against_background": 0.5}).against_background == 0.5
    cfg = load_config(None, {}, preset="against-background")
    assert cfg.against_background == 1.0 and cfg.data == load_config(None, {}, preset="original").data
    with pytest.raises(TrainConfigError, match="from 0 \\(off\\) to 1"):
        load_config(None, {"data": "synthetic:5", "against_background": 1.5})


@pytest.mark.slow
def test_training_against_the_background_reads_the_report_s_face_definition(tmp_path, monkeypatch):
    """Drawn faces bring their own face masks, crops the crop geometry (its core: a superset of
    the background the report's tests change is swapped); and every training step swaps."""
    from training.augment import swap_backgrounds as real_swap
    from training.data import load_faces
    from training.synthetic import make_dataset, write_imagefolder

    cfg = TrainConfig(
        data="synthetic:6", arch="resnet10t", epochs=1, batch_size=10, precision="fp32", device="cpu",
        out=str(tmp_path / "drawn"), validate_every_epoch=False, against_background=1.0,
    )  # fmt: skip
    calls = []

    def recording_swap(faces, on_face, share, generator):
        calls.append((tuple(on_face.shape), share))
        return real_swap(faces, on_face, share, generator)

    monkeypatch.setattr("training.train.swap_backgrounds", recording_swap)
    trainer = Trainer(cfg)
    drawn = make_dataset(6, seed=0, workers=1).masks["face"]
    assert torch.equal(trainer.on_face[:, 0].cpu(), torch.from_numpy(drawn))
    trainer.fit()
    assert calls == [((10, 1, 100, 100), 1.0)] * trainer.total_steps
    folder = write_imagefolder(make_dataset(2, seed=0, workers=1), tmp_path / "crops")
    crops = load_faces(str(folder))
    assert crops.drawn_face_masks is None and "crop geometry" in crops.face_masks_from
    trainer = Trainer(replace(cfg, data=str(folder), out=str(tmp_path / "crops-run")))
    assert trainer.on_face.shape == (1, 1, 100, 100)
    kept = np.array(crops.face_masks(core=True)[0])
    assert torch.equal(trainer.on_face[0, 0].cpu(), torch.from_numpy(kept))
    # What is kept lies within the report's face: every pixel the report tests is swapped.
    assert not (kept & ~crops.face_masks()[0]).any() and kept.sum() < crops.face_masks()[0].sum()
