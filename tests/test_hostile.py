"""Hostile inputs: every broken, odd or malicious photo and video either gives a correct result or
a message that says what is wrong, in the core (emotion.photo.faces.load_image, emotion.video.timeline) and
through the served page, which keeps serving after each; a fuzz test throws random bytes and
arrays at both decoders. All media are made here, small, from code."""

from __future__ import annotations

import io
import struct
import wave
import zlib
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np
import pytest
from gradio_client import Client, handle_file
from gradio_client.exceptions import AppError
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from PIL import Image
from skimage import data

from bench.video import write_clip
from emotion.errors import EmotionLensError, ImageError, VideoError
from emotion.photo.faces import load_image
from emotion.video.timeline import Timeline, VideoInfo, VideoLimits, analyze_video, probe_video

from .conftest import ROOT, served_untrained_app

ASTRONAUT_JPG = ROOT / "app/examples/astronaut.jpg"
FOURCC = {".mp4": "mp4v", ".avi": "MJPG", ".mkv": "MJPG", ".webm": "VP80"}  # all in OpenCV's FFmpeg

# -- media made here ------------------------------------------------------------------------------


def _write(path: Path, content: bytes | str) -> Path:
    if isinstance(content, str):
        content = content.encode()
    path.write_bytes(content)
    return path


def _encoded(image: np.ndarray | Image.Image, fmt: str, **save) -> bytes:
    buf = io.BytesIO()
    (image if isinstance(image, Image.Image) else Image.fromarray(image)).save(buf, fmt, **save)
    return buf.getvalue()


def _clip(
    path: Path,
    frames: int | list[np.ndarray] = 10,
    size: tuple[int, int] = (64, 64),
    fps: float = 10.0,
    *,
    noise: bool = False,
) -> Path:
    """A clip in the container `path`'s suffix names: `frames` RGB frames, or that many flat grey
    ones (random noise with `noise`: a codec then has bytes to lose when the file is cut)."""
    if isinstance(frames, int):
        rng = np.random.default_rng(0)
        w, h = size
        frames = [
            rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
            if noise
            else np.full((h, w, 3), (40 + 20 * i) % 256, np.uint8)
            for i in range(frames)
        ]
    return write_clip(path, frames, fps, FOURCC[path.suffix])


def _cut(path: Path, share: float, name: str) -> Path:
    """The first `share` of `path`'s bytes, as if the upload stopped there."""
    content = path.read_bytes()
    return _write(path.with_name(name), content[: int(len(content) * share)])


def _wav(path: Path) -> Path:
    """One second of 8-kHz silence: sound, no picture."""
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(8000)
        w.writeframes(bytes(16000))
    return path


def _png(width: int, height: int, pixels: bytes = b"\0" * 64) -> bytes:
    """A grey PNG written by hand: its header may claim any size whatever its data holds."""

    def chunk(tag: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + tag + body + struct.pack(">I", zlib.crc32(tag + body))

    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(pixels))
        + chunk(b"IEND", b"")
    )


def _exif_jpeg(path: Path, orientation: int, image: np.ndarray) -> Path:
    exif = Image.Exif()
    exif[0x0112] = orientation
    Image.fromarray(image).save(path, exif=exif.tobytes())
    return path


@pytest.fixture(scope="module")
def astronaut_face_clip(tmp_path_factory) -> Path:
    """10 frames of the astronaut's upper 256×256 (her face, 95 px), 10 frames/s MP4."""
    head = np.ascontiguousarray(data.astronaut()[:256, 100:356])
    return _clip(tmp_path_factory.mktemp("face") / "astronaut.mp4", [head] * 10)


def _odd(name: str) -> str:
    return f"фото 😀 ü\u200b {name}"  # Cyrillic, an emoji, a zero-width space and spaces


# -- photos that must be refused with a message that says why --------------------------------------

# A case is a maker (a tmp folder → what is passed to the decoder) registered by name in a table,
# with what it must give: the message's pattern, or the array's shape and a check of its pixels.
Make = Callable[[Path], object]
Check = Callable[[np.ndarray], bool]
PHOTO_ERRORS: dict[str, tuple[Make, str]] = {}
PHOTO_RESULTS: dict[str, tuple[Make, tuple[int, int, int], Check]] = {}
VIDEO_ERRORS: dict[str, tuple[Make, str]] = {}


def _registered(table: dict, *expected) -> Callable[[Make], Make]:
    def register(make: Make) -> Make:
        table[make.__name__] = (make, *expected)
        return make

    return register


def refused_photo(message: str) -> Callable[[Make], Make]:
    return _registered(PHOTO_ERRORS, message)


def read_photo(shape: tuple[int, int, int], check: Check = lambda rgb: True) -> Callable[[Make], Make]:
    return _registered(PHOTO_RESULTS, shape, check)


def refused_video(message: str) -> Callable[[Make], Make]:
    return _registered(VIDEO_ERRORS, message)


@refused_photo("notes.jpg is not a readable image")
def text_file(tmp):
    return _write(tmp / "notes.jpg", "this is not an image")


@refused_photo("empty.jpg is not a readable image")
def empty_file(tmp):
    return _write(tmp / "empty.jpg", b"")


@refused_photo("page.png is not a readable image")
def html_page(tmp):
    return _write(tmp / "page.png", "<!doctype html><html><body><img src=x.png></body></html>")


@refused_photo("drawing.svg is not a readable image")
def svg_drawing(tmp):
    svg = '<svg xmlns="http://www.w3.org/2000/svg" width="99" height="99"><circle r="40"/></svg>'
    return _write(tmp / "drawing.svg", svg)


@refused_photo("scan.jpg is not a readable image")
def pdf_document(tmp):
    return _write(tmp / "scan.jpg", b"%PDF-1.4\n1 0 obj<<>>endobj\ntrailer<<>>\n%%EOF\n")


@refused_photo("cut.jpg is not a readable image .*truncated")
def truncated_jpeg(tmp):
    return _write(tmp / "cut.jpg", ASTRONAUT_JPG.read_bytes()[:5000])


@refused_photo("cut.png is not a readable image .*truncated")
def truncated_png(tmp):
    full = _encoded(data.astronaut(), "PNG")
    return _write(tmp / "cut.png", full[: len(full) // 3])


@refused_photo("crc.png is not a readable image")
def png_with_a_bad_checksum(tmp):
    broken = bytearray(_encoded(data.astronaut()[:64, :64], "PNG"))
    broken[40] ^= 0xFF  # inside the first data chunk: its CRC no longer matches
    return _write(tmp / "crc.png", bytes(broken))


@refused_photo("soi.jpg is not a readable image")
def jpeg_start_marker_only(tmp):
    return _write(tmp / "soi.jpg", b"\xff\xd8\xff")


@refused_photo("truncated.qoi is not a readable image")
def truncated_qoi(tmp):
    # Found by the fuzz test below: Pillow's QOI decoder reads past the end with an IndexError.
    noise = np.random.default_rng(0).integers(0, 256, (16, 16, 3), dtype=np.uint8)
    full = _encoded(noise, "QOI")
    return _write(tmp / "truncated.qoi", full[: len(full) // 2])


@refused_photo("not a readable image .*Unknown pixel format")
def dds_with_unknown_pixel_format(tmp):
    # Found by the fuzz test below: Pillow's DDS plugin raises NotImplementedError.
    dds = bytearray(_encoded(np.zeros((16, 16, 3), np.uint8), "DDS"))
    dds[80:84] = bytes(4)  # the pixel format's flags
    return _write(tmp / "texture.dds", bytes(dds))


@refused_photo("1×1 pixels: too small to hold a face")
def one_pixel_png(tmp):
    return _write(tmp / "dot.png", _encoded(np.zeros((1, 1, 3), np.uint8), "PNG"))


@refused_photo("too large to decode safely")
def png_header_claiming_100000_square(tmp):
    return _write(tmp / "claims.png", _png(100_000, 100_000))


@refused_photo("10000×6000 pixels \\(60 MP\\), above the 50 MP limit")
def png_header_claiming_60_megapixels(tmp):
    # Under Pillow's own bomb limit, with 64 bytes of data: refused from the header, not
    # reported as "truncated" after an attempt to decode 60 MP.
    return _write(tmp / "claims.png", _png(10_000, 6_000))


@refused_photo("8000×8000 pixels \\(64 MP\\), above the 50 MP limit")
def decompression_bomb(tmp):
    return _write(tmp / "bomb.png", _encoded(Image.new("1", (8000, 8000)), "PNG"))  # 8 KB on disk


def _renamed_clip(suffix: str, new_suffix: str) -> Make:
    """A maker: a clip written as `suffix`, then named as a photo."""
    return lambda tmp: _clip(tmp / f"clip{suffix}").rename(tmp / f"clip{new_suffix}")


for _suffix, _new, _kind in [
    (".mp4", ".png", "MP4/MOV"),
    (".webm", ".jpg", "WebM/MKV"),
    (".avi", ".png", "AVI"),
]:
    PHOTO_ERRORS[f"{_suffix[1:]}_renamed_{_new[1:]}"] = (
        _renamed_clip(_suffix, _new),
        f"clip\\{_new} is a video \\({_kind}\\), not a photo: .*'Video' tab",
    )


@refused_photo("voice.jpg is not a readable image")
def wav_renamed_jpg(tmp):
    return _wav(tmp / "voice.wav").rename(tmp / "voice.jpg")


@refused_photo("No image file at .*: check the path")
def directory(tmp):
    return tmp


@refused_photo("No image file at .*nope.png")
def missing_file(tmp):
    return tmp / "nope.png"


@refused_photo("No image file at")
def path_with_a_nul_byte(tmp):
    return str(tmp / "a\0b.png")


@refused_photo("from a int: pass a file path, a PIL image or an H×W×3 uint8 array")
def a_number(tmp):
    return 42


@refused_photo("from a NoneType")
def nothing(tmp):
    return None


@refused_photo("from a bytes")
def raw_bytes(tmp):
    return ASTRONAUT_JPG.read_bytes()


@refused_photo("must be H×W, H×W×3 or H×W×4; got shape \\(10, 10, 5\\)")
def five_channel_array(tmp):
    return np.zeros((10, 10, 5), np.uint8)


@refused_photo("got shape \\(2, 16, 16, 3\\)")
def four_d_array(tmp):
    return np.zeros((2, 16, 16, 3), np.uint8)


@refused_photo("got shape \\(64,\\)")
def one_d_array(tmp):
    return np.zeros(64, np.uint8)


@refused_photo("0×0 pixels: too small")
def zero_size_array(tmp):
    return np.zeros((0, 0, 3), np.float32)


@refused_photo("NaN or infinite")
def nan_float_array(tmp):
    return np.full((16, 16, 3), np.nan, np.float32)


@refused_photo("NaN or infinite")
def inf_float_array(tmp):
    arr = np.zeros((16, 16), np.float64)
    arr[3, 4] = np.inf
    return arr


@refused_photo("Unsupported image array dtype complex64")
def complex_array(tmp):
    return np.zeros((16, 16, 3), np.complex64)


@refused_photo("Unsupported image array dtype object")
def object_array(tmp):
    return np.full((16, 16), None, object)


@refused_photo("Unsupported image array dtype <U1")
def string_array(tmp):
    return np.full((16, 16), "a")


@refused_photo("10000×10000 pixels \\(100 MP\\), above the 50 MP limit")
def huge_array_view(tmp):
    return np.broadcast_to(np.zeros((1, 1, 3), np.uint8), (10_000, 10_000, 3))  # no memory used


@refused_photo("above the 50 MP limit: downscale it first")
def huge_pil_image(tmp):
    return Image.new("1", (9000, 6000))


@refused_photo("0×0 pixels")
def empty_pil_image(tmp):
    return Image.new("RGB", (0, 0))


@refused_photo("Cannot convert a PIL image of mode La to RGB")
def pil_image_in_a_mode_pillow_cannot_convert(tmp):
    return Image.new("La", (16, 16))


@pytest.mark.parametrize("case", PHOTO_ERRORS)
def test_a_hostile_photo_is_refused_with_what_is_wrong(case, tmp_path):
    make, message = PHOTO_ERRORS[case]
    with pytest.raises(ImageError, match=message):
        load_image(make(tmp_path))


def test_a_photo_the_server_may_not_read_is_refused_with_what_is_wrong(tmp_path, monkeypatch):
    # The tests run as root, where chmod 000 does not stop a read: the refusal is simulated.
    path = _write(tmp_path / "locked.jpg", ASTRONAUT_JPG.read_bytes())

    def refuse(self):
        raise PermissionError(13, "Permission denied", str(self))

    monkeypatch.setattr(Path, "read_bytes", refuse)
    with pytest.raises(ImageError, match="locked.jpg could not be read \\(Permission denied\\)"):
        load_image(path)


# -- odd photos that must be read correctly ----------------------------------------------------------


@read_photo((20, 30, 3), lambda rgb: (rgb[:, :10] == 255).all() and (rgb[:, 10:] == (0, 0, 200)).all())
def palette_png_with_a_transparent_colour(tmp):
    img = np.zeros((20, 30, 3), np.uint8)
    img[:, 10:] = (0, 0, 200)
    pal = Image.fromarray(img).convert("P", palette=Image.Palette.ADAPTIVE, colors=4)
    clear = pal.getpixel((0, 0))
    pal.save(tmp / "pal.png", transparency=clear)
    return tmp / "pal.png"  # the transparent left third reads as white, as in a browser


@read_photo((20, 30, 3), lambda rgb: (rgb == 255).all())
def grey_with_alpha_png(tmp):
    la = np.zeros((20, 30, 2), np.uint8)  # black, fully transparent
    return _write(tmp / "la.png", _encoded(Image.fromarray(la, "LA"), "PNG"))


@read_photo((512, 512, 3), lambda rgb: np.abs(rgb.astype(int) - data.astronaut()).mean() < 8)
def cmyk_jpeg(tmp):
    return _write(tmp / "print.jpg", _encoded(Image.fromarray(data.astronaut()).convert("CMYK"), "JPEG"))


@read_photo((40, 60, 3), lambda rgb: (rgb == 10).all())
def animated_gif(tmp):
    frames = [Image.fromarray(np.full((40, 60, 3), c, np.uint8)) for c in (10, 200, 90)]
    frames[0].save(tmp / "anim.gif", save_all=True, append_images=frames[1:], duration=100, loop=0)
    return tmp / "anim.gif"  # the first frame


@read_photo((60, 40, 3), lambda rgb: (rgb[-5:, :] > 200).all() and (rgb[:5, :] < 50).all())
def exif_rotated_a_quarter_turn_left(tmp):
    img = np.zeros((40, 60, 3), np.uint8)
    img[:, :10] = 255  # stored: white on the left; orientation 8 turns the left side to the bottom
    return _exif_jpeg(tmp / "rot8.jpg", 8, img)


@read_photo((40, 60, 3))
def exif_orientation_out_of_range(tmp):
    return _exif_jpeg(tmp / "rot99.jpg", 99, np.zeros((40, 60, 3), np.uint8))


@read_photo((40, 60, 3))
def jpeg_with_a_garbage_exif_block(tmp):
    jpeg = _encoded(np.zeros((40, 60, 3), np.uint8), "JPEG")
    garbage = b"Exif\0\0MM\0\x2a\0\0\0\x08\0\x05\x01\x12\0\x03\xff\xff\xff\xff" + b"\xff" * 40
    app1 = b"\xff\xe1" + struct.pack(">H", len(garbage) + 2) + garbage
    return _write(tmp / "garbage-exif.jpg", jpeg[:2] + app1 + jpeg[2:])


@read_photo((20, 30, 3), lambda rgb: (rgb == (255, 117, 0)).all())
def sixteen_bit_rgb_png(tmp):
    # Grey 16-bit PNGs are checked in test_faces; colour ones go through another Pillow path.
    cv2.imwrite(str(tmp / "deep.png"), np.full((20, 30, 3), (0, 30000, 65535), np.uint16))  # BGR
    return tmp / "deep.png"


@read_photo((20, 30, 3), lambda rgb: (rgb == 128).all())
def float_tiff(tmp):
    return _write(tmp / "float.tif", _encoded(Image.fromarray(np.full((20, 30), 0.5, np.float32)), "TIFF"))


@read_photo((16, 16, 3), lambda rgb: (rgb[:, :8] == 0).all() and (rgb[:, 8:] == 255).all())
def one_bit_png(tmp):
    bits = np.zeros((16, 16), bool)
    bits[:, 8:] = True
    return _write(tmp / "bits.png", _encoded(Image.fromarray(bits), "PNG"))


@read_photo((512, 512, 3))
def png_named_jpg(tmp):
    return _write(tmp / "really-a-png.jpg", _encoded(data.astronaut(), "PNG"))


@read_photo((512, 512, 3))
def odd_unicode_path(tmp):
    return _write(tmp / _odd("photo.jpg"), ASTRONAUT_JPG.read_bytes())


@read_photo((8, 8, 3), lambda rgb: (rgb == 77).all())
def smallest_accepted_size(tmp):
    return np.full((8, 8), 77, np.uint8)


@read_photo((16, 16, 3), lambda rgb: (rgb[:, :8] == 0).all() and (rgb[:, 8:] == 255).all())
def bool_array(tmp):
    mask = np.zeros((16, 16), bool)
    mask[:, 8:] = True  # True is white, as in Pillow's mode "1"
    return mask


@read_photo((16, 16, 3), lambda rgb: (rgb == 4).all())
def big_endian_uint16_array(tmp):
    return np.full((16, 16, 3), 1000, ">u2")  # 1000 / 257 ≈ 4, whatever the byte order


@read_photo((16, 16, 3), lambda rgb: (rgb[0] == 0).all() and (rgb[-1] == 255).all())
def int64_array_out_of_range(tmp):
    return np.repeat(np.linspace(-5000, 5000, 16).astype(np.int64)[:, None], 16, axis=1)


@read_photo((16, 16, 3), lambda rgb: (rgb == 200).all())
def float64_array_in_0_255(tmp):
    return np.full((16, 16, 3), 200.0)


@read_photo((16, 16, 3), lambda rgb: (rgb == 128).all())
def float16_array_in_0_1(tmp):
    return np.full((16, 16, 3), 0.5, np.float16)


@read_photo((16, 16, 3), lambda rgb: (rgb == 9).all())
def single_channel_array(tmp):
    return np.full((16, 16, 1), 9, np.uint8)


@read_photo((16, 8, 3), lambda rgb: (rgb[:, :, 0] == np.arange(31, 0, -2)[:, None]).all())
def strided_reversed_view(tmp):
    base = np.repeat(np.arange(0, 32, dtype=np.uint8)[:, None, None], 16, axis=1).repeat(3, axis=2)
    return base[::-2, ::2]  # rows 31, 29, ... every other column, read backwards


@read_photo((16, 16, 3), lambda rgb: rgb.flags.writeable and (rgb == 5).all())
def read_only_array(tmp):
    arr = np.full((16, 16, 3), 5, np.uint8)
    arr.flags.writeable = False
    return arr


@pytest.mark.parametrize("case", PHOTO_RESULTS)
def test_an_odd_photo_is_read_correctly(case, tmp_path):
    make, shape, check = PHOTO_RESULTS[case]
    rgb = load_image(make(tmp_path))
    assert rgb.shape == shape and rgb.dtype == np.uint8
    assert check(rgb), rgb[:2, :4]


# -- videos that must be refused with a message that says why ----------------------------------------


@refused_video("No video file at .*: check the path")
def missing_video(tmp):
    return tmp / "gone.mp4"


@refused_video("No video file at")
def directory_as_video(tmp):
    return tmp


@refused_video("No video file at")
def video_path_with_a_nul_byte(tmp):
    return str(tmp / "a\0b.mp4")


@refused_video("empty.mp4 is empty \\(0 bytes\\): upload the video again")
def zero_byte_video(tmp):
    return _write(tmp / "empty.mp4", b"")


@refused_video("photo.mp4 is an image \\(PNG\\), not a video: explain it in the 'Photo' tab")
def png_renamed_mp4(tmp):
    return _write(tmp / "photo.mp4", _encoded(data.astronaut(), "PNG"))


@refused_video("is an image \\(JPEG\\), not a video")
def jpeg_renamed_mov(tmp):
    return _write(tmp / "photo.mov", ASTRONAUT_JPG.read_bytes())


@refused_video("is an image \\(GIF\\), not a video")
def animated_gif_renamed_webm(tmp):
    return animated_gif(tmp).rename(tmp / "anim.webm")


@refused_video("voice.mp4 is an audio file \\(WAV\\) with no picture")
def wav_renamed_mp4(tmp):
    return _wav(tmp / "voice.wav").rename(tmp / "voice.mp4")


@refused_video("voice.wav is an audio file \\(WAV\\) with no picture")
def wav_audio(tmp):
    return _wav(tmp / "voice.wav")


@refused_video("song.mp4 is an audio file \\(MP3\\)")
def mp3_renamed_mp4(tmp):
    return _write(tmp / "song.mp4", b"ID3\x04\0\0\0\0\0\0" + bytes(500))


@refused_video("junk.mp4 is not a readable video: use an MP4, WebM, AVI or MKV file")
def random_bytes_with_an_mp4_header(tmp):
    junk = np.random.default_rng(1).bytes(2000)
    return _write(tmp / "junk.mp4", b"\0\0\0\x18ftypisom\0\0\x02\0isommp41" + junk)


@refused_video("notes.mp4 is not a readable video")
def text_renamed_mp4(tmp):
    return _write(tmp / "notes.mp4", "this is not a video\n" * 20)


@refused_video("page.webm is not a readable video")
def html_renamed_webm(tmp):
    return _write(tmp / "page.webm", "<!doctype html><html><body><video src=x.mp4></video></body></html>")


@refused_video("cut.mp4 is not a readable video: .*cut short or damaged")
def truncated_mp4(tmp):
    # OpenCV writes the MP4's index (moov) at the end: the first 30 % has none.
    return _cut(_clip(tmp / "full.mp4", noise=True), 0.3, "cut.mp4")


@refused_video("No frame of cut.webm could be decoded: .*Re-encode it")
def truncated_webm(tmp):
    return _cut(_clip(tmp / "full.webm", noise=True), 0.3, "cut.webm")


@refused_video("No frame of blank.avi could be decoded")
def avi_with_blanked_frames(tmp):
    avi = bytearray(_clip(tmp / "full.avi", noise=True).read_bytes())
    at = avi.find(b"00dc")
    while at != -1:  # every frame chunk's JPEG overwritten with zeros, the index left intact
        size = int.from_bytes(avi[at + 4 : at + 8], "little")
        avi[at + 8 : at + 8 + size] = bytes(size)
        at = avi.find(b"00dc", at + 8 + size)
    return _write(tmp / "blank.avi", bytes(avi))


@refused_video("blank.mp4 has no picture")
def mp4_with_blanked_data(tmp):
    mp4 = bytearray(_clip(tmp / "full.mp4", noise=True).read_bytes())
    at = mp4.find(b"mdat")
    size = int.from_bytes(mp4[at - 4 : at], "big")
    mp4[at + 4 : at - 4 + size] = bytes(size - 8)
    return _write(tmp / "blank.mp4", bytes(mp4))


@refused_video("2400×1300 pixels; the page reads videos up to 1920 pixels on the longer side. Downscale it")
def video_over_the_resolution_cap(tmp):
    return _clip(tmp / "huge.mp4", 2, size=(2400, 1300))  # two flat frames: 70 KB


@refused_video("1080×1922 pixels; .*up to 1920 pixels on the longer side")
def portrait_video_over_the_cap(tmp):
    return _clip(tmp / "tall.mp4", 2, size=(1080, 1922))


@pytest.mark.parametrize("case", VIDEO_ERRORS)
def test_a_hostile_video_is_refused_with_what_is_wrong(case, tmp_path, untrained_model):
    make, message = VIDEO_ERRORS[case]
    with pytest.raises(VideoError, match=message):
        analyze_video(untrained_model, make(tmp_path))


# -- odd videos that must give a correct timeline ---------------------------------------------------


def _no_face(timeline: Timeline, times: list[float]) -> None:
    assert np.allclose(timeline.analysed_times_s, times), timeline.analysed_times_s
    assert timeline.faces == [] and timeline.key_frames == []
    assert any(note.startswith("No face was found") for note in timeline.notes), timeline.notes


@pytest.mark.parametrize("suffix", FOURCC)
def test_a_faceless_clip_in_each_container_gives_an_empty_timeline_that_says_so(
    suffix, tmp_path, untrained_model
):
    clip = _clip(tmp_path / f"grey{suffix}")
    assert probe_video(clip) == VideoInfo(clip, 64, 64, 10.0, 10)
    _no_face(analyze_video(untrained_model, clip), [0.0, 0.2, 0.4, 0.6, 0.8])


def test_a_clip_with_a_face_gives_its_timeline(untrained_model, astronaut_face_clip):
    timeline = analyze_video(untrained_model, astronaut_face_clip)
    assert len(timeline.faces) == 1 and len(timeline.faces[0].times_s) == 5, timeline.summary()
    assert np.allclose(timeline.faces[0].probabilities.sum(axis=1), 1, atol=1e-4)
    assert timeline.key_frames and timeline.notes == []


def test_a_video_longer_than_the_cap_is_read_up_to_it_and_says_so(tmp_path, untrained_model):
    clip = _clip(tmp_path / "long.mp4", 20)  # 2 s
    timeline = analyze_video(untrained_model, clip, VideoLimits(max_seconds=0.5))
    assert np.allclose(timeline.analysed_times_s, [0.0, 0.2, 0.4])
    assert "Only the first" in timeline.notes[0] and "cap on video length" in timeline.notes[0]


@pytest.mark.parametrize("share, analysed", [(0.3, [0.0]), (0.7, [0.0, 0.2, 0.4, 0.6])])
def test_a_truncated_avi_gives_the_frames_it_still_holds(tmp_path, untrained_model, share, analysed):
    cut = _cut(_clip(tmp_path / "full.avi", noise=True), share, "cut.avi")
    assert probe_video(cut).frame_count == 10  # the header still promises ten
    _no_face(analyze_video(untrained_model, cut), analysed)


def test_a_video_at_exactly_the_resolution_cap_is_accepted(tmp_path):
    clip = _clip(tmp_path / "full-hd.mp4", 2, size=(1920, 1080))
    assert probe_video(clip) == VideoInfo(clip, 1920, 1080, 10.0, 2)


@pytest.mark.parametrize(
    "name, frames, size, fps, times",
    [
        ("one-frame.mp4", 1, (64, 64), 10.0, [0.0]),
        ("tiny-odd-size.avi", 10, (10, 6), 10.0, [0.0, 0.2, 0.4, 0.6, 0.8]),
        # A frame rate past 240 is not believed: 25 is assumed, so every 5th frame is analysed.
        ("claims-1000-fps.avi", 10, (64, 64), 1000.0, [0.0, 0.2]),
        ("one-frame-a-second.mp4", 3, (64, 64), 1.0, [0.0, 1.0, 2.0]),
        (_odd("clip.mp4"), 4, (64, 64), 10.0, [0.0, 0.2]),
    ],
)
def test_odd_but_valid_videos_give_a_timeline(tmp_path, untrained_model, name, frames, size, fps, times):
    clip = _clip(tmp_path / name, frames, size=size, fps=fps)
    _no_face(analyze_video(untrained_model, clip), times)


# -- the served page: each hostile upload answered with its message, the next request served --------


@pytest.fixture(scope="module")
def client(untrained_folder, tmp_path_factory):
    log = tmp_path_factory.mktemp("app") / "app.log"
    # No request here runs LIME: few samples keep the start-up warm-up of its batch small.
    with served_untrained_app(untrained_folder, log, "--lime-samples", "50") as url:
        yield Client(url, verbose=False)


def _served_photo_works(client) -> None:
    # Grad-CAM alone: a whole request in under a second (the default LIME adds seconds).
    boxed, label, *_ = client.predict(
        handle_file(str(ASTRONAUT_JPG)), 1, False, ["gradcam"], False, api_name="/explain"
    )
    assert abs(sum(c["confidence"] for c in label["confidences"]) - 1) < 1e-4


def _served_video_works(client, clip: Path) -> None:
    plot, summary, keys, csv_file = client.predict(handle_file(str(clip)), api_name="/explain_video")
    assert "Face 1: seen 0:00.0" in summary and keys and Path(csv_file).is_file()


# Cases whose first bytes are an image's or a video's, so that the decoders answer them through the
# page: app.upload_guard refuses the others (text, audio, empty files) at upload, before a decoder
# sees them (tests/test_upload_guard.py).
SERVED_PHOTOS = [
    "truncated_png",
    "png_with_a_bad_checksum",
    "jpeg_start_marker_only",
    "one_pixel_png",
    "png_header_claiming_100000_square",
    "png_header_claiming_60_megapixels",
    "decompression_bomb",
    "mp4_renamed_png",
    "avi_renamed_png",
]
SERVED_VIDEOS = [
    "png_renamed_mp4",
    "animated_gif_renamed_webm",
    "random_bytes_with_an_mp4_header",
    "truncated_mp4",
    "truncated_webm",
    "avi_with_blanked_frames",
    "mp4_with_blanked_data",
    "video_over_the_resolution_cap",
    "portrait_video_over_the_cap",
]


@pytest.mark.slow
@pytest.mark.parametrize("case", SERVED_PHOTOS)
def test_the_page_answers_a_hostile_photo_with_its_message_and_keeps_serving(case, client, tmp_path):
    make, message = PHOTO_ERRORS[case]
    with pytest.raises(AppError, match=message):
        client.predict(handle_file(str(make(tmp_path))), api_name="/explain")
    _served_photo_works(client)


@pytest.mark.slow
@pytest.mark.parametrize("case", SERVED_VIDEOS)
def test_the_page_answers_a_hostile_video_with_its_message_and_keeps_serving(
    case, client, tmp_path, astronaut_face_clip
):
    make, message = VIDEO_ERRORS[case]
    with pytest.raises(AppError, match=message):
        client.predict(handle_file(str(make(tmp_path))), api_name="/explain_video")
    _served_video_works(client, astronaut_face_clip)


@pytest.mark.slow
def test_the_page_reads_a_truncated_avi_as_far_as_it_goes(client, tmp_path):
    cut = _cut(_clip(tmp_path / "full.avi", noise=True), 0.7, "cut.avi")
    plot, summary, keys, csv_file = client.predict(handle_file(str(cut)), api_name="/explain_video")
    assert "No face was found" in summary and not keys
    assert Path(csv_file).read_text(encoding="utf-8").count("\n") == 1  # the header alone


# -- fuzz: random bytes and arrays get a result or an EmotionLensError, never another exception -----

# First bytes of the formats either decoder may recognise, so the fuzz reaches past the sniffing.
HEADS = [
    b"",
    b"\x89PNG\r\n\x1a\n",
    b"\xff\xd8\xff\xe1\x00\x20Exif\x00\x00MM\x00*",
    b"GIF89a",
    b"BM",
    b"II*\x00",
    b"RIFF\x00\x01\x00\x00WEBPVP8 ",
    b"qoif",
    b"DDS |\x00\x00\x00",
    b"RIFF\x00\x01\x00\x00AVI LIST",
    b"RIFF\x00\x01\x00\x00WAVEfmt ",
    b"\x00\x00\x00\x18ftypisom",
    b"\x1a\x45\xdf\xa3",
    b"ID3",
]


@pytest.fixture(scope="module")
def fuzz_folder(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("fuzz")


@settings(max_examples=150, deadline=None, derandomize=True, database=None)
@given(
    head=st.sampled_from(HEADS),
    body=st.binary(max_size=400),
    suffix=st.sampled_from([".jpg", ".png", ".mp4"]),
)
def test_fuzzed_files_get_a_photo_a_video_or_a_message(fuzz_folder, head, body, suffix):
    _either_or_a_message(_write(fuzz_folder / f"fuzz{suffix}", head + body))


def _either_or_a_message(path: Path) -> None:
    """load_image and probe_video on `path`: each a valid result or an EmotionLensError."""
    try:
        rgb = load_image(path)
        assert rgb.ndim == 3 and rgb.shape[2] == 3 and rgb.dtype == np.uint8
    except EmotionLensError:
        pass
    try:
        info = probe_video(path)
        assert 0 < max(info.width, info.height) <= VideoLimits().max_side and 0 < info.fps <= 240
    except EmotionLensError:
        pass


@pytest.fixture(scope="module")
def valid_files(tmp_path_factory) -> dict[str, bytes]:
    """One small valid file per format the decoders know, for the fuzz to damage."""
    folder = tmp_path_factory.mktemp("seeds")
    noise = np.random.default_rng(2).integers(0, 256, (24, 32, 3), dtype=np.uint8)
    exif = Image.Exif()
    exif[0x0112] = 6
    files = {
        f"x.{fmt.lower()}": _encoded(noise, fmt, **save)
        for fmt, save in [
            ("PNG", {}),
            ("JPEG", {"exif": exif.tobytes()}),
            ("GIF", {}),
            ("BMP", {}),
            ("TIFF", {}),
            ("WEBP", {}),
            ("QOI", {}),
            ("DDS", {}),
        ]
    }
    for suffix in (".mp4", ".avi", ".webm"):
        files[f"x{suffix}"] = _clip(folder / f"x{suffix}", 3, size=(32, 24), noise=True).read_bytes()
    return files


@settings(max_examples=250, deadline=None, derandomize=True, database=None)
@given(
    seed=st.integers(0, 10),
    keep=st.floats(0.0, 1.0),
    changes=st.lists(st.tuples(st.floats(0.0, 1.0), st.integers(0, 255)), max_size=6),
)
def test_damaged_files_get_a_photo_a_video_or_a_message(fuzz_folder, valid_files, seed, keep, changes):
    name, content = sorted(valid_files.items())[seed]
    damaged = bytearray(content[: max(1, round(len(content) * keep))])
    for where, byte in changes:
        damaged[min(len(damaged) - 1, int(where * len(damaged)))] = byte
    _either_or_a_message(_write(fuzz_folder / name, bytes(damaged)))


DTYPES = [
    np.uint8,
    np.uint16,
    np.dtype(">u2"),
    np.int8,
    np.int64,
    np.float16,
    np.float32,
    np.float64,
    np.bool_,
]


@settings(max_examples=200, deadline=None, derandomize=True, database=None)
@given(
    arr=hnp.arrays(
        dtype=st.sampled_from(DTYPES),
        shape=hnp.array_shapes(min_dims=0, max_dims=4, min_side=0, max_side=12),
    )
)
def test_fuzzed_arrays_get_a_photo_or_a_message(arr):
    original = arr.copy()
    try:
        rgb = load_image(arr)
        assert rgb.shape == (*arr.shape[:2], 3) and rgb.dtype == np.uint8
    except ImageError:
        pass
    assert np.array_equal(arr, original, equal_nan=arr.dtype.kind == "f")  # never modified
