"""glibc's malloc, tuned for the server (app/memory.py)."""

from __future__ import annotations

import inspect
import sys

import pytest

from app.memory import limit_malloc_arenas, release_freed_memory, trimmed


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc only")
def test_the_arena_cap_and_the_trim_reach_glibc():
    assert limit_malloc_arenas() is True
    big = [bytearray(64 * 1024) for _ in range(2000)]  # 128 MB in the heap
    del big[::2]  # holes between live blocks, which only a trim hands back
    assert release_freed_memory() is True


def test_trimmed_keeps_the_signature_gradio_reads_and_trims_even_after_an_error(monkeypatch):
    import app.memory

    calls = []
    monkeypatch.setattr(app.memory, "release_freed_memory", lambda: calls.append(1))

    def explain(path, face=1, progress="bar"):
        if path is None:
            raise ValueError("no photo")
        return path, face, progress

    wrapped = trimmed(explain)
    assert inspect.signature(wrapped) == inspect.signature(explain)
    assert wrapped("a.png", progress="p") == ("a.png", 1, "p") and calls == [1]
    with pytest.raises(ValueError, match="no photo"):
        wrapped(None)
    assert calls == [1, 1]
