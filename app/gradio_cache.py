"""Gradio writes output images into its cache without a rename: fixed here, at import.

Gradio 6.31's `processing_utils.save_pil_to_cache` names each output image after a hash of its
bytes and writes it in place (truncate, then write). Two requests that return the same picture
(two visitors explaining the same example photo) write the same path, and a browser or
gradio_client still downloading the first copy gets a truncated file: "peer closed connection
without sending complete message body" in `python -m bench.load`'s flood (5 of 46 answered
requests over three floods; 0 of 51 with this fix). Gradio's own `save_file_to_cache` already
writes to a temporary name and renames; this does the same for images. The Gallery, Image and
AnnotatedImage components call it through the module, so replacing the module's function covers
them all.
"""

from __future__ import annotations

import os
from pathlib import Path

from gradio import processing_utils

from emotion.storage.files import write_file_atomically


def save_pil_to_cache(img, cache_dir: str, name: str = "image", format: str = "webp") -> str:
    """`processing_utils.save_pil_to_cache`, written under a temporary name and renamed into
    place; a picture already cached (same bytes, same name) is reused, not rewritten."""
    data = processing_utils.encode_pil_to_bytes(img, format)
    folder = Path(cache_dir) / processing_utils.hash_bytes(data)
    folder.mkdir(exist_ok=True, parents=True)
    path = (folder / f"{name}.{format}").resolve()
    if path.exists():
        # `delete_cache` ages files by ctime: a reused copy must not expire on its first use's clock.
        os.utime(path)
        return str(path)
    write_file_atomically(path, data)
    return str(path)


processing_utils.save_pil_to_cache = save_pil_to_cache
