"""What the command line tunes in its own process, and only there: the allocator (see `attnviz.batch.allocator`
for why), Pillow's guard, warnings.
"""

from __future__ import annotations

import errno
import sys
from collections.abc import Callable
from typing import Any, TextIO

from attnviz.batch.allocator import tune_allocator


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


class OpenEnded:
    """stderr that a closed reader does not stop: `attnviz audit photos/ 2>&1 | head -1` closes it after one line,
    and the audit, hours long, must still write its records and report. Once closed, what is said is dropped."""

    def __init__(self, stream: TextIO) -> None:
        self._stream = stream
        self.closed_by_reader = False

    def write(self, text: str) -> int:
        self._unless_closed(lambda: self._stream.write(text))
        return len(text)

    def flush(self) -> None:
        self._unless_closed(self._stream.flush)

    def _unless_closed(self, call: Callable[[], object]) -> None:
        if not self.closed_by_reader:
            try:
                call()
            except OSError as exc:
                if exc.errno != errno.EPIPE:
                    raise
                self.closed_by_reader = True

    def __getattr__(self, name: str) -> Any:  # fileno, isatty, encoding, ...: the stream's own
        return getattr(self._stream, name)
