"""Refuses a fresh `make install` on a disk without room for it, in one line, before pip fails half-way.

The venv takes about 7 GB on Linux x86_64 (PyPI's torch there is the CUDA build) and pip unpacks its wheels into a
temporary folder first, so a fresh install asks for `NEEDED_GIB` free both where the venv goes and in the temporary
folder. Exit status 1 (with the one line on stderr) when either has less.

    python3 scripts/check_disk.py .venv
"""

from __future__ import annotations

import platform
import shutil
import sys
import tempfile
from pathlib import Path

#: Linux x86_64 gets PyPI's CUDA build of torch; elsewhere (macOS, aarch64) the CPU build, under 1 GB.
NEEDED_GIB = 9.0 if platform.system() == "Linux" and platform.machine() in ("x86_64", "AMD64") else 2.0


def free_gib(path: Path) -> float:
    """Free space on the file system holding `path` (or its nearest existing parent), in GiB."""
    while not path.exists():
        path = path.parent
    return shutil.disk_usage(path).free / 2**30


def main(argv: list[str]) -> int:
    venv = Path(argv[0] if argv else ".venv").resolve()
    for what, where in (("the venv", venv), ("pip's temporary folder", Path(tempfile.gettempdir()))):
        free = free_gib(where)
        if free < NEEDED_GIB:
            print(
                f"make install: {what} ({where}) has {free:.1f} GiB free; a fresh install needs about "
                f"{NEEDED_GIB:.0f} GiB (torch's CUDA build): free some space and run it again",
                file=sys.stderr,
            )
            return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
