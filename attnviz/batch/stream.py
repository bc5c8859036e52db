"""Paths from a pipe, reported as they come: the driver starts on what it has when the next path is slow."""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterator

from attnviz.io.inputs import Job

#: How long the driver waits for the next path from a pipe before it starts on, and reports, what it has.
STREAM_PATIENCE_S = 0.2


def arrivals(jobs: Iterator[Job], streamed: bool) -> Iterator[Job | None]:
    """The jobs in order; from a pipe, also None whenever the next path is slow to come.

    A pipe may deliver paths as they appear (`inotifywait -m ... | attnviz run -`); reading it on a thread of its
    own lets the driver start work and print results meanwhile instead of waiting for the next line.
    """
    if not streamed:
        yield from jobs
        return
    inbox: queue.Queue[Job | BaseException | None] = queue.Queue(maxsize=256)  # None: the end

    def pump() -> None:
        try:
            for job in jobs:
                inbox.put(job)
        except BaseException as exc:  # re-raised on the driver's thread
            inbox.put(exc)
        inbox.put(None)

    threading.Thread(target=pump, name="attnviz-stdin", daemon=True).start()
    while True:
        try:
            arrived = inbox.get(timeout=STREAM_PATIENCE_S)
        except queue.Empty:
            yield None
            continue
        if isinstance(arrived, BaseException):
            raise arrived
        if arrived is None:
            return
        yield arrived
