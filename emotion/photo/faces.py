"""Photos in, 100×100 faces out: image loading, Haar-cascade detection and square crops.

Every room (app, CLI, training extraction) goes through these functions so that a face is cut
the same way everywhere: the model sees at inference exactly the crops it was trained on.
"""

from __future__ import annotations

import io
import logging
import threading
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
from PIL import Image, ImageOps

from emotion.errors import DetectorUnavailableError, ImageError
from emotion.storage.media import video_container

log = logging.getLogger(__name__)

FACE_SIZE = 100
# Decompression bombs and camera RAW-sized inputs are refused before decoding; 50 MP covers any
# phone photo. Larger photos are downscaled for detection anyway.
MAX_PIXELS = 50_000_000

ImageInput = str | Path | Image.Image | np.ndarray


@dataclass(frozen=True)
class Box:
    """A face box in photo pixels: top-left corner, width and height."""

    x: int
    y: int
    w: int
    h: int

    @property
    def area(self) -> int:
        return self.w * self.h

    def as_list(self) -> list[int]:
        return [self.x, self.y, self.w, self.h]


@dataclass(frozen=True)
class DetectConfig:
    scale_factor: float = 1.1  # pyramid step of the cascade: smaller finds more, costs more
    min_neighbors: int = 5  # overlapping hits needed; OpenCV's recommended value
    min_size: int = 40  # smallest face side in pixels of the original photo
    margin: float = 0.15  # extra border around the Haar box on every side, as a share of its side
    # Detection runs on a copy no larger than this: the cascade's cost grows with the pixel count
    # and faces in a demo photo are far bigger than its 24-px window.
    max_side: int = 1024


def load_image(image: ImageInput) -> np.ndarray:
    """Any supported input → H×W×3 uint8 RGB, upright (EXIF orientation applied).

    Accepts a path, a PIL image or an H×W, H×W×1, H×W×3 or H×W×4 array of uint8, uint16 or
    float in [0, 1]. The caller's array is never modified.
    """
    if isinstance(image, (str, Path)):
        return _pil_to_rgb(_open_path(Path(image)))
    if isinstance(image, Image.Image):
        return _pil_to_rgb(image)
    if isinstance(image, np.ndarray):
        return _array_to_rgb(image)
    raise ImageError(
        f"Cannot read an image from a {type(image).__name__}: "
        "pass a file path, a PIL image or an H×W×3 uint8 array."
    )


def _open_path(path: Path) -> Image.Image:
    if not path.is_file():
        raise ImageError(f"No image file at {path}: check the path.")
    try:
        data = path.read_bytes()
    except OSError as err:
        raise ImageError(
            f"{path.name} could not be read ({err.strerror or err}): check its permissions."
        ) from err
    try:
        img = Image.open(io.BytesIO(data))
        _check_size(img.width, img.height)  # from the header: a bomb is refused before it is decoded
        img.load()
    except ImageError:
        raise
    except Image.DecompressionBombError as err:
        raise ImageError(f"{path.name} is too large to decode safely: {err}") from err
    # Pillow's decoders raise more than their documented errors on hostile bytes (IndexError from
    # QOI, NotImplementedError from DDS: tests/test_hostile.py's fuzz): all mean "not readable".
    except Exception as err:
        video = video_container(data)
        if video:
            raise ImageError(
                f"{path.name} is a video ({video}), not a photo: analyse it in the 'Video' tab "
                "(or with `python -m emotion video`)."
            ) from err
        raise ImageError(
            f"{path.name} is not a readable image ({err}). "
            "Use a JPEG, PNG, WebP, BMP or TIFF photo; if it is one, the file may be truncated."
        ) from err
    return img


def _pil_to_rgb(img: Image.Image) -> np.ndarray:
    _check_size(img.width, img.height)
    img = ImageOps.exif_transpose(img)
    if img.mode in ("I;16", "I;16B", "I;16L", "I"):
        # 16- and 32-bit grey: scale to 8 bits instead of letting PIL clip everything to white.
        arr = np.asarray(img, dtype=np.float64)
        peak = 65535.0 if img.mode.startswith("I;16") or arr.max() > 255 else 255.0
        return _array_to_rgb((arr / peak).astype(np.float32))
    if img.mode == "F":  # float grey (a float TIFF): scaled as a float array, not clipped to black
        return _array_to_rgb(np.asarray(img, dtype=np.float32))
    if img.mode in ("RGBA", "LA", "PA") or (img.mode == "P" and "transparency" in img.info):
        # Transparent pixels become white, as in a browser, rather than black blotches.
        rgba = img.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        img = Image.alpha_composite(background, rgba)
    try:
        img = img.convert("RGB")
    except ValueError as err:  # modes Pillow cannot convert, e.g. "La"
        raise ImageError(f"Cannot convert a PIL image of mode {img.mode} to RGB ({err}).") from err
    return np.asarray(img, dtype=np.uint8).copy()


def _array_to_rgb(arr: np.ndarray) -> np.ndarray:
    if arr.ndim == 3 and arr.shape[2] == 1:
        arr = arr[:, :, 0]
    if arr.ndim not in (2, 3) or (arr.ndim == 3 and arr.shape[2] not in (3, 4)):
        raise ImageError(f"An image array must be H×W, H×W×3 or H×W×4; got shape {arr.shape}.")
    _check_size(arr.shape[1], arr.shape[0])
    arr = _to_uint8(arr)
    if arr.ndim == 2:
        return np.repeat(arr[:, :, None], 3, axis=2)
    if arr.shape[2] == 4:
        alpha = arr[:, :, 3:4].astype(np.float32) / 255.0
        rgb = arr[:, :, :3].astype(np.float32) * alpha + 255.0 * (1.0 - alpha)
        return rgb.round().astype(np.uint8)
    return arr.copy()


def _to_uint8(arr: np.ndarray) -> np.ndarray:
    if arr.dtype == np.uint8:
        return arr
    if arr.dtype.kind == "u" and arr.dtype.itemsize == 2:  # either byte order
        return (arr.astype(np.float32) / 257.0).round().astype(np.uint8)
    if arr.dtype == np.bool_:  # a mask: True is white, as in Pillow's mode "1"
        return arr.astype(np.uint8) * 255
    if np.issubdtype(arr.dtype, np.floating):
        if not np.isfinite(arr).all():
            raise ImageError("The image array holds NaN or infinite values.")
        scale = 255.0 if arr.max() <= 1.0 else 1.0
        return np.clip(arr * scale, 0, 255).round().astype(np.uint8)
    if np.issubdtype(arr.dtype, np.integer):
        return np.clip(arr, 0, 255).astype(np.uint8)
    raise ImageError(f"Unsupported image array dtype {arr.dtype}: use uint8.")


def _check_size(width: int, height: int) -> None:
    if width < 8 or height < 8:
        raise ImageError(f"The image is {width}×{height} pixels: too small to hold a face.")
    if width * height > MAX_PIXELS:
        raise ImageError(
            f"The image is {width}×{height} pixels ({width * height / 1e6:.0f} MP), above the "
            f"{MAX_PIXELS / 1e6:.0f} MP limit: downscale it first."
        )


def has_haar_cascade() -> bool:
    """Whether this OpenCV can detect faces: 5.x removed `CascadeClassifier`."""
    return hasattr(cv2, "CascadeClassifier")


# One cascade per thread: detectMultiScale keeps its working state in the classifier, and a
# call from another thread at the same time corrupts it (OpenCV asserts in getScaleData). The
# page detects in several threads at once: live streams, uploads, photo and video lanes.
_per_thread = threading.local()


def _cascade() -> cv2.CascadeClassifier:
    """This thread's cascade, loaded on its first call."""
    if not hasattr(_per_thread, "cascade"):
        _per_thread.cascade = _load_cascade()
    return _per_thread.cascade


def _load_cascade() -> cv2.CascadeClassifier:
    if not has_haar_cascade():
        raise DetectorUnavailableError(
            f"OpenCV {cv2.__version__} has no CascadeClassifier (OpenCV 5 removed it), so it cannot "
            "find faces: install 'opencv-python-headless<5', or pass face crops with "
            "whole_image='always'."
        )
    path = Path(cv2.data.haarcascades) / "haarcascade_frontalface_default.xml"
    cascade = cv2.CascadeClassifier(str(path))
    if cascade.empty():
        raise DetectorUnavailableError(
            f"OpenCV could not load its Haar cascade from {path}: reinstall 'opencv-python-headless<5'."
        )
    return cascade


def detect_faces(image: np.ndarray, config: DetectConfig | None = None) -> list[Box]:
    """Haar-cascade face boxes on an RGB photo, largest first."""
    config = config or DetectConfig()
    gray = cv2.cvtColor(image, cv2.COLOR_RGB2GRAY)
    scale = min(1.0, config.max_side / max(gray.shape))
    if scale < 1.0:
        gray = cv2.resize(gray, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
    min_side = max(24, round(config.min_size * scale))
    found = _cascade().detectMultiScale(
        gray,
        scaleFactor=config.scale_factor,
        minNeighbors=config.min_neighbors,
        minSize=(min_side, min_side),
    )
    boxes = [Box(*(round(int(v) / scale) for v in row)) for row in np.asarray(found).reshape(-1, 4)]
    return sorted(boxes, key=lambda b: b.area, reverse=True)


def square_around(box: Box, margin: float) -> Box:
    """The square with `margin` (share of the box side) added on each side, centred on `box`."""
    side = round(max(box.w, box.h) * (1 + 2 * margin))
    cx, cy = box.x + box.w / 2, box.y + box.h / 2
    return Box(round(cx - side / 2), round(cy - side / 2), side, side)


def crop_face(image: np.ndarray, box: Box, *, margin: float = 0.15, size: int = FACE_SIZE) -> np.ndarray:
    """A size×size RGB face cut as a square around `box`; borders past the photo edge are
    replicated so a face near the edge is not squashed."""
    sq = square_around(box, margin)
    h, w = image.shape[:2]
    pad = max(0, -sq.x, -sq.y, sq.x + sq.w - w, sq.y + sq.h - h)
    src = cv2.copyMakeBorder(image, pad, pad, pad, pad, cv2.BORDER_REPLICATE) if pad else image
    patch = src[sq.y + pad : sq.y + pad + sq.h, sq.x + pad : sq.x + pad + sq.w]
    interp = cv2.INTER_AREA if sq.w > size else cv2.INTER_LINEAR
    return cv2.resize(patch, (size, size), interpolation=interp)


def center_box(image: np.ndarray) -> Box:
    """The largest centred square: the 'whole image is the face' fallback."""
    h, w = image.shape[:2]
    side = min(h, w)
    return Box((w - side) // 2, (h - side) // 2, side, side)


def draw_boxes(image: np.ndarray, boxes: list[Box], selected: int = 0) -> np.ndarray:
    """A copy of the photo with numbered boxes; the selected face in green, others in orange."""
    out = image.copy()
    thickness = max(2, round(max(image.shape[:2]) / 300))
    for i, b in enumerate(boxes):
        color = (40, 200, 60) if i == selected else (255, 150, 30)
        cv2.rectangle(out, (b.x, b.y), (b.x + b.w, b.y + b.h), color, thickness)
        cv2.putText(
            out,
            str(i + 1),
            (b.x + 4, b.y + 4 + 12 * thickness),
            cv2.FONT_HERSHEY_SIMPLEX,
            0.4 * thickness,
            color,
            thickness,
            cv2.LINE_AA,
        )
    return out
