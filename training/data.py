"""Any labelled face source → size×size RGB faces with the five emotion labels.

Sources: an ImageFolder tree (optionally with train/ val/ test/ levels), the FER2013 CSV, and
Hugging Face `datasets` (a Dataset / DatasetDict object, a save_to_disk folder or "hf:NAME").
Each source is first listed as `_Item`s (split, origin, the source's own label, a decoder); label
mapping, decoding, error collection and class counts are shared, so every source obeys one set
of rules and a user meets the same messages whatever they load.
"""

from __future__ import annotations

import csv
import io
import logging
from collections import Counter, defaultdict
from collections.abc import Callable
from dataclasses import dataclass, replace
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from emotion.errors import EmotionLensError
from emotion.explainers.figures import FACE_CORE_ELLIPSE, FACE_ELLIPSE, crop_face_mask
from emotion.labels import EMOTIONS
from emotion.photo.faces import DetectConfig, center_box, crop_face, load_image
from emotion.storage.media import IMAGE_EXTENSIONS
from training.synthetic import SyntheticSet, SyntheticSpec, SyntheticSpecError, split_range

log = logging.getLogger(__name__)

# Names datasets commonly use for our emotions (FER2013 says "Surprise", AffectNet "anger", ...).
SYNONYMS = {"happiness": "happy", "sadness": "sad", "anger": "angry", "surprise": "surprised"}
# FER2013's `emotion` codes 0-6. Disgust and fear are not among our five: dropped unless mapped.
FER_CLASSES = ("angry", "disgust", "fear", "happy", "sad", "surprise", "neutral")
FER_SIDE = 48
# Split names as sources spell them → ours. FER2013's PublicTest was meant for model selection.
SPLIT_NAMES = {
    **dict.fromkeys(("train", "training"), "train"),
    **dict.fromkeys(("val", "valid", "validation", "dev", "publictest"), "val"),
    **dict.fromkeys(("test", "testing", "privatetest"), "test"),
}
_UNKNOWN = "<unknown>"


class DatasetError(EmotionLensError, ValueError):
    """A face source is missing, malformed or does not cover the five emotions."""


@dataclass(frozen=True)
class FaceData:
    images: np.ndarray  # N × size × size × 3 uint8 RGB
    labels: np.ndarray  # N int64, index into `label_names`
    label_names: tuple[str, ...]  # the five emotions, in EMOTIONS order
    files: list[str]  # where each face came from: a path, "csv:row 12" or "hf:train[3]"
    # N×H×W bool, True on the face, where the source knows it (drawn faces); None for crops,
    # whose face is where their geometry puts it (`face_masks`).
    drawn_face_masks: np.ndarray | None = None

    def __post_init__(self) -> None:
        n, shape = len(self.labels), self.images.shape
        if len(shape) != 4 or shape[3] != 3 or shape[0] != n or len(self.files) != n:
            raise ValueError(
                f"FaceData needs N×H×W×3 images, N labels, N files: got {shape}, {n}, {len(self.files)}."
            )
        if self.drawn_face_masks is not None and self.drawn_face_masks.shape != shape[:3]:
            raise ValueError(
                f"FaceData's face masks must be N×H×W like its images {shape[:3]}: got "
                f"{self.drawn_face_masks.shape}."
            )

    def __len__(self) -> int:
        return len(self.labels)

    def class_counts(self) -> dict[str, int]:
        counts = np.bincount(self.labels, minlength=len(self.label_names))
        return {name: int(c) for name, c in zip(self.label_names, counts, strict=True)}

    def subset(self, idx) -> FaceData:
        """The faces at `idx` (index array, bool mask or slice), as copies."""
        rows = np.atleast_1d(np.arange(len(self))[idx])  # fancy indexing copies; a slice would not
        masks = None if self.drawn_face_masks is None else self.drawn_face_masks[rows]
        return FaceData(
            self.images[rows], self.labels[rows], self.label_names, [self.files[i] for i in rows], masks
        )

    def face_masks(self, *, core: bool = False) -> np.ndarray:
        """N×H×W bool, True on the face: the one face/background definition of the shortcut
        report and of training against background shortcuts. Drawn faces bring their masks (the
        skin); any other face is a crop cut by `emotion.photo.faces.crop_face` with the default margin
        (the extractor's), so its face is where `emotion.explainers.figures.crop_face_mask` puts it:
        FACE_ELLIPSE, chin and jaw included, for the report, which must never take face for
        background; with `core`, FACE_CORE_ELLIPSE, for training, which must never leave background
        on the face it keeps. A read-only view for crops: one mask serves them all."""
        if self.drawn_face_masks is not None:
            return self.drawn_face_masks
        ellipse = FACE_CORE_ELLIPSE if core else FACE_ELLIPSE
        one = crop_face_mask(self.images.shape[1], DetectConfig().margin, ellipse)
        return np.broadcast_to(one, self.images.shape[:3])

    @property
    def face_masks_from(self) -> str:
        """Where `face_masks` comes from, in words for a report."""
        if self.drawn_face_masks is not None:
            return "synthetic face masks"
        return f"crop geometry (an ellipse around the detected box, margin {DetectConfig().margin})"


@dataclass(frozen=True)
class Splits:
    train: FaceData
    val: FaceData
    test: FaceData | None  # only when the source has its own test split


@dataclass(frozen=True)
class _Item:
    split: str | None  # ours ("train", "val", "test"), None for a source without splits
    file: str
    label: str  # the source's own label name
    load: Callable[[], np.ndarray]  # decodes the face as H×W×3 uint8 RGB


@dataclass(frozen=True)
class _Listing:
    name: str  # the source, for messages
    items: list[_Item]
    defaults: dict[str, str | None]  # the source's own label map, under the caller's
    unknown_is_error: bool  # ImageFolder warns instead: stray folders are common and harmless


def load_faces(
    source: Any,
    *,
    split: str | None = None,
    size: int = 100,
    label_map: dict[str, str | None] | None = None,
    image_column: str | None = None,
    label_column: str | None = None,
) -> FaceData:
    """Load one split of `source` (None: all of it) as size×size RGB faces labelled with EMOTIONS.

    `label_map` maps the source's label names (case-insensitive) to an emotion or to None (drop).
    Names matching an emotion or a synonym need no entry. Without a label_map, other labels are an
    error (ImageFolder: a warning, and the folder is skipped); with one, they are dropped and
    logged. `image_column` / `label_column` name a `datasets` source's columns if auto-detection
    ("image"/"img", "label"/"labels"/"emotion") does not find them.
    """
    listing = _open(source, image_column, label_column)
    items = listing.items
    if split is not None:
        want = SPLIT_NAMES.get(split.lower(), split.lower())
        have = sorted({it.split for it in items if it.split})
        if want not in have:
            raise DatasetError(
                f"{listing.name} has no {split!r} split (its splits: {', '.join(have) or 'none'}). "
                "Pass one of those, or split=None for all faces; load_splits() makes a random split."
            )
        items = [it for it in items if it.split == want]
    return _build(_map_labels(listing, items, label_map), listing.name, split or "all", size)


def load_splits(
    source: Any,
    *,
    val_fraction: float = 0.15,
    seed: int = 0,
    size: int = 100,
    label_map: dict[str, str | None] | None = None,
    image_column: str | None = None,
    label_column: str | None = None,
) -> Splits:
    """Train / val (/ test) faces. The source's own splits win (ImageFolder train/ val/ test/
    folders, FER2013's Usage column, a DatasetDict's splits); without a val split, a stratified
    `val_fraction` of train (of everything, for a source without splits) becomes val, drawn with
    `seed`. Other arguments as in `load_faces`.
    """
    if not 0.0 < val_fraction < 1.0:
        raise ValueError(f"val_fraction must be between 0 and 1, got {val_fraction}.")
    listing = _open(source, image_column, label_column)
    by_split: dict[str | None, list[tuple[_Item, int]]] = defaultdict(list)
    for item, label in _map_labels(listing, listing.items, label_map):
        by_split[item.split].append((item, label))
    have = {it.split for it in listing.items}  # before mapping, which may empty a split
    if have <= {None}:  # no splits of its own (or no faces: _build says which classes are missing)
        train, val = stratified_split(_build(by_split[None], listing.name, "all", size), val_fraction, seed)
        return Splits(train, val, None)
    if "train" not in have:
        raise DatasetError(
            f"{listing.name} has splits ({', '.join(sorted(map(str, have)))}) but no train split: "
            "name the training split 'train', or load it with load_faces(split=...)."
        )
    if ignored := sorted(map(str, have - {"train", "val", "test"})):
        log.info("Ignoring splits %s of %s: only train, val and test are used.", ignored, listing.name)
    train = _build(by_split["train"], listing.name, "train", size)
    test = _build(by_split["test"], listing.name, "test", size) if "test" in have else None
    if "val" in have:
        return Splits(train, _build(by_split["val"], listing.name, "val", size), test)
    train, val = stratified_split(train, val_fraction, seed)
    return Splits(train, val, test)


def as_face_data(dataset: SyntheticSet, start: int = 0) -> FaceData:
    """A SyntheticSet as FaceData, ids `synthetic:{index}` from `start`, with its drawn face masks
    when it was drawn with masks."""
    ids = [f"synthetic:{start + i}" for i in range(len(dataset.labels))]
    return FaceData(dataset.images, dataset.labels, EMOTIONS, ids, dataset.masks.get("face"))


def synthetic_split(
    spec: str, split: str | None, *, seed: int, val_fraction: float, face_masks: bool = False
) -> FaceData:
    """A split of a `synthetic:…` data source (`SyntheticSpec`) as FaceData, with the drawn face
    masks if `face_masks`: "train" or "val" as a training run with `seed` and `val_fraction`
    draws them, "all" both (the training faces, then the validation faces, as one range), None
    the source's N faces a class drawn with `seed`."""
    parsed = SyntheticSpec.parse(spec)
    if split is None:
        per_class, start = parsed.per_class, 0
    elif split == "all":
        val_per_class, val_start = split_range(parsed, "val", val_fraction=val_fraction)
        per_class, start = val_start + val_per_class, 0
    elif split in ("train", "val"):
        per_class, start = split_range(parsed, split, val_fraction=val_fraction)
    else:
        raise SyntheticSpecError(
            f"A synthetic source has no {split!r} split: use train, val, all, or none for N faces a class."
        )
    drawn = parsed.draw(per_class, seed=seed, start=start, with_masks=face_masks)
    if face_masks:  # only the face's: the other regions' masks would be 4× its memory for nothing
        drawn = replace(drawn, masks={"face": drawn.masks["face"]})
    return as_face_data(drawn, start)


def load_source(
    source: str,
    split: str | None = None,
    *,
    seed: int = 0,
    val_fraction: float = 0.15,
    face_masks: bool = False,
) -> FaceData:
    """One split of any data source the commands take (a folder, a CSV, `hf:NAME` or
    `synthetic:…`), the one place where drawn and real data part ways. "train" and "val": the
    faces a training run with `seed` and `val_fraction` trains and validates on (`load_splits`;
    drawn: `synthetic_split`); "all" or None: every face of the source (drawn:
    None is N faces a class drawn with `seed`, "all" a run's training and validation faces);
    another name: the source's own split of that name. `face_masks`: keep drawn faces' masks."""
    if source.startswith("synthetic:"):
        return synthetic_split(source, split, seed=seed, val_fraction=val_fraction, face_masks=face_masks)
    if split in ("train", "val"):
        splits = load_splits(source, val_fraction=val_fraction, seed=seed)
        return splits.train if split == "train" else splits.val
    return load_faces(source, split=None if split == "all" else split)


def load_train_and_val(
    source: str, *, seed: int = 0, val_fraction: float = 0.15, face_masks: bool = False
) -> tuple[FaceData, FaceData]:
    """(train, val) of a training run, as `load_source` gives each, reading a real source once.
    `face_masks` applies to the training faces (the option against background shortcuts)."""
    if source.startswith("synthetic:"):
        return (
            load_source(source, "train", seed=seed, val_fraction=val_fraction, face_masks=face_masks),
            load_source(source, "val", seed=seed, val_fraction=val_fraction),
        )
    splits = load_splits(source, val_fraction=val_fraction, seed=seed)
    return splits.train, splits.val


def stratified_split(data: FaceData, val_fraction: float, seed: int) -> tuple[FaceData, FaceData]:
    """(train, val) with `val_fraction` of each class in val; the same seed gives the same split."""
    rng = np.random.default_rng(seed)
    in_val = np.zeros(len(data), bool)
    for c in range(len(data.label_names)):
        rows = np.flatnonzero(data.labels == c)
        # Every class with two faces gets one in val (per-class metrics need it), and never
        # loses its last training face.
        n_val = min(len(rows) - 1, max(1, round(len(rows) * val_fraction))) if len(rows) >= 2 else 0
        in_val[rng.permutation(rows)[:n_val]] = True
    return data.subset(~in_val), data.subset(in_val)


# --- listing each kind of source -------------------------------------------------------------


def _open(source: Any, image_column: str | None, label_column: str | None) -> _Listing:
    hf = partial(_hf_items, image_column=image_column, label_column=label_column)
    if isinstance(source, str) and source.startswith("hf:"):
        # NAME is anything load_dataset takes: a Hub id, or a local folder it can read (offline).
        return _Listing(source, hf(_datasets().load_dataset(source[3:])), {}, True)
    if isinstance(source, (str, Path)):
        path = Path(source)
        if path.is_file() and path.suffix.lower() == ".csv":
            return _Listing(str(path), _fer_items(path), {"disgust": None, "fear": None}, True)
        if (path / "dataset_dict.json").is_file() or (path / "state.json").is_file():
            return _Listing(str(path), hf(_datasets().load_from_disk(str(path))), {}, True)
        if path.is_dir():
            return _Listing(str(path), _imagefolder_items(path), {}, False)
        raise DatasetError(
            f"No face dataset at {path}: pass an ImageFolder directory, a FER2013 .csv file, a "
            "folder written by datasets' save_to_disk, or 'hf:NAME' for a Hub dataset."
        )
    if type(source).__module__.split(".")[0] == "datasets":  # no import: datasets is optional
        return _Listing(f"the {type(source).__name__}", hf(source), {}, True)
    raise TypeError(
        f"Cannot load faces from a {type(source).__name__}: pass a path, 'hf:NAME' or a "
        "datasets.Dataset / DatasetDict."
    )


def _imagefolder_items(root: Path) -> list[_Item]:
    dirs = _subdirs(root)
    split_dirs = [d for d in dirs if d.name.lower() in SPLIT_NAMES]
    if not split_dirs:
        return _class_items(root, None)
    if others := [d.name for d in dirs if d not in split_dirs]:
        log.warning("Ignoring folders beside the split folders of %s: %s.", root, ", ".join(others))
    return [it for d in split_dirs for it in _class_items(d, SPLIT_NAMES[d.name.lower()])]


def _subdirs(folder: Path) -> list[Path]:
    # masks/ holds the synthetic generator's region masks, not a class; dot-folders are tool
    # litter (.ipynb_checkpoints).
    return [
        d
        for d in sorted(folder.iterdir())
        if d.is_dir() and d.name.lower() != "masks" and not d.name.startswith(".")
    ]


def _class_items(folder: Path, split: str | None) -> list[_Item]:
    return [
        _Item(split, str(p), d.name, partial(load_image, p))
        for d in _subdirs(folder)
        for p in sorted(d.rglob("*"))
        # Dot-files include half-written temp files (synthetic's atomic writes).
        if p.suffix.lower() in IMAGE_EXTENSIONS and not p.name.startswith(".") and p.is_file()
    ]


def _fer_items(path: Path) -> list[_Item]:
    items, bad = [], []
    with path.open(newline="") as f:
        reader = csv.DictReader(f)
        cols = {(name or "").strip().lower(): name for name in reader.fieldnames or []}
        if not {"emotion", "pixels"} <= cols.keys():
            raise DatasetError(
                f"{path} is not a FER2013 CSV: it needs 'emotion' and 'pixels' columns (and "
                f"optionally 'Usage'); its columns are {reader.fieldnames}."
            )
        for row in reader:
            try:
                code, pixels, split = _parse_fer_row(row, cols)
            except ValueError as err:
                bad.append(f"row {reader.line_num}: {err}")
                continue
            label = FER_CLASSES[code] if 0 <= code < len(FER_CLASSES) else str(code)
            items.append(_Item(split, f"csv:row {reader.line_num}", label, partial(load_image, pixels)))
    if bad:
        raise DatasetError(
            f"{len(bad)} malformed row(s) in {path} (rows count from the header, row 1): "
            f"{'; '.join(bad)}. A FER2013 row holds an emotion code 0-6, {FER_SIDE * FER_SIDE} "
            "space-separated grey levels 0-255 and, optionally, Usage Training / PublicTest / "
            "PrivateTest: fix or delete these rows."
        )
    return items


def _parse_fer_row(row: dict, cols: dict[str, str]) -> tuple[int, np.ndarray, str | None]:
    if None in row.values() or None in row:  # csv's marks for too few / too many fields
        raise ValueError("wrong number of fields")
    code = row[cols["emotion"]].strip()
    if not code.lstrip("-").isdigit():
        raise ValueError(f"emotion {code!r} is not a whole number")
    try:
        pixels = np.array(row[cols["pixels"]].split(), dtype=np.int64)
    except ValueError:
        raise ValueError("pixels are not all whole numbers") from None
    if pixels.size != FER_SIDE * FER_SIDE:
        raise ValueError(f"{pixels.size} pixel values, expected {FER_SIDE * FER_SIDE}")
    if pixels.min() < 0 or pixels.max() > 255:
        raise ValueError("pixel values outside 0-255")
    split = None
    if "usage" in cols:
        usage = row[cols["usage"]].strip()
        if usage.lower() not in SPLIT_NAMES:
            raise ValueError(f"unknown Usage {usage!r}")
        split = SPLIT_NAMES[usage.lower()]
    return int(code), pixels.astype(np.uint8).reshape(FER_SIDE, FER_SIDE), split


def _datasets():
    try:
        import datasets
    except ImportError as err:
        raise ImportError("Hugging Face datasets need the 'datasets' package: pip install datasets") from err
    return datasets


def _hf_items(ds: Any, *, image_column: str | None, label_column: str | None) -> list[_Item]:
    if not hasattr(ds, "features"):
        if not isinstance(ds, dict):  # streaming datasets cannot be indexed
            raise DatasetError(f"Cannot index a {type(ds).__name__}: load the dataset without streaming.")
        parts = [
            (str(name), SPLIT_NAMES.get(str(name).lower(), str(name).lower()), d) for name, d in ds.items()
        ]
    else:
        parts = [(ds.split or "data", None, ds)]
    items = []
    for name, split, part in parts:
        image_col = _column(part, image_column, ("image", "img"), "Image", "image_column", "images")
        label_col = _column(
            part, label_column, ("label", "labels", "emotion"), "ClassLabel", "label_column", "labels"
        )
        labels = [_hf_label_name(part.features[label_col], label_col, v) for v in part[label_col]]
        images = part.select_columns([image_col])
        items += [
            _Item(split, f"hf:{name}[{i}]", lab, partial(_hf_image, images, image_col, i))
            for i, lab in enumerate(labels)
        ]
    return items


def _column(ds: Any, given: str | None, names: tuple[str, ...], kind: str, arg: str, what: str) -> str:
    if given is not None:
        if given not in ds.column_names:
            raise DatasetError(f"No column {given!r}: the columns are {ds.column_names}. Fix {arg}.")
        return given
    by_lower = {c.lower(): c for c in ds.column_names}
    found = [by_lower[n] for n in names if n in by_lower]
    found += [c for c, f in ds.features.items() if type(f).__name__ == kind]
    if not found:
        raise DatasetError(f"Which column holds the {what}? Columns: {ds.column_names}; pass {arg}=...")
    return found[0]


def _hf_label_name(feature: Any, column: str, value: Any) -> str:
    names = getattr(feature, "names", None)
    if value is None or isinstance(value, str):
        return "<missing>" if value is None else value
    if names is None or not isinstance(value, (int, np.integer)):
        raise DatasetError(
            f"The {column!r} column holds {type(value).__name__} values without names. Give it names "
            f"first: ds = ds.cast_column({column!r}, datasets.ClassLabel(names=[...]))."
        )
    # -1 marks an unlabelled row on the Hub; indexing names with it would pick the last class.
    return names[value] if 0 <= value < len(names) else str(value)


def _hf_image(ds: Any, column: str, i: int) -> np.ndarray:
    value = ds[i][column]
    if isinstance(value, dict):  # an Image feature with decode=False
        value = Image.open(io.BytesIO(value["bytes"])) if value.get("bytes") else value["path"]
    return load_image(np.asarray(value) if isinstance(value, list) else value)


# --- the rules every source shares -----------------------------------------------------------


def _norm(name: Any) -> str:
    return str(name).strip().lower()


def _map_labels(
    listing: _Listing, items: list[_Item], label_map: dict[str, str | None] | None
) -> list[tuple[_Item, int]]:
    user = {_norm(k): v for k, v in (label_map or {}).items()}
    for key, value in user.items():
        if value is not None and SYNONYMS.get(_norm(value), _norm(value)) not in EMOTIONS:
            raise DatasetError(
                f"label_map sends {key!r} to {value!r}, which is not one of {', '.join(EMOTIONS)}; "
                "use one of those, or None to drop the label."
            )
    table = {**listing.defaults, **user}
    raw = Counter(it.label for it in items)
    target: dict[str, str | None] = {}
    for name in raw:
        key = _norm(name)
        value = table[key] if key in table else SYNONYMS.get(key, key)
        target[name] = None if value is None else SYNONYMS.get(_norm(value), _norm(value))
        if target[name] is not None and target[name] not in EMOTIONS:
            target[name] = _UNKNOWN
    if unused := sorted(set(user) - {_norm(n) for n in raw}):
        log.warning("label_map keys not found in %s: %s (typo?).", listing.name, ", ".join(unused))
    if unknown := {n: c for n, c in raw.items() if target[n] == _UNKNOWN}:
        first = {}
        for it in items:
            first.setdefault(it.label, it.file)
        named = ", ".join(f"{n!r} ({c} faces, e.g. {first[n]})" for n, c in unknown.items())
        if listing.unknown_is_error and label_map is None:
            raise DatasetError(
                f"Labels not among the five emotions ({', '.join(EMOTIONS)}) in {listing.name}: {named}. "
                f"Map them with label_map, e.g. label_map={dict.fromkeys(unknown)}: an emotion name keeps "
                "their faces under that emotion, None drops them."
            )
        log.warning(
            "Skipping labels (folder names) not among the five emotions in %s: %s. To use them, map "
            "them with label_map (an emotion name; None drops them without this warning).",
            listing.name, named,
        )  # fmt: skip
    if dropped := {n: c for n, c in raw.items() if target[n] is None}:
        log.info("Dropped labels of %s: %s.", listing.name, ", ".join(f"{n} {c}" for n, c in dropped.items()))
    return [
        (it, EMOTIONS.index(target[it.label])) for it in items if target[it.label] not in (None, _UNKNOWN)
    ]


def _build(pairs: list[tuple[_Item, int]], name: str, split: str, size: int) -> FaceData:
    counts = np.bincount([label for _, label in pairs], minlength=len(EMOTIONS))
    if missing := [e for e, c in zip(EMOTIONS, counts, strict=True) if c == 0]:
        raise DatasetError(
            f"No faces for {', '.join(missing)} in {name} (split: {split}). Every emotion needs "
            "examples: add images with that label (a folder named after it in an ImageFolder), "
            "or send one of the source's labels to it with label_map={'their_name': 'emotion'}."
        )
    images = np.empty((len(pairs), size, size, 3), np.uint8)
    bad: list[tuple[str, Exception]] = []
    for k, (item, _) in enumerate(pairs):
        try:
            face = item.load()
        except (OSError, ValueError) as err:  # ImageError is a ValueError; PIL raises OSError
            bad.append((item.file, err))
            continue
        # Sources hold face crops already: a centred square (the app's whole-image path) resized
        # with crop_face's rule (INTER_AREA down, INTER_LINEAR up), so training sees the app's crops.
        images[k] = crop_face(face, center_box(face), margin=0.0, size=size)
    if bad:
        raise DatasetError(
            f"{len(bad)} unreadable image(s) in {name}: {', '.join(f for f, _ in bad)}. "
            f"First error: {bad[0][1]} Fix or delete these files and load again."
        )
    data = FaceData(
        images, np.array([label for _, label in pairs], np.int64), EMOTIONS, [it.file for it, _ in pairs]
    )
    width = max(map(len, EMOTIONS))
    table = "\n".join(f"  {e:<{width}} {c:>7}" for e, c in data.class_counts().items())
    log.info("%s (%s): %d faces\n%s", name, split, len(data), table)
    return data
