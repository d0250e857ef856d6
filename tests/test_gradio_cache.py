"""Output images reach Gradio's cache by rename, never rewritten in place (see app/gradio_cache.py;
`bench.load`'s flood is the end-to-end check)."""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
from gradio import processing_utils

import app.ui  # noqa: F401  (installs the fix, as the page does)


def test_the_page_uses_the_atomic_writer_for_every_image_component(tmp_path):
    assert processing_utils.save_pil_to_cache.__module__ == "app.gradio_cache"
    first = processing_utils.save_img_array_to_cache(np.zeros((8, 8, 3), np.uint8), str(tmp_path))
    inode = (tmp_path / first).stat().st_ino
    again = processing_utils.save_img_array_to_cache(np.zeros((8, 8, 3), np.uint8), str(tmp_path))
    assert again == first and (tmp_path / again).stat().st_ino == inode  # reused, not rewritten
    assert [p.name for p in (tmp_path / first).parent.iterdir()] == ["image.webp"]  # no staging left


def test_a_reader_never_sees_a_half_written_image_while_others_save_the_same_one(tmp_path):
    picture = np.random.default_rng(0).integers(0, 255, (256, 256, 3), dtype=np.uint8)
    path = processing_utils.save_img_array_to_cache(picture, str(tmp_path))
    size = len(Path(path).read_bytes())
    sizes, stop = set(), threading.Event()

    def read() -> None:
        while not stop.is_set():
            sizes.add(len(Path(path).read_bytes()))

    reader = threading.Thread(target=read)
    reader.start()
    writers = [
        threading.Thread(
            target=lambda: [
                processing_utils.save_img_array_to_cache(picture, str(tmp_path)) for _ in range(20)
            ]
        )
        for _ in range(4)
    ]
    for w in writers:
        w.start()
    for w in writers:
        w.join()
    stop.set()
    reader.join()
    assert sizes == {size}
