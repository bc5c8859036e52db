"""A one-line progress bar on stderr (files done, rate, ETA), drawn only when stderr is a terminal."""

from __future__ import annotations

import time
from typing import TextIO


def _clock(seconds: float) -> str:
    minutes, secs = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


class Progress:
    def __init__(self, stream: TextIO, total: int | None, enabled: bool, unit: str = "images") -> None:
        self.unit = unit
        self.stream = stream
        self.total = total
        self.enabled = enabled
        self.done = 0
        self.start = time.monotonic()
        self._drawn = 0.0

    def advance(self) -> None:
        self.done += 1
        now = time.monotonic()
        if self.enabled and (now - self._drawn > 0.1 or self.done == self.total):
            self._drawn = now
            self.stream.write("\r\033[K" + self.line(now))
            self.stream.flush()

    def line(self, now: float) -> str:
        elapsed = max(now - self.start, 1e-9)
        rate = self.done / elapsed
        if self.total is None:
            return f"{self.done} {self.unit}  {rate:.1f}/s  {_clock(elapsed)}"
        eta = (self.total - self.done) / rate if rate > 0 else 0.0
        return f"{self.done}/{self.total} {self.unit}  {rate:.1f}/s  ETA {_clock(eta)}"

    def clear(self) -> None:
        if self.enabled and self.done:
            self.stream.write("\r\033[K")
            self.stream.flush()
