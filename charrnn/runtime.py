"""Process-wide settings that make the NumPy core fast: today, how glibc's malloc recycles memory.

Every training step allocates and frees the same large arrays (the chunk's caches, a few
MB each). glibc's defaults serve arrays over 128 KB to 32 MB from fresh ``mmap`` pages and
give freed heap memory back to the system, so each step page-faults its buffers in again:
about 2,100 minor faults per step for a 384-unit GRU at B=32, T=32, which is 5 to 7 ms of
system time in a 30 ms step (measured with ``getrusage``; ``benchmarks/results.md``).
Keeping those arrays on the heap and not trimming it makes every step after the first
reuse memory that is already mapped. Peak memory is unchanged (the same arrays are
live at the peak); only the release of freed memory to the system is deferred.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import sys

# From glibc's <malloc.h>.
_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
# The largest mmap threshold glibc accepts on 64-bit systems (4 MiB · sizeof(long)).
MMAP_THRESHOLD = 32 * 1024 * 1024
TRIM_THRESHOLD = 256 * 1024 * 1024


def tune_allocator() -> bool:
    """Keep arrays up to 32 MB on the heap and the heap mapped. True if it took effect.

    Only on Linux with glibc (other C libraries and systems have their own policies and
    no ``mallopt``); elsewhere it does nothing and returns False. Safe to call twice.
    """
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # e.g. musl: no mallopt
        return False
    mallopt.argtypes = (ctypes.c_int, ctypes.c_int)
    mallopt.restype = ctypes.c_int
    # mallopt returns 1 on success, 0 on error
    return bool(mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD)) and bool(mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD))
