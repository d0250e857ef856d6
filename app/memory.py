"""The server's resident memory stays flat under a crowd: glibc's malloc, tuned for a long-lived
process whose threads allocate and free image-sized arrays all day.

Two measures: at most 2 malloc arenas (glibc gives each of Gradio's worker threads its own,
and freed pages stay in them), and `malloc_trim` after each request, which hands freed pages
back to the system. Each alone left the memory growing under `python -m bench.load`; both kept
it flat (figures in docs/findings.md). Where there is no glibc, both are no-ops and the
platform's allocator decides.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
from collections.abc import Callable
from typing import Any, TypeVar

F = TypeVar("F", bound=Callable[..., Any])
_M_ARENA_MAX = -8  # glibc's malloc.h


@functools.cache
def _glibc() -> ctypes.CDLL | None:
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        return libc if hasattr(libc, "mallopt") and hasattr(libc, "malloc_trim") else None
    except OSError:
        return None


def limit_malloc_arenas(arenas: int = 2) -> bool:
    """Cap glibc's malloc arenas; call it before the server starts its worker threads.

    glibc gives each thread that allocates its own arena, and Gradio runs events on a pool of
    up to 40 threads: each arena's freed memory stays mapped, so resident memory only grows.
    False where there is no glibc."""
    libc = _glibc()
    return bool(libc and libc.mallopt(_M_ARENA_MAX, arenas))


def release_freed_memory() -> bool:
    """Hand the heap's free pages back to the system (glibc's malloc_trim): a request's arrays
    leave holes between live blocks that glibc would otherwise keep mapped. True when glibc
    released some; False when it had none to release, or where there is no glibc."""
    libc = _glibc()
    return bool(libc and libc.malloc_trim(0))


def trimmed(fn: F) -> F:
    """`fn`, then release_freed_memory, however it ends. The signature is kept (Gradio reads it
    to pass `progress`)."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        finally:
            release_freed_memory()

    return wrapper  # type: ignore[return-value]
