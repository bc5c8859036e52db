"""What the command line tunes in its own process, and only there: the allocator, Pillow's guard, warnings.

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


def tune_process() -> None:
    """Everything the command line sets for itself: a library caller's process keeps its own settings."""
    import warnings

    tune_allocator()
    warnings.showwarning = _one_line_warning


def ray_token() -> None:
    """For `--engine ray` without --ray-address, before Ray is imported (it reads its settings then): the local Ray
    started for the run gets token auth with a random token in the environment, which its processes inherit,
    instead of the token file Ray would otherwise write under the home folder and leave there."""
    import os
    import secrets

    if "RAY_AUTH_TOKEN" not in os.environ and "RAY_AUTH_TOKEN_PATH" not in os.environ:
        os.environ.setdefault("RAY_AUTH_MODE", "token")
        os.environ["RAY_AUTH_TOKEN"] = secrets.token_hex(32)


def own_pixel_limit() -> None:
    """For commands that decode images: --max-pixels is the guard, checked from the header with a clear message;
    Pillow's own would refuse less clearly. Called by the command, so `--help` never imports Pillow."""
    from attnviz.io.images import use_own_pixel_limit

    use_own_pixel_limit()


def _one_line_warning(
    message: Warning | str,
    category: type[Warning],
    filename: str,
    lineno: int,
    file: object = None,
    line: object = None,
) -> None:
    print(f"attnviz: warning: {message}".replace("\n", " "), file=sys.stderr)
