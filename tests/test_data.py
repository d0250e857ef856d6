"""training.data: every source → 100×100 RGB faces with the five labels, and clear errors."""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest

from emotion.labels import EMOTIONS
from training.data import DatasetError, FaceData, load_faces, load_splits, stratified_split
from training.synthetic import make_dataset, write_imagefolder

datasets = pytest.importorskip("datasets")

FER_NAMES = ("angry", "disgust", "fear", "happy", "sad", "surprise", "neutral")  # codes 0-6
USAGES = ("Training", "PublicTest", "PrivateTest")


@pytest.fixture(scope="module")
def synth():
    return make_dataset(3)


@pytest.fixture()
def folder(synth, tmp_path) -> Path:
    return write_imagefolder(synth, tmp_path / "faces")


def _write_png(path: Path, value: int, side: int = 40) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(path), np.full((side, side, 3), value, np.uint8))


def _make_tree(root: Path, names, per_class: int = 2) -> None:
    for k, name in enumerate(names):
        for i in range(per_class):
            _write_png(root / name / f"{i}.png", 20 * k + i)


def _fer_csv(path: Path, rows: list[tuple[str, str, str]]) -> Path:
    lines = ["emotion,pixels,Usage"] + [f"{e},{p},{u}" for e, p, u in rows]
    path.write_text("\n".join(lines) + "\n")
    return path


def _fer_rows() -> list[tuple[str, str, str]]:
    """One row per (FER class, Usage); the grey level encodes the class for checking."""
    return [
        (str(code), " ".join([str(10 * code + 5)] * 48 * 48), usage) for usage in USAGES for code in range(7)
    ]


def _hf_dataset(names, per_class: int = 2, side: int = 30):
    feats = datasets.Features({"image": datasets.Image(), "label": datasets.ClassLabel(names=list(names))})
    labels = [k for k in range(len(names)) for _ in range(per_class)]
    images = [np.full((side, side, 3), 10 * k, np.uint8) for k in labels]
    return datasets.Dataset.from_dict({"image": images, "label": labels}, features=feats)


def _check_faces(data: FaceData, n: int) -> None:
    assert data.images.shape == (n, 100, 100, 3) and data.images.dtype == np.uint8
    assert data.labels.shape == (n,) and data.labels.dtype == np.int64
    assert data.label_names == EMOTIONS and len(data.files) == n


# --- ImageFolder -----------------------------------------------------------------------------


def test_imagefolder_reads_synthetic_tree_and_ignores_masks(synth, folder, caplog):
    assert (folder / "masks").is_dir()
    with caplog.at_level(logging.INFO, logger="training.data"):
        data = load_faces(folder)
    _check_faces(data, 15)
    assert data.class_counts() == dict.fromkeys(EMOTIONS, 3)
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]  # masks/ ignored silently
    assert "happy" in caplog.text and "15 faces" in caplog.text  # the counts table
    for image, label, file in zip(data.images, data.labels, data.files, strict=True):
        path = Path(file)
        assert path.parent.name == EMOTIONS[label]
        # The k-th file of a class is the k-th synthetic face of that class; PNG is lossless.
        k = int(path.stem.split("_")[1])
        np.testing.assert_array_equal(image, synth.images[synth.labels == label][k])


def test_imagefolder_synonyms_case_and_unknown_folder(tmp_path, caplog):
    _make_tree(tmp_path, ["HAPPY", "Sadness", "neutral", "Anger", "surprise", "contempt"])
    _make_tree(tmp_path / "masks", ["happy"])
    with caplog.at_level(logging.WARNING, logger="training.data"):
        data = load_faces(tmp_path, size=64)
    assert data.images.shape == (10, 64, 64, 3)
    assert data.class_counts() == dict.fromkeys(EMOTIONS, 2)
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "contempt" in warnings[0] and "masks" not in warnings[0]
    # label_map can keep the unknown folder as an emotion.
    mapped = load_faces(tmp_path, label_map={"Contempt": "angry"})
    assert mapped.class_counts()["angry"] == 4


def test_imagefolder_resizes_and_centre_crops(tmp_path):
    _make_tree(tmp_path, EMOTIONS, per_class=1)
    wide = np.zeros((60, 120, 3), np.uint8)
    wide[:, 30:90] = 200  # the centred square is all bright; the sides are dark
    cv2.imwrite(str(tmp_path / "happy" / "wide.png"), wide)
    data = load_faces(tmp_path)
    face = data.images[data.files.index(str(tmp_path / "happy" / "wide.png"))]
    assert face.shape == (100, 100, 3) and face.min() == 200


def test_imagefolder_split_subfolders(tmp_path):
    for split, n in (("train", 3), ("val", 2), ("Test", 1)):
        _make_tree(tmp_path / split, EMOTIONS, per_class=n)
    _make_tree(tmp_path / "masks", ["happy"])
    splits = load_splits(tmp_path)
    assert (len(splits.train), len(splits.val), len(splits.test)) == (15, 10, 5)
    assert all("/val/" in f for f in splits.val.files)
    val = load_faces(tmp_path, split="validation")
    assert val.files == splits.val.files
    assert len(load_faces(tmp_path)) == 30
    with pytest.raises(DatasetError, match="no 'dev2' split"):
        load_faces(tmp_path, split="dev2")


def test_corrupt_images_are_all_named(folder):
    bad = [folder / "happy" / "happy_0.png", folder / "sad" / "broken.jpg"]
    for path in bad:
        path.write_bytes(b"not an image")
    with pytest.raises(DatasetError) as err:
        load_faces(folder)
    assert all(str(path) in str(err.value) for path in bad)
    assert "2 unreadable" in str(err.value)


def test_missing_class_is_named(folder):
    shutil.rmtree(folder / "surprised")
    with pytest.raises(DatasetError, match="surprised") as err:
        load_faces(folder)
    assert str(folder) in str(err.value) and "label_map" in str(err.value)


def test_bad_sources(tmp_path):
    with pytest.raises(DatasetError, match="No face dataset"):
        load_faces(tmp_path / "nowhere")
    with pytest.raises(TypeError, match="Cannot load faces"):
        load_faces(42)
    (tmp_path / "empty").mkdir()
    with pytest.raises(DatasetError, match="No faces for happy, sad, neutral, angry, surprised"):
        load_splits(tmp_path / "empty")
    with pytest.raises(ValueError, match="val_fraction"):
        load_splits(tmp_path, val_fraction=1.0)


# --- FER2013 CSV -----------------------------------------------------------------------------


def test_fer_csv_maps_labels_and_drops_disgust_fear(tmp_path, caplog):
    path = _fer_csv(tmp_path / "fer2013.csv", _fer_rows())
    with caplog.at_level(logging.INFO, logger="training.data"):
        data = load_faces(path)
    _check_faces(data, 15)
    assert data.class_counts() == dict.fromkeys(EMOTIONS, 3)
    assert "disgust 3" in caplog.text and "fear 3" in caplog.text
    for image, label, file in zip(data.images, data.labels, data.files, strict=True):
        code = FER_NAMES.index({"surprised": "surprise"}.get(EMOTIONS[label], EMOTIONS[label]))
        assert (image == 10 * code + 5).all()  # grey → equal RGB channels, same level after upscaling
        assert file.startswith("csv:row ")
    assert data.files[0] == "csv:row 2"  # the header is row 1
    # A label_map can keep a dropped FER class under one of the five.
    assert load_faces(path, label_map={"fear": "surprised"}).class_counts()["surprised"] == 6


def test_fer_csv_usage_is_the_split(tmp_path):
    path = _fer_csv(tmp_path / "fer.csv", _fer_rows())
    splits = load_splits(path)
    for part in (splits.train, splits.val, splits.test):
        assert part.class_counts() == dict.fromkeys(EMOTIONS, 1)
    rows = [int(f.split()[-1]) for f in splits.val.files]  # PublicTest rows are 9-15
    assert all(9 <= r <= 15 for r in rows)
    assert load_faces(path, split="PrivateTest").files == splits.test.files


def test_fer_csv_malformed_rows_are_named(tmp_path):
    rows = _fer_rows()
    rows[2] = ("2", " ".join(["7"] * 2303), "Training")  # row 4: one pixel short
    rows[5] = ("5", "1 2 x" + " 3" * 2301, "Training")  # row 7: not a number
    rows[6] = ("six", rows[6][1], "Training")  # row 8: emotion not a number
    with pytest.raises(DatasetError) as err:
        load_faces(_fer_csv(tmp_path / "fer.csv", rows))
    msg = str(err.value)
    assert "row 4: 2303 pixel values" in msg and "row 7" in msg and "row 8" in msg
    assert "row 3:" not in msg


def test_fer_csv_unknown_code_is_an_error(tmp_path):
    rows = _fer_rows() + [("9", " ".join(["1"] * 2304), "Training")]
    with pytest.raises(DatasetError, match="'9'.*csv:row 23"):
        load_faces(_fer_csv(tmp_path / "fer.csv", rows))


# --- Hugging Face datasets -------------------------------------------------------------------


def test_hf_dataset_with_synonyms_and_label_map(caplog):
    ds = _hf_dataset(["Anger", "happiness", "calm", "sadness", "Surprise", "contempt"])
    with pytest.raises(DatasetError, match="'calm'.*'contempt'.*label_map"):
        load_faces(ds)
    with caplog.at_level(logging.INFO, logger="training.data"):
        data = load_faces(ds, label_map={"calm": "neutral", "contempt": None})
    _check_faces(data, 10)
    assert data.class_counts() == dict.fromkeys(EMOTIONS, 2)
    assert "contempt 2" in caplog.text
    assert data.files[0] == "hf:data[0]"
    # ClassLabel order (anger first) is remapped to EMOTIONS order; the grey level tells the source class.
    assert data.labels[data.images[:, 0, 0, 0] == 0].tolist() == [EMOTIONS.index("angry")] * 2
    # With a label_map, a label it leaves out is dropped (with a warning), not an error.
    assert len(load_faces(ds, label_map={"calm": "neutral"})) == 10


def test_hf_columns_detected_or_given():
    ds = _hf_dataset(EMOTIONS).rename_columns({"image": "img", "label": "emotion"})
    assert len(load_faces(ds)) == 10
    ds = _hf_dataset(EMOTIONS).rename_columns({"image": "photo", "label": "target"})
    assert len(load_faces(ds)) == 10  # found by feature type: Image and ClassLabel
    assert len(load_faces(ds, image_column="photo", label_column="target")) == 10
    ds = ds.cast_column("target", datasets.Value("int64"))
    with pytest.raises(DatasetError, match="ClassLabel"):
        load_faces(ds, image_column="photo", label_column="target")
    with pytest.raises(DatasetError, match="No column 'nope'"):
        load_faces(ds, image_column="nope")


def test_hf_saved_datasetdict_splits(tmp_path):
    dd = datasets.DatasetDict(train=_hf_dataset(EMOTIONS, per_class=10), test=_hf_dataset(EMOTIONS, 1))
    dd.save_to_disk(str(tmp_path / "saved"))
    splits = load_splits(tmp_path / "saved", val_fraction=0.2, seed=3)
    assert (len(splits.train), len(splits.val), len(splits.test)) == (40, 10, 5)
    assert splits.val.class_counts() == dict.fromkeys(EMOTIONS, 2)
    assert all(f.startswith("hf:train[") for f in splits.train.files + splits.val.files)
    assert load_faces(tmp_path / "saved", split="test").files == splits.test.files
    single = tmp_path / "single"
    _hf_dataset(EMOTIONS).save_to_disk(str(single))
    assert len(load_faces(single)) == 10 and load_splits(single).test is None


# --- load_splits -----------------------------------------------------------------------------


def test_stratified_split_sizes_and_determinism(tmp_path):
    root = write_imagefolder(make_dataset(8), tmp_path / "faces")
    a = load_splits(root, val_fraction=0.25, seed=0)
    assert a.test is None
    assert a.val.class_counts() == dict.fromkeys(EMOTIONS, 2)
    assert a.train.class_counts() == dict.fromkeys(EMOTIONS, 6)
    assert not set(a.train.files) & set(a.val.files)
    assert sorted(a.train.files + a.val.files) == sorted(load_faces(root).files)
    b = load_splits(root, val_fraction=0.25, seed=0)
    assert a.val.files == b.val.files and (a.val.images == b.val.images).all()
    assert load_splits(root, val_fraction=0.25, seed=1).val.files != a.val.files


def test_stratified_split_keeps_small_classes():
    data = FaceData(
        np.zeros((7, 4, 4, 3), np.uint8),
        np.array([0, 0, 1, 1, 1, 2, 3]),
        ("a", "b", "c", "d"),
        list("abcdefg"),
    )
    train, val = stratified_split(data, 0.1, seed=0)
    assert val.class_counts() == {"a": 1, "b": 1, "c": 0, "d": 0}  # one each where two exist
    assert train.class_counts() == {"a": 1, "b": 2, "c": 1, "d": 1}
    assert data.subset(slice(0, 2)).files == ["a", "b"]


def test_hf_prefix_goes_through_load_dataset(tmp_path, monkeypatch):
    # load_dataset on a local ImageFolder needs no network; its cache goes to tmp_path, not ~/.cache.
    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", str(tmp_path / "cache"))
    _make_tree(tmp_path / "hub" / "train", EMOTIONS, per_class=4)
    _make_tree(tmp_path / "hub" / "test", EMOTIONS, per_class=1)
    splits = load_splits(f"hf:{tmp_path / 'hub'}", val_fraction=0.25)
    assert (len(splits.train), len(splits.val), len(splits.test)) == (15, 5, 5)
    assert splits.test.files[0].startswith("hf:test[")
