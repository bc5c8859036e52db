"""Where attnviz keeps what it derives once and reuses: `ATTNVIZ_CACHE`, else `$XDG_CACHE_HOME/attnviz`."""

from __future__ import annotations

import os
from pathlib import Path


def cache_dir() -> Path:
    """The cache folder, read from the environment on every call (so tests and users can point it elsewhere)."""
    base = os.environ.get("ATTNVIZ_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "attnviz"
    )
    return Path(base)
