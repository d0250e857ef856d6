"""What a file is: from its first bytes (image, video or audio, whatever its name says), or from
its name where the bytes are no help.

Three places ask: the photo decoder (a video uploaded as a photo gets a message naming the
right tab), the video reader (an audio file gets a message saying it has no picture) and the
page's upload guard (anything that is neither image nor video is refused before it is stored).
They share these signatures so that they agree on what a file is. 16 bytes are enough for all.
"""

from __future__ import annotations

from pathlib import Path

HEAD_BYTES = 16

IMAGE_EXTENSIONS = frozenset(
    {".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff", ".gif", ".ppm", ".pgm"}
)
# Videos are recognised by extension when a folder is walked: FFmpeg "opens" almost anything (a
# .txt file plays as a video through its tty demuxer), so asking VideoCapture is no test of what a
# file is.
VIDEO_EXTENSIONS = frozenset(
    {".mp4", ".m4v", ".mov", ".avi", ".mkv", ".webm", ".mpg", ".mpeg", ".wmv", ".flv", ".3gp", ".ts"}
    | {".mts", ".m2ts", ".ogv", ".vob", ".mxf", ".divx"}
)

# ISO-media brands of still images (HEIC, AVIF): the same box structure as MP4, but photos.
HEIF_BRANDS = (b"heic", b"heix", b"heim", b"heis", b"mif1", b"msf1", b"avif", b"avis")
IMAGE_MAGIC = (b"\xff\xd8\xff", b"\x89PNG\r\n\x1a\n", b"GIF87a", b"GIF89a", b"BM", b"II*\x00", b"MM\x00*")
# Where an audio format's signature sits in its first bytes, the signature, the format's name.
AUDIO_SIGNATURES = ((8, b"WAVE", "WAV"), (0, b"ID3", "MP3"), (0, b"fLaC", "FLAC"), (4, b"ftypM4A", "M4A"))


def video_container(head: bytes) -> str | None:
    """The container a file's first bytes announce (MP4/MOV, WebM/MKV, AVI, Ogg, FLV), else None."""
    if head[4:8] == b"ftyp":
        return None if head[8:12] in HEIF_BRANDS else "MP4/MOV"
    if head[:4] == b"\x1a\x45\xdf\xa3":
        return "WebM/MKV"
    if head[:4] == b"RIFF" and head[8:12] == b"AVI ":
        return "AVI"
    if head[:4] == b"OggS":
        return "Ogg"
    if head[:3] == b"FLV":
        return "FLV"
    return None


def is_image(head: bytes) -> bool:
    """True when the first bytes announce a still image (JPEG, PNG, GIF, BMP, TIFF, WebP, HEIF)."""
    return (
        head.startswith(IMAGE_MAGIC)
        or (head[:4] == b"RIFF" and head[8:12] == b"WEBP")
        or (head[4:8] == b"ftyp" and head[8:12] in HEIF_BRANDS)
    )


def audio_kind(head: bytes) -> str | None:
    """The audio format the first bytes announce (WAV, MP3, FLAC, M4A), else None."""
    return next((name for at, sig, name in AUDIO_SIGNATURES if head[at : at + len(sig)] == sig), None)


def media_kind(head: bytes) -> str | None:
    """'image' or 'video' from a file's first bytes, else None."""
    if is_image(head):
        return "image"
    if video_container(head):
        return "video"
    return None


def kind_from_name(path: str | Path) -> str | None:
    """'image' or 'video' from a file's extension, else None."""
    suffix = Path(path).suffix.lower()
    if suffix in VIDEO_EXTENSIONS:
        return "video"
    if suffix in IMAGE_EXTENSIONS:
        return "image"
    return None
