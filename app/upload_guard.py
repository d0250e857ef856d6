"""Uploads are accepted only when they are images or videos, judged by their first bytes.

Gradio's upload route stores any file it is sent (up to `max_file_size`) in its cache and serves
it back: the page's inputs ask the browser for images and videos, but any client can post
anything. `UploadTypeGuard` is ASGI middleware in front of the route: it reads the upload (which
the route would read anyway), looks at the first bytes of each file in it, and refuses the
request with 415 and what is accepted when one is neither. The name's extension is not trusted:
the decoders sniff the content too, and say when a video was named .png or a photo .mp4.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from emotion.storage.media import HEAD_BYTES, media_kind

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

ACCEPTED = "images (JPEG, PNG, WebP, GIF, BMP, TIFF) and videos (MP4, MOV, WebM, MKV, AVI, Ogg)"
_BOUNDARY = re.compile(rb"boundary=\"?([^\";]+)\"?")


def files_in_multipart(body: bytes | bytearray, boundary: bytes) -> list[tuple[str, bytes]]:
    """(file name, first HEAD_BYTES bytes) of each file part of a multipart/form-data body."""
    found = []
    for part in body.split(b"--" + boundary):
        headers, sep, content = part.partition(b"\r\n\r\n")
        name = re.search(rb'filename="([^"]*)"', headers)
        if sep and name:
            found.append((name.group(1).decode("utf-8", "replace"), content[:HEAD_BYTES]))
    return found


class UploadTypeGuard:
    """ASGI middleware; `limit_bytes` (the server's max_file_size) bounds what it reads: a larger
    upload is passed on unread for Gradio to refuse as too large."""

    def __init__(self, app: Callable, limit_bytes: int | None = None) -> None:
        self.app = app
        self.limit = limit_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] != "POST" or not scope["path"].endswith("/upload"):
            await self.app(scope, receive, send)
            return
        headers = dict(scope["headers"])
        boundary = _BOUNDARY.search(headers.get(b"content-type", b""))
        read: list[Message] = []
        body = bytearray()
        while True:
            message = await receive()
            read.append(message)
            body += message.get("body", b"")
            too_large = self.limit is not None and len(body) > self.limit + 65536  # + the form's own bytes
            if message["type"] != "http.request" or not message.get("more_body") or too_large:
                break
        complete = not read[-1].get("more_body") and read[-1]["type"] == "http.request"
        if boundary and complete and not too_large:
            refused = [
                name for name, head in files_in_multipart(body, boundary.group(1)) if not media_kind(head)
            ]
            if refused:
                await _refuse(send, refused)
                return
        await self.app(scope, _replay(read, receive), send)


def _replay(read: list[Message], receive: Receive) -> Receive:
    pending = list(read)

    async def replayed() -> Message:
        return pending.pop(0) if pending else await receive()

    return replayed


async def _refuse(send: Send, names: list[str]) -> None:
    text = f"{', '.join(names)}: not an image or a video. The page accepts {ACCEPTED}.".encode()
    await send(
        {
            "type": "http.response.start",
            "status": 415,
            "headers": [
                (b"content-type", b"text/plain; charset=utf-8"),
                (b"content-length", str(len(text)).encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": text})
