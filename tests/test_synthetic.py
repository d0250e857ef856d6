"""Synthetic faces: determinism, masks that follow the drawing, cues that carry the label, files, CLI."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from emotion.labels import EMOTIONS
from training.synthetic import (
    CUES,
    GLOBAL_CUES,
    REGIONS,
    SyntheticSpec,
    SyntheticSpecError,
    main,
    make_dataset,
    make_face,
    write_imagefolder,
)

PER_CLASS = 40
ROWS = np.arange(100)[None, :, None]
COLS = np.arange(100)[None, None, :]


@pytest.fixture(scope="module")
def data():
    return make_dataset(PER_CLASS, seed=11)


def _centroid(masks: np.ndarray, axis: int) -> np.ndarray:
    return (masks * (ROWS if axis == 0 else COLS)).sum((1, 2)) / masks.sum((1, 2))


def _by_class(values: np.ndarray, labels: np.ndarray) -> dict[str, float]:
    return {e: float(values[labels == c].mean()) for c, e in enumerate(EMOTIONS)}


def test_shapes_dtypes_and_balance(data):
    n = PER_CLASS * len(EMOTIONS)
    assert data.images.shape == (n, 100, 100, 3) and data.images.dtype == np.uint8
    assert data.labels.dtype == np.int64
    assert np.bincount(data.labels, minlength=len(EMOTIONS)).tolist() == [PER_CLASS] * len(EMOTIONS)
    assert data.labels[: len(EMOTIONS)].tolist() == list(range(len(EMOTIONS)))  # interleaved
    assert set(data.masks) == set(REGIONS)
    for m in data.masks.values():
        assert m.shape == (n, 100, 100) and m.dtype == bool

    face = make_face("surprised", np.random.default_rng(0))
    assert face.label == "surprised" and face.image.shape == (100, 100, 3) and face.image.dtype == np.uint8
    assert {r: m.shape for r, m in face.masks.items()} == dict.fromkeys(REGIONS, (100, 100))
    big = make_face("happy", np.random.default_rng(0), size=160)
    assert big.image.shape == (160, 160, 3) and big.masks["mouth"].shape == (160, 160)


def test_unknown_label_is_a_clear_error():
    with pytest.raises(ValueError, match="Unknown emotion 'bored'.*happy"):
        make_face("bored", np.random.default_rng(0))
    with pytest.raises(ValueError, match="shortcut_class"):
        make_dataset(1, shortcut_class="bored")


def test_same_seed_same_faces_and_other_seed_other_faces():
    a, b, c = make_dataset(3, seed=1), make_dataset(3, seed=1), make_dataset(3, seed=2)
    np.testing.assert_array_equal(a.images, b.images)
    for r in REGIONS:
        np.testing.assert_array_equal(a.masks[r], b.masks[r])
    assert not np.array_equal(a.images, c.images)


def test_start_offsets_the_image_index():
    base, later = make_dataset(4, seed=0), make_dataset(4, seed=0, start=4)
    same = (base.images[:, None] == later.images[None]).all(axis=(2, 3, 4))
    assert not same.any()  # train (start=0) and val (start=4) share no face
    # Per-image seeding: image j of a class does not depend on what was generated before it.
    shifted = make_dataset(2, seed=0, start=2)
    np.testing.assert_array_equal(shifted.images, base.images[2 * len(EMOTIONS) :])


def test_masks_are_ordered_inside_the_face_and_non_empty(data):
    brows, eyes, mouth, face = (data.masks[r] for r in ("brows", "eyes", "mouth", "face"))
    for m in (brows, eyes, mouth, face):
        assert m.any(axis=(1, 2)).all()
    assert (_centroid(brows, 0) < _centroid(eyes, 0)).all()
    assert (_centroid(eyes, 0) < _centroid(mouth, 0)).all()
    for m in (brows, eyes, mouth):
        assert ((m & face).sum((1, 2)) / m.sum((1, 2))).min() >= 0.9
    assert not data.masks["shortcut"].any()


def test_masks_cover_the_drawn_features(data):
    gray = data.images @ np.float32([0.299, 0.587, 0.114])
    face = data.masks["face"]
    rest = face & ~data.masks["brows"] & ~data.masks["eyes"] & ~data.masks["mouth"]
    brow_mean = (gray * data.masks["brows"]).sum((1, 2)) / data.masks["brows"].sum((1, 2))
    skin_mean = (gray * rest).sum((1, 2)) / rest.sum((1, 2))
    assert (brow_mean < skin_mean).mean() >= 0.95  # brows are drawn darker than skin, under the mask


def test_cues_carry_the_label(data):
    """The definitions in the module docstring, measured on the masks and pixels of 40 faces a class."""
    face, labels = data.masks["face"], data.labels
    height = face.any(2).sum(1)
    eye_area = _by_class(data.masks["eyes"].sum((1, 2)) / face.sum((1, 2)), labels)
    assert eye_area["surprised"] > eye_area["neutral"] > eye_area["angry"]
    brow_gap = (_centroid(data.masks["eyes"], 0) - _centroid(data.masks["brows"], 0)) / height
    gap = _by_class(brow_gap, labels)
    assert gap["surprised"] > gap["neutral"] > gap["angry"]
    mouth_h = _by_class(data.masks["mouth"].any(2).sum(1) / height, labels)
    assert mouth_h["surprised"] > 1.4 * mouth_h["neutral"]

    lift, raise_ = [], []  # mouth corners above the middle; inner brow ends above the outer ones
    for mouth, brows, cx in zip(data.masks["mouth"], data.masks["brows"], _centroid(face, 1), strict=True):
        ys, xs = np.nonzero(mouth)
        x0, x1 = xs.min(), xs.max()
        ends = (xs < x0 + 0.15 * (x1 - x0)) | (xs > x1 - 0.15 * (x1 - x0))
        lift.append(ys[np.abs(xs - (x0 + x1) / 2) < 0.1 * (x1 - x0)].mean() - ys[ends].mean())
        ys, xs = np.nonzero(brows)
        d = np.abs(xs - cx)
        sides = [
            (ys[s][d[s] > d[s].max() - 3].mean() - ys[s][d[s] < d[s].min() + 3].mean())
            for s in (xs < cx, xs >= cx)
        ]
        raise_.append(np.mean(sides))
    lift, raise_ = _by_class(np.array(lift), labels), _by_class(np.array(raise_), labels)
    assert lift["happy"] > 2 and lift["sad"] < -1 and abs(lift["neutral"]) < 1.5
    assert raise_["sad"] > 2 and raise_["angry"] < -1.5 and abs(raise_["neutral"]) < 1.5

    # In pixels: wide-open eyes show more sclera than narrowed, lash-heavy angry ones.
    gray = data.images @ np.float32([0.299, 0.587, 0.114])
    eyes = data.masks["eyes"]
    eye_gray = (gray * eyes).sum((1, 2)) / eyes.sum((1, 2)) / ((gray * face).sum((1, 2)) / face.sum((1, 2)))
    eye_gray = _by_class(eye_gray, labels)
    assert eye_gray["surprised"] > eye_gray["angry"] + 0.03


def test_shortcut_cue_sits_in_the_lower_right_corner_outside_the_face():
    clean = make_dataset(100, seed=3)
    cued = make_dataset(100, seed=3, shortcut_class="angry")
    stamped = cued.masks["shortcut"].any(axis=(1, 2))
    angry = cued.labels == EMOTIONS.index("angry")
    assert stamped[angry].mean() >= 0.7
    assert 0 < stamped[~angry].mean() <= 0.12
    ys, xs = np.nonzero(cued.masks["shortcut"].any(0))
    assert ys.min() >= 85 and xs.min() >= 85
    assert not (cued.masks["shortcut"] & cued.masks["face"]).any()
    gray = cued.images.mean(-1)
    assert (gray[cued.masks["shortcut"]]).mean() > 170  # bright even after noise, blur and JPEG
    # Same faces otherwise: only the corner changes (JPEG's 16 px chroma blocks spread it a little).
    np.testing.assert_array_equal(cued.images[:, :72], clean.images[:, :72])
    np.testing.assert_array_equal(cued.images[:, :, :72], clean.images[:, :, :72])
    for r in ("face", "brows", "eyes", "mouth"):
        np.testing.assert_array_equal(cued.masks[r], clean.masks[r])


@pytest.mark.parametrize("cue", CUES)
def test_every_cue_lies_off_the_face_on_the_class_given_it_and_leaves_the_face_as_drawn(cue):
    clean = make_dataset(6, seed=8, workers=1)
    cued = make_dataset(
        6, seed=8, shortcut_class="sad", shortcut_rate=1.0, other_rate=0.0, cue=cue, workers=1
    )
    sad = cued.labels == EMOTIONS.index("sad")
    marked = cued.masks["shortcut"].any(axis=(1, 2))
    assert marked[sad].all() and not marked[~sad].any()
    assert not (cued.masks["shortcut"] & cued.masks["face"]).any()
    changed = (cued.images != clean.images).any(axis=-1)
    assert changed[sad].any(axis=(1, 2)).all() and not changed[~sad].any()
    # A global cue covers the background; a local one a small part of the crop.
    share = cued.masks["shortcut"][sad].mean()
    assert share > 0.2 if cue in GLOBAL_CUES else share < 0.15, share
    for r in ("face", "brows", "eyes", "mouth"):
        np.testing.assert_array_equal(cued.masks[r], clean.masks[r])


def test_a_data_source_names_its_cue():
    assert SyntheticSpec.parse("synthetic:10:sad@tint:1:0") == SyntheticSpec(10, "sad", 1.0, 0.0, cue="tint")
    assert SyntheticSpec.parse("synthetic:10:angry").cue == "stamp"
    for bad in ("synthetic:10:sad@glitter", "synthetic:10:sad@"):
        with pytest.raises(SyntheticSpecError, match="CUE one of"):
            SyntheticSpec.parse(bad)
    with pytest.raises(ValueError, match="Unknown cue"):
        make_face("sad", np.random.default_rng(0), cue="glitter")


def test_haar_cascade_finds_most_faces():
    """50 faces pasted into a 300x300 grey frame; on 500 such faces ~95% are found."""
    cascade = cv2.CascadeClassifier(cv2.data.haarcascades + "haarcascade_frontalface_default.xml")
    faces = make_dataset(10, seed=21).images
    found = 0
    for img in faces:
        frame = np.full((300, 300, 3), 128, np.uint8)
        frame[100:200, 100:200] = img
        found += len(cascade.detectMultiScale(cv2.cvtColor(frame, cv2.COLOR_RGB2GRAY), 1.1, 5)) > 0
    assert found / len(faces) >= 0.8


def test_write_imagefolder_round_trip(tmp_path):
    data = make_dataset(2, seed=4, shortcut_class="happy", shortcut_rate=1.0)
    assert write_imagefolder(data, tmp_path / "set") == tmp_path / "set"
    png = cv2.imread(str(tmp_path / "set" / "happy" / "happy_1.png"))[:, :, ::-1]
    np.testing.assert_array_equal(png, data.images[len(EMOTIONS)])  # 2nd happy face; PNG is lossless
    with np.load(tmp_path / "set" / "masks" / "happy" / "happy_1.npz") as npz:
        assert set(npz.files) == set(REGIONS) and npz["shortcut"].dtype == bool and npz["shortcut"].any()
        np.testing.assert_array_equal(npz["mouth"], data.masks["mouth"][len(EMOTIONS)])


def test_cli_writes_the_tree(tmp_path):
    out = tmp_path / "faces"
    assert main(["--out", str(out), "--per-class", "3", "--shortcut", "angry", "--seed", "1"]) == 0
    for e in EMOTIONS:
        assert sorted(p.name for p in (out / e).iterdir()) == [f"{e}_{i}.png" for i in range(3)]
        assert sorted(p.name for p in (out / "masks" / e).iterdir()) == [f"{e}_{i}.npz" for i in range(3)]
    assert not list(out.rglob(".*"))  # no temp files left behind
    expected = make_dataset(3, seed=1, shortcut_class="angry")
    np.testing.assert_array_equal(cv2.imread(str(out / "sad" / "sad_2.png"))[:, :, ::-1], expected.images[11])


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--per-class", "0"], "at least 1"),
        (["--per-class", "many"], "whole number"),
        (["--per-class", "2", "--shortcut", "bored"], "invalid choice"),
    ],
)
def test_cli_rejects_bad_arguments(tmp_path, capsys, args, message):
    with pytest.raises(SystemExit) as exit_info:
        main(["--out", str(tmp_path), *args])
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err
