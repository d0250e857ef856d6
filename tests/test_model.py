"""A model folder is the Hub layout: it loads the same in timm, transformers and load_model."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import timm
import torch
from PIL import Image

from emotion import EMOTIONS, ModelLoadError, load_model
from emotion.model import build_model


@pytest.fixture(scope="module")
def faces() -> np.ndarray:
    return np.random.default_rng(0).integers(0, 256, (4, 100, 100, 3), dtype=np.uint8)


def test_config_is_timm_hub_layout_without_stale_fields(untrained_folder):
    cfg = json.loads((untrained_folder / "config.json").read_text())
    assert cfg["architecture"] == "resnet18"
    assert cfg["num_classes"] == 5 and cfg["label_names"] == list(EMOTIONS)
    assert cfg["pretrained_cfg"]["input_size"] == [3, 100, 100]
    assert len(cfg["pretrained_cfg"]["mean"]) == len(cfg["pretrained_cfg"]["std"]) == 3
    # timm's save_for_hf puts num_classes into model_args, which breaks transformers' TimmWrapper.
    assert "num_classes" not in cfg["model_args"]
    for stale in ("url", "hf_hub_id", "license", "tag", "num_classes"):
        assert stale not in cfg["pretrained_cfg"]
    assert sorted(p.name for p in untrained_folder.iterdir()) == ["config.json", "model.safetensors"]


def test_probabilities_sum_to_one_and_follow_label_order(untrained_model, faces):
    probs = untrained_model.predict(faces)
    assert probs.shape == (4, 5) and probs.dtype == np.float32
    np.testing.assert_allclose(probs.sum(1), 1, atol=1e-5)
    assert untrained_model.labels == EMOTIONS


def test_same_probabilities_from_timm_transformers_and_load_model(untrained_folder, untrained_model, faces):
    ours = untrained_model.predict(faces)

    net = timm.create_model(f"local-dir:{untrained_folder}", pretrained=True).eval()
    assert net.pretrained_cfg["label_names"] == list(EMOTIONS)
    cfg = timm.data.resolve_data_config({}, model=net)
    tf = timm.data.create_transform(**cfg)
    with torch.no_grad():
        timm_probs = net(torch.stack([tf(Image.fromarray(f)) for f in faces])).softmax(1).numpy()
    np.testing.assert_allclose(timm_probs, ours, atol=1e-5)

    from transformers import pipeline

    pipe = pipeline("image-classification", model=str(untrained_folder))
    out = pipe([Image.fromarray(f) for f in faces], top_k=5)
    hf_probs = np.array([[{d["label"]: d["score"] for d in o}[lab] for lab in EMOTIONS] for o in out])
    np.testing.assert_allclose(hf_probs, ours, atol=1e-5)


def test_label_names_come_from_the_folder_not_from_code(tmp_path, faces):
    torch.manual_seed(1)
    labels = ("surprised", "angry", "neutral", "sad", "happy")
    folder = build_model("resnet18", labels=labels).save(tmp_path / "m")
    model = load_model(folder)
    assert model.labels == labels


def test_bf16_probabilities_stay_close_to_fp32(untrained_folder, faces):
    fp32 = load_model(untrained_folder, precision="fp32").predict(faces)
    bf16 = load_model(untrained_folder, precision="bf16").predict(faces)
    np.testing.assert_allclose(bf16, fp32, atol=0.03)


def test_config_that_does_not_match_the_head_is_a_clear_error(untrained_folder, tmp_path):
    folder = tmp_path / "bad"
    shutil.copytree(untrained_folder, folder)
    cfg = json.loads((folder / "config.json").read_text())
    cfg["label_names"] = ["happy", "sad", "neutral"]
    cfg["num_classes"] = 3
    (folder / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(ModelLoadError, match="5-way head but config.json names 3 labels"):
        load_model(folder)


def test_num_classes_disagreeing_with_label_names_is_a_clear_error(untrained_folder, tmp_path):
    folder = tmp_path / "bad"
    shutil.copytree(untrained_folder, folder)
    cfg = json.loads((folder / "config.json").read_text())
    cfg["num_classes"] = 7
    (folder / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(ModelLoadError, match="num_classes=7 but lists 5"):
        load_model(folder)


def test_pickle_only_folder_is_refused(untrained_folder, tmp_path):
    folder = tmp_path / "pickled"
    folder.mkdir()
    shutil.copy(untrained_folder / "config.json", folder)
    torch.save({"x": torch.zeros(1)}, folder / "pytorch_model.bin")
    with pytest.raises(ModelLoadError, match="pickle checkpoints are not loaded"):
        load_model(folder)


def test_unknown_source_and_non_resnet_are_clear_errors(tmp_path):
    with pytest.raises(ModelLoadError, match="neither a model folder nor a Hub id"):
        load_model(str(tmp_path / "no" / "such" / "folder"))
    with pytest.raises(ValueError, match="not a timm ResNet"):
        build_model("vit_tiny_patch16_224")


def test_missing_demo_model_says_how_to_build_it(tmp_path, monkeypatch):
    monkeypatch.setenv("EMOTION_LENS_CACHE", str(tmp_path))
    with pytest.raises(ModelLoadError, match="python -m training.demo"):
        load_model(None)


def test_save_is_atomic_and_replaces_an_old_folder(untrained_model, tmp_path):
    folder = tmp_path / "m"
    untrained_model.save(folder)
    (folder / "stale.txt").write_text("old")
    untrained_model.save(folder)
    assert sorted(p.name for p in folder.iterdir()) == ["config.json", "model.safetensors"]
    assert [p.name for p in tmp_path.iterdir()] == ["m"]  # no temp folders left behind
