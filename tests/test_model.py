"""A model folder is the Hub layout: it loads the same in timm, transformers and load_model."""

from __future__ import annotations

import copy
import fnmatch
import json
import shutil

import numpy as np
import pytest
import timm
import torch
from PIL import Image

from emotion import EMOTIONS, ModelLoadError, load_model
from emotion.errors import UnsupportedArchitectureError
from emotion.model import (
    SUPPORTED_FAMILIES,
    Preprocessing,
    build_model,
    fold_batchnorms,
    supported_architectures,
)
from emotion.storage.model_folder import save_model
from emotion.storage.runs import RunFolder


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
    folder = save_model(build_model("resnet18", labels=labels), tmp_path / "m")
    model = load_model(folder)
    assert model.labels == labels


def _logit_error(probs: np.ndarray, reference: np.ndarray) -> float:
    """Largest logit difference as a share of the reference logits' spread. Logits, not
    probabilities: an untrained model's probabilities all sit within 0.015 of uniform, so any
    output near 0.2 is "close". log p minus its row mean is the logits minus theirs (softmax
    ignores a shift), so this reads them through `predict` itself."""

    def centred(p: np.ndarray) -> np.ndarray:
        logits = np.log(p.astype(np.float64))
        return logits - logits.mean(axis=1, keepdims=True)

    return float(np.abs(centred(probs) - centred(reference)).max() / centred(reference).std())


def test_bf16_logits_stay_close_to_fp32(untrained_folder, faces):
    fp32 = load_model(untrained_folder, precision="fp32").predict(faces)
    bf16 = load_model(untrained_folder, precision="bf16").predict(faces)
    # Measured: 0.8 % of the spread (AVX2 CPU, bf16 emulated).
    assert _logit_error(bf16, fp32) < 0.02
    # Controls: a uniform output, and one that ignores its input (every face gets the mean
    # answer), both fail the same bound.
    assert _logit_error(np.full_like(fp32, 0.2), fp32) >= 0.02
    assert _logit_error(np.broadcast_to(fp32.mean(0), fp32.shape), fp32) >= 0.02


def test_small_batches_run_in_the_precision_warm_up_found_faster(untrained_folder, faces):
    from emotion.model import SMALL_BATCHES

    fp32 = load_model(untrained_folder, precision="fp32")
    bf16 = load_model(untrained_folder, precision="bf16")
    assert bf16.fp32_up_to == 0 and bf16.precision_for(1) == "bf16"  # until warm_up has timed them
    bf16.fp32_up_to = 4
    assert [bf16.precision_for(n) for n in (1, 4, 5, 128)] == ["fp32", "fp32", "bf16", "bf16"]
    reference = fp32.predict(faces)
    # Up to four faces: fp32's very numbers; five: bf16's, which differ (the control).
    np.testing.assert_allclose(bf16.predict(faces), reference, rtol=1e-5, atol=1e-6)
    five = np.concatenate([faces, faces[:1]])
    assert np.abs(bf16.predict(five)[:4] - reference).max() > 1e-5
    # warm_up times both and keeps a batch size it measured (0: bf16 was as fast at batch 1);
    # an fp32 model has nothing to choose.
    bf16.warm_up()
    assert bf16.fp32_up_to in (0, *SMALL_BATCHES)
    fp32.warm_up()
    assert fp32.fp32_up_to == 0


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


def test_unknown_source_is_a_clear_error(tmp_path):
    with pytest.raises(ModelLoadError, match="neither a model folder nor a Hub id"):
        load_model(str(tmp_path / "no" / "such" / "folder"))


# One small member of each supported family: they must build at stride 16 with the stage and
# the head this code reads.
FAMILY_EXAMPLES = (
    "resnet10t",
    "resnet18d",
    "resnet26t",
    "resnet50_gn",
    "resnetblur18",
    "resnetrs50",
    "resnext50_32x4d",
    "seresnet18",
    "seresnext26d_32x4d",
    "ecaresnet26t",
    "ecaresnetlight",
    "wide_resnet50_2",
)


@pytest.mark.parametrize(
    "architecture", ["vit_tiny_patch16_224", "resnetv2_50d", "resnetaa50", "no_such_net"]
)
def test_unsupported_architectures_are_refused_with_the_supported_ones_named(architecture):
    with pytest.raises(UnsupportedArchitectureError) as err:
        build_model(architecture)
    message = str(err.value)
    assert architecture in message
    assert "resnet18" in message and all(family in message for family in SUPPORTED_FAMILIES)


def test_supported_architectures_are_timm_resnets_of_the_named_families():
    from timm.models.resnet import ResNet

    names = supported_architectures()
    assert set(FAMILY_EXAMPLES) <= set(names) and "resnet18" in names
    assert all(any(fnmatch.fnmatch(n, f) for f in SUPPORTED_FAMILIES) for n in names)
    assert not any("aa" in n for n in names)  # anti-aliased variants fail at 100×100
    for name in FAMILY_EXAMPLES:
        with torch.device("meta"):  # shapes only: no weights allocated
            model = build_model(name)
        assert isinstance(model.net, ResNet), name
        assert model.last_stage_layer_name == "layer4" and model.output_stride == 16, name
        assert model.has_pooled_linear_head, name
        assert model.head_weight.shape == (len(EMOTIONS), model.net.num_features), name


@pytest.mark.parametrize("architecture", FAMILY_EXAMPLES)
@pytest.mark.parametrize("size", [100, 97, 64])
def test_last_stage_grid_is_the_shape_the_last_stage_gives(architecture, size):
    with torch.device("meta"):  # the same shape arithmetic as a real forward, without the work
        model = build_model(architecture, preprocessing=Preprocessing(input_size=size))
        features = model.net.forward_features(torch.empty(1, 3, size, size))
    assert model.last_stage_grid == tuple(features.shape[-2:])


def test_last_stage_grid_matches_a_real_forward_of_the_default_model(untrained_model):
    _, features = untrained_model.predict_with_features(np.zeros((1, 100, 100, 3), np.uint8))
    assert untrained_model.last_stage_grid == tuple(features.shape[-2:]) == (7, 7)


def test_layer_and_head_names_come_from_timm(tmp_path):
    model = build_model("resnet18d")  # deep stem: its first conv is not `conv1`
    net = model.net
    assert (
        model.last_stage_layer is net.layer4 and model.last_stage_layer_name == net.feature_info[-1]["module"]
    )
    assert model.head_weight is net.get_classifier().weight
    assert model.first_conv_name == "conv1.0" and model.classifier_name == "fc"
    cfg = json.loads((save_model(model, tmp_path / "m") / "config.json").read_text())
    assert cfg["pretrained_cfg"]["first_conv"] == "conv1.0" and cfg["pretrained_cfg"]["classifier"] == "fc"
    assert cfg["model_args"] == {"output_stride": 16}
    assert load_model(tmp_path / "m").first_conv_name == "conv1.0"


def test_pooled_linear_head_is_read_from_the_real_head():
    model = build_model("resnet18", model_args={"output_stride": 16, "global_pool": "max"})
    assert not model.has_pooled_linear_head
    model = build_model("resnet18")
    assert model.has_pooled_linear_head
    model.net.reset_classifier(0)  # no linear layer left: Grad-CAM must not read weights
    assert not model.has_pooled_linear_head


def _randomise_batchnorms(net: torch.nn.Module, seed: int = 0) -> None:
    """Non-trivial running statistics and affine terms, so a fold that drops any of them shows."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in net.modules():
            if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
                n = m.num_features
                m.running_mean.copy_(torch.randn(n, generator=gen) * 0.2)
                m.running_var.copy_(torch.rand(n, generator=gen) * 1.5 + 0.5)
                m.weight.copy_(torch.rand(n, generator=gen) + 0.5)
                m.bias.copy_(torch.randn(n, generator=gen) * 0.2)


def _folded_and_reference_logits(net: torch.nn.Module) -> tuple[torch.nn.Module, torch.Tensor, torch.Tensor]:
    _randomise_batchnorms(net)
    net.eval()
    x = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(1))
    folded = fold_batchnorms(copy.deepcopy(net))
    with torch.no_grad():
        return folded, net(x), folded(x)


@pytest.mark.parametrize(
    "architecture", ["resnet18", "resnet18d", "resnet26t", "resnetrs50", "seresnext26d_32x4d", "ecaresnet26t"]
)
def test_folding_batchnorm_is_exact_and_folds_every_plain_batchnorm(architecture):
    # resnet18d/26t: deep stem (its last conv feeds bn1) and avg-pool → conv → bn shortcuts;
    # resnetrs50: a conv → bn → act stem pool; the others: attention blocks between the pairs.
    torch.manual_seed(0)
    folded, ref, out = _folded_and_reference_logits(build_model(architecture).net)
    assert (out - ref).abs().max() <= 1e-4 * ref.abs().max()
    assert not any(type(m) is torch.nn.BatchNorm2d for m in folded.modules())


def test_batchnorm_with_its_activation_is_refused_or_left_alone():
    from timm.layers import BatchNormAct2d

    with pytest.raises(UnsupportedArchitectureError):
        build_model("resnetv2_50d")
    # Folding such a net directly keeps each BatchNormAct2d (its ReLU inside), so it stays exact.
    torch.manual_seed(0)
    net = timm.create_model("resnetv2_50d", num_classes=5)
    count = sum(isinstance(m, BatchNormAct2d) for m in net.modules())
    folded, ref, out = _folded_and_reference_logits(net)
    assert count > 0 and sum(isinstance(m, BatchNormAct2d) for m in folded.modules()) == count
    assert (out - ref).abs().max() <= 1e-4 * ref.abs().max()


def _run_folder(root, model_folder) -> RunFolder:
    run = RunFolder(root)
    shutil.copytree(model_folder, run.model_dir)
    run.config.write_text("architecture: resnet18\n")
    run.metrics.write_text("{}")
    return run


def test_a_run_folder_is_a_model_source(untrained_folder, untrained_model, tmp_path, faces):
    run = _run_folder(tmp_path / "run", untrained_folder)
    expected = untrained_model.predict(faces)
    for source in (run.root, run.model_dir, str(run.root), f"local-dir:{run.root}"):
        model = load_model(source, precision="fp32")
        assert model.source == str(run.model_dir)
        np.testing.assert_allclose(model.predict(faces), expected, atol=1e-6)


def test_a_run_folder_without_its_model_says_so(tmp_path):
    run = RunFolder(tmp_path / "run")
    run.root.mkdir()
    run.config.write_text("architecture: resnet18\n")
    with pytest.raises(ModelLoadError, match="run folder without a model yet"):
        load_model(run.root)


def test_a_path_that_is_neither_layout_names_both(tmp_path):
    (tmp_path / "empty").mkdir()
    (tmp_path / "notes.txt").write_text("hello")
    for source in (tmp_path / "empty", tmp_path / "notes.txt"):
        with pytest.raises(ModelLoadError, match="neither a model folder") as err:
            load_model(source)
        assert "run folder" in str(err.value) and "model.safetensors" in str(err.value)


def test_a_config_written_by_timm_save_for_hf_loads(untrained_folder, tmp_path, faces):
    # timm's save_for_hf writes num_classes into model_args; the labels decide the head here.
    folder = tmp_path / "timm_style"
    shutil.copytree(untrained_folder, folder)
    cfg = json.loads((folder / "config.json").read_text())
    cfg["model_args"]["num_classes"] = 5
    (folder / "config.json").write_text(json.dumps(cfg))
    assert load_model(folder).labels == EMOTIONS


def test_a_config_naming_an_unsupported_architecture_is_a_load_error(untrained_folder, tmp_path):
    folder = tmp_path / "vit"
    shutil.copytree(untrained_folder, folder)
    cfg = json.loads((folder / "config.json").read_text())
    cfg["architecture"] = "vit_tiny_patch16_224"
    (folder / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(ModelLoadError, match="not one of the timm ResNets .* resnet18"):
        load_model(folder)


def test_no_model_loads_the_shipped_demo_model_when_none_is_built(tmp_path, monkeypatch):
    from emotion.storage.model_folder import SHIPPED_DEMO_DIR, is_shipped_demo

    monkeypatch.setenv("EMOTION_LENS_CACHE", str(tmp_path))
    model = load_model(None, precision="fp32")
    assert model.is_demo and SHIPPED_DEMO_DIR in model.folder.parents and is_shipped_demo(model.folder)
    assert not any(tmp_path.iterdir()), "loading the shipped model writes nothing to the cache"


def test_a_demo_model_built_here_is_served_before_the_shipped_one(untrained_folder, tmp_path, monkeypatch):
    from emotion.storage.model_folder import DEMO_MODEL_NAME, is_shipped_demo
    from training.demo import ready_demo_model

    monkeypatch.setenv("EMOTION_LENS_CACHE", str(tmp_path))
    own = tmp_path / DEMO_MODEL_NAME
    shutil.copytree(untrained_folder, own / "model")
    (own / "metrics.json").write_text("{}")
    assert load_model(None).folder == own / "model"
    assert not is_shipped_demo(own / "model")
    assert ready_demo_model().folder == own / "model" == ready_demo_model(own=True).folder


def test_own_demo_without_one_built_here_serves_nothing_yet(tmp_path, monkeypatch):
    from training.demo import ready_demo_model

    monkeypatch.setenv("EMOTION_LENS_CACHE", str(tmp_path))
    assert ready_demo_model(own=True) is None
    assert ready_demo_model() is not None  # the shipped one


def test_missing_demo_model_says_how_to_build_it(tmp_path, monkeypatch):
    import emotion.storage.model_folder

    monkeypatch.setenv("EMOTION_LENS_CACHE", str(tmp_path))
    monkeypatch.setattr(emotion.storage.model_folder, "SHIPPED_DEMO_DIR", tmp_path / "not-shipped")
    with pytest.raises(ModelLoadError, match="python -m training.demo"):
        load_model(None)


def test_save_is_atomic_and_replaces_an_old_folder(untrained_model, tmp_path):
    folder = tmp_path / "m"
    save_model(untrained_model, folder)
    (folder / "stale.txt").write_text("old")
    save_model(untrained_model, folder)
    assert sorted(p.name for p in folder.iterdir()) == ["config.json", "model.safetensors"]
    assert [p.name for p in tmp_path.iterdir()] == ["m"]  # no temp folders left behind
