"""Pin glibc's heap thresholds for a benchmark process (``gaussspec bench --allocator pinned``).

glibc serves large allocations (above ``M_MMAP_THRESHOLD``, 128 KiB at start) with fresh ``mmap``
pages and hands memory at the top of the heap back to the system (above ``M_TRIM_THRESHOLD``).
Both thresholds move with the sizes a process has freed so far, so a call's time depends on the
history of allocation sizes in the process: torch's CPU kernels allocate their activations per
call, and a call that gets fresh pages pays a page fault per 4 KiB touched. The DDPM digits
network on 80 states took 26.5 ms in a fresh process and 22.4 ms with the thresholds pinned, on
272 states 82.3 and 65.3 ms; a fixed-length speculative run of 250 steps took 1.66-1.77 s in a
process that had run only that length, 1.28-1.31 s pinned. Contenders that follow one another in
a suite (and an adaptive rule, whose call sizes vary) would be timed partly on the allocator's
history. Pinning the thresholds (no ``mmap`` below 1 GiB, no trimming, 256 MiB of padding when
the heap grows) makes every call reuse heap pages once the process has warmed up, which is what a
tuned CPU deployment gets from jemalloc or tcmalloc.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import platform

__all__ = ["pin_glibc_heap", "PINNED"]

_M_TRIM_THRESHOLD, _M_TOP_PAD, _M_MMAP_THRESHOLD = -1, -2, -3  # malloc.h
_SETTINGS = ((_M_MMAP_THRESHOLD, 1 << 30), (_M_TRIM_THRESHOLD, 2**31 - 1), (_M_TOP_PAD, 256 << 20))
PINNED = "glibc mallopt: mmap threshold 1 GiB, no trimming, top pad 256 MiB"


def pin_glibc_heap() -> str | None:
    """Pin glibc's ``mmap`` and trim thresholds for the rest of the process.

    Returns:
        A description of what was set (:data:`PINNED`), or None where the C library is not glibc
        or refused a setting (the process then keeps its allocator's defaults).
    """
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return None
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return None
    mallopt.argtypes, mallopt.restype = (ctypes.c_int, ctypes.c_int), ctypes.c_int
    if not all(mallopt(option, value) == 1 for option, value in _SETTINGS):
        return None
    return PINNED
