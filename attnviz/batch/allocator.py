"""glibc's allocator tuned for a process that attnviz owns (the command line's, a Ray actor's), never a caller's.

glibc serves each allocation above its mmap threshold (128 KiB at start) with a fresh `mmap`, and returns it with
`munmap` when freed. A forward pass at 608 x 448 allocates dozens of such buffers, up to 26 MB each, so every
image paid for page faults and for the kernel zeroing those pages again: measured, the plain eager forward loop ran
at 8.4 images/s and at 13.2 once the threshold was raised (same process, same photos). glibc raises the threshold
by itself only after large blocks have been freed, so whether a run was fast depended on what ran before it.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import sys

_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
#: Buffers up to this size are reused from the heap; an 80-megapixel photo's arrays still get their own mapping.
MMAP_THRESHOLD = 64 * 1024 * 1024
#: Free memory at the top of the heap is given back to the kernel only beyond this.
TRIM_THRESHOLD = 2 * MMAP_THRESHOLD


def tune_allocator() -> bool:
    """Raise glibc's mmap and trim thresholds for this process; returns False where there is nothing to tune.

    Called once by the command line; a library user's process keeps its own allocator settings.
    """
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # musl and other C libraries have no mallopt
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    return bool(mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD)) and bool(mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD))
