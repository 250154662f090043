"""Process-wide settings that must be made before OpenVINO and OpenCV start their threads."""

from __future__ import annotations

import ctypes
import ctypes.util
import os

M_ARENA_MAX = -8  # glibc mallopt()


def limit_malloc_arenas(arenas: int = 2) -> bool:
    """Cap glibc's malloc arenas (what MALLOC_ARENA_MAX=2 does) unless the user set it.

    Measured in a 10-minute soak: with glibc's default (up to 8 arenas per core, one per busy
    thread) RSS crept up ~20 MB/h as OpenVINO's, OpenCV's and our threads fragmented their
    arenas; with 2 arenas the slope was ~1 MB/h and throughput unchanged. Arenas created after
    this call obey it, so it runs first thing in ``main()``.
    """
    if os.environ.get("MALLOC_ARENA_MAX"):
        return False
    name = ctypes.util.find_library("c")
    if name is None:
        return False
    try:
        libc = ctypes.CDLL(name)
        return bool(libc.mallopt(M_ARENA_MAX, arenas))
    except (OSError, AttributeError):  # not glibc (musl, macOS): nothing to do
        return False
