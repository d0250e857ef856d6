"""Image loading and face cutting: every odd input either works or says what is wrong."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image
from skimage import data

from emotion.photo.faces import (
    Box,
    center_box,
    crop_face,
    detect_faces,
    draw_boxes,
    load_image,
    square_around,
)


@pytest.fixture(scope="module")
def astronaut() -> np.ndarray:
    return data.astronaut()


def test_astronaut_has_one_face_where_her_face_is(astronaut):
    boxes = detect_faces(astronaut)
    assert len(boxes) == 1
    b = boxes[0]
    # Eileen Collins' face sits in the upper middle of the 512×512 photo.
    assert 150 < b.x + b.w / 2 < 300 and 60 < b.y + b.h / 2 < 180
    assert 60 < b.w < 160


def test_crop_is_a_100px_rgb_square(astronaut):
    face = crop_face(astronaut, detect_faces(astronaut)[0])
    assert face.shape == (100, 100, 3) and face.dtype == np.uint8


def test_crop_near_the_edge_is_padded_not_squashed():
    img = np.zeros((200, 200, 3), np.uint8)
    img[:, :100] = 255
    face = crop_face(img, Box(-20, 50, 80, 80), margin=0.0)
    assert face.shape == (100, 100, 3)
    # Replicated border: the part left of the photo keeps the edge colour (white).
    assert face[:, :10].min() == 255


def test_square_around_adds_the_margin_on_each_side():
    sq = square_around(Box(10, 20, 40, 50), margin=0.1)
    assert sq.w == sq.h == 60
    assert abs((sq.x + sq.w / 2) - 30) <= 1 and abs((sq.y + sq.h / 2) - 45) <= 1


def test_centre_box_is_the_largest_centred_square():
    assert center_box(np.zeros((100, 300, 3), np.uint8)) == Box(100, 0, 100, 100)


def _save(img: Image.Image, path, **kw):
    img.save(path, **kw)
    return path


def test_grayscale_rgba_and_16_bit_files_become_rgb_uint8(tmp_path, astronaut):
    gray = _save(Image.fromarray(astronaut).convert("L"), tmp_path / "g.png")
    rgba = _save(Image.fromarray(astronaut).convert("RGBA"), tmp_path / "a.png")
    sixteen = Image.fromarray((astronaut[:, :, 0].astype(np.uint16) * 257), mode="I;16")
    deep = _save(sixteen, tmp_path / "d.png")
    for path in (gray, rgba, deep):
        img = load_image(path)
        assert img.shape == (512, 512, 3) and img.dtype == np.uint8, path
    # 16-bit is scaled to 8 bits, not clipped to white.
    assert np.abs(load_image(deep)[:, :, 0].astype(int) - astronaut[:, :, 0]).max() <= 1
    assert len(detect_faces(load_image(gray))) == 1


def test_exif_rotated_photo_is_turned_upright(tmp_path, astronaut):
    rotated = Image.fromarray(np.rot90(astronaut, k=-1).copy())  # stored lying on its side
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90° clockwise to display"
    path = tmp_path / "rot.jpg"
    rotated.save(path, exif=exif.tobytes(), quality=95)
    upright = load_image(path)
    assert upright.shape == (512, 512, 3)
    assert len(detect_faces(upright)) == 1


def test_arrays_of_many_kinds_are_accepted_and_never_modified(astronaut):
    original = astronaut.copy()
    out = load_image(astronaut)
    out[:] = 0
    assert np.array_equal(astronaut, original)
    assert load_image(astronaut.astype(np.float32) / 255).dtype == np.uint8
    assert load_image(astronaut[:, :, 0]).shape == (512, 512, 3)
    rgba = np.dstack([astronaut, np.full((512, 512), 255, np.uint8)])
    assert np.array_equal(load_image(rgba), astronaut)


# Unreadable, truncated, missing, too large and wrongly typed inputs: tests/test_hostile.py.


def test_draw_boxes_returns_a_copy(astronaut):
    boxes = detect_faces(astronaut)
    out = draw_boxes(astronaut, boxes)
    assert out.shape == astronaut.shape and not np.array_equal(out, astronaut)


def test_faces_are_found_from_several_threads_at_once(astronaut):
    # The page detects in several threads at once (live streams, uploads, the photo and video
    # lanes), on photos of other sizes: each call gets the boxes a lone call gets, and none
    # crashes OpenCV.
    from concurrent.futures import ThreadPoolExecutor

    import cv2

    from emotion.video.frames import VIDEO_DETECT

    jobs = [(astronaut, None), (cv2.resize(astronaut, (900, 900)), VIDEO_DETECT), (astronaut[::2, ::2], None)]
    alone = [detect_faces(photo, config) for photo, config in jobs]
    with ThreadPoolExecutor(max_workers=4) as pool:
        found = list(pool.map(lambda k: detect_faces(*jobs[k % 3]), range(150)))
    assert all(boxes == alone[k % 3] for k, boxes in enumerate(found))
