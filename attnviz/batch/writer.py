"""The main thread's side of a run: finished inputs written whole and reported in input order, Ctrl-C held back
while an input's files are written."""

from __future__ import annotations

import json
import signal
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from types import FrameType
from typing import BinaryIO, TextIO

import numpy as np

from attnviz.batch.options import RunOptions
from attnviz.batch.plan import Item, failed
from attnviz.batch.progress import Progress
from attnviz.errors import OutputError
from attnviz.io.outputs import write_bytes, write_npy
from attnviz.record import Record, error_record


@dataclass
class Summary:
    written: int = 0
    skipped: int = 0
    failed: int = 0

    def line(self) -> str:
        return f"attnviz: {self.written} written, {self.skipped} skipped, {self.failed} failed"


def one_line(message: str) -> str:
    return message.replace("\r", "\\r").replace("\n", "\\n")


class Writer:
    """Writes each input's files, then reports it: one JSON line, one error line, or a `wrote ...` line."""

    def __init__(self, options: RunOptions, stderr: TextIO, fail: Callable[[Item, str], Item] = failed) -> None:
        self.options = options
        self.stderr = stderr
        self.fail = fail
        self.summary = Summary()
        self.writing = False  # an input's files are being written: Ctrl-C waits until they are done
        self.interrupt_pending = False

    def write_files(self, item: Item) -> None:
        """Scores first and the overlay last, so an overlay's presence means its input is done (--skip-existing).

        Ctrl-C during these writes takes effect once they are done: an input is never left with its scores but
        without its overlay, which a resumed run would trip over.
        """
        self.writing = True
        try:
            for path, content in item.files:
                if isinstance(content, np.ndarray):
                    write_npy(path, content, overwrite=self.options.overwrite or item.redo)
                else:
                    write_bytes(path, content, overwrite=self.options.overwrite or item.redo)
        except OutputError as exc:
            self.fail(item, str(exc))
        finally:
            item.files = []
            self.writing = False

    @contextmanager
    def deferred_interrupts(self) -> Iterator[None]:
        """While files are being written, the first Ctrl-C is held back until they are done (a second one is not)."""
        # signals reach the main thread only; an ignored SIGINT (a background job) or an embedder's handler stays
        if threading.current_thread() is not threading.main_thread() or (
            signal.getsignal(signal.SIGINT) is not signal.default_int_handler
        ):
            yield
            return

        def on_interrupt(signum: int, frame: FrameType | None) -> None:
            if self.writing and not self.interrupt_pending:
                self.interrupt_pending = True
                return
            raise KeyboardInterrupt

        signal.signal(signal.SIGINT, on_interrupt)
        try:
            yield
        finally:
            signal.signal(signal.SIGINT, signal.default_int_handler)

    def store(self, item: Item, progress: Progress) -> bool:
        """Write one input's files and count it (a failure is said on stderr); returns True to stop (--fail-fast)."""
        if item.files and item.error is None:
            self.write_files(item)
        progress.advance()
        if item.error is not None:
            self.summary.failed += 1
            progress.clear()
            self.message(item.error)
            return self.options.fail_fast
        if item.skipped:
            self.summary.skipped += 1
        else:
            self.summary.written += 1
        return False

    def report(self, item: Item, stdout: BinaryIO, one: bool) -> None:
        """Report one stored input on stdout: its JSON line (an error's too), or its image bytes for `-o -`; a
        run of `one` input says on stderr what it wrote."""
        if item.error is not None:
            if self.options.json:
                write_json(stdout, error_record(item.job.input, item.error))
        elif item.data is not None:
            stdout.write(item.data)
            stdout.flush()
        elif self.options.json and item.record is not None:
            write_json(stdout, item.record)
        elif item.record is not None and not self.options.quiet and one:
            self.report_one(item.record, item.skipped)

    def emit(self, item: Item, progress: Progress, stdout: BinaryIO) -> bool:
        """Store and report one input; returns True to stop (--fail-fast)."""
        stop = self.store(item, progress)
        self.report(item, stdout, one=progress.total == 1)
        return stop

    def report_one(self, record: Record, skipped: bool) -> None:
        """A run of one input says what it wrote (a class for each map), or that it skipped."""
        if skipped:
            self.stderr.write(f"skipped {record['output']}: it exists (--skip-existing)\n")
            return
        maps = record.get("maps", [record])
        for entry in maps if isinstance(maps, list) else []:
            target = entry["target"]
            said = "no class" if target is None else f"{target['label']}, p={target['prob']:.3f}"
            self.stderr.write(f"wrote {entry['output']}  ({said}, peak at {entry['peak']})\n")

    def finish(self, single: bool, interrupted: bool, unreported: str = "") -> int:
        """The end of a run, for either engine: what an interrupt left (plus `unreported`), the summary unless one
        input or --quiet, and the exit status."""
        if interrupted:
            self.message(f"interrupted; every file written so far is complete{unreported}")
        if not single and not self.options.quiet:
            self.stderr.write(self.summary.line() + "\n")
        return 130 if interrupted else 1 if self.summary.failed else 0

    def message(self, text: str) -> None:
        self.stderr.write(f"attnviz: error: {one_line(text)}\n")
        self.stderr.flush()


def write_json(stdout: BinaryIO, record: Record) -> None:
    stdout.write(json.dumps(record).encode() + b"\n")
    stdout.flush()
