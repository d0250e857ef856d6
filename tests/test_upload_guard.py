"""Only images and videos are accepted as uploads, judged by their first bytes."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route
from starlette.testclient import TestClient

from app.upload_guard import UploadTypeGuard
from emotion.storage.media import media_kind


def _png() -> bytes:
    buf = io.BytesIO()
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(buf, format="PNG")
    return buf.getvalue()


MP4_HEAD = b"\x00\x00\x00\x18ftypmp42\x00\x00\x00\x00mp42isom"


@pytest.mark.parametrize(
    "head, kind",
    [
        (_png(), "image"),
        (b"\xff\xd8\xff\xe0\x00\x10JFIF", "image"),
        (b"RIFF\x24\x00\x00\x00WEBPVP8 ", "image"),
        (b"\x00\x00\x00\x18ftypheic\x00\x00\x00\x00", "image"),  # an iPhone photo: ISO media, a still
        (MP4_HEAD, "video"),
        (b"\x1a\x45\xdf\xa3\x9f\x42\x86\x81", "video"),  # WebM / MKV
        (b"RIFF\x24\x00\x00\x00AVI LIST", "video"),
        (b"RIFF\x24\x00\x00\x00WAVEfmt ", None),  # audio only
        (b"<html><script>alert(1)</script>", None),
        (b"%PDF-1.7\n", None),
        (b"", None),
    ],
)
def test_media_kind_reads_the_first_bytes(head, kind):
    assert media_kind(head[:16]) == kind


@pytest.fixture()
def guarded():
    async def upload(request: Request):
        form = await request.form()
        return JSONResponse([f.filename for f in form.getlist("files")])

    app = Starlette(
        routes=[Route("/gradio_api/upload", upload, methods=["POST"])],
        middleware=[Middleware(UploadTypeGuard, limit_bytes=1 << 20)],
    )
    return TestClient(app)


def test_images_and_videos_pass_through_whole(guarded):
    files = [
        ("files", ("a.png", _png(), "image/png")),
        ("files", ("b.mp4", MP4_HEAD + bytes(5000), "video/mp4")),
    ]
    response = guarded.post("/gradio_api/upload", files=files)
    assert response.status_code == 200 and response.json() == ["a.png", "b.mp4"]


def test_anything_else_is_refused_with_what_is_accepted_whatever_its_name(guarded):
    files = [
        ("files", ("a.png", _png(), "image/png")),
        ("files", ("page.png", b"<html>hi</html>", "image/png")),
    ]
    response = guarded.post("/gradio_api/upload", files=files)
    assert response.status_code == 415
    assert response.text.startswith("page.png: not an image or a video") and "videos (MP4" in response.text


def test_an_upload_past_the_size_limit_is_left_for_the_server_to_refuse(guarded):
    # Not buffered whole: the route behind (Gradio's, in the app) refuses it as too large.
    big = b"<html>" + bytes(2 << 20)
    response = guarded.post("/gradio_api/upload", files=[("files", ("big.html", big, "text/html"))])
    assert response.status_code == 200


def test_other_routes_are_not_read(guarded):
    assert guarded.get("/gradio_api/upload").status_code == 405
