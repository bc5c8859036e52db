"""`attnviz run` on the local engine: outputs planned with no model, inputs carried through the `Lanes`, their
files written and reported in input order."""

from __future__ import annotations

import sys
from collections.abc import Callable, Generator, Iterator
from typing import BinaryIO, TextIO

from attnviz.batch.lanes import Lanes
from attnviz.batch.options import RunOptions
from attnviz.batch.plan import Item, OutputPlan, check_output
from attnviz.batch.progress import Progress
from attnviz.batch.stream import arrivals
from attnviz.batch.writer import Summary, Writer


class Runner:
    """Plans, explains (with its own `Lanes`, or the ones given, whose model is then shared) and writes.

    `results()` yields each input once its files are written, for a caller that collects records (the audit);
    `run()` also reports each on stdout and stderr, as the command line does.
    """

    def __init__(self, options: RunOptions, stderr: TextIO, lanes: Lanes | None = None) -> None:
        self.options = options
        self.stderr = stderr
        self.lanes = lanes or Lanes(options, self.note)
        if options.verbose:
            stderr.write(f"attnviz: backend: {self.lanes.explainer.backend_note}\n")
        self.outputs = OutputPlan(options, self.lanes.mode.value, self.lanes.map_tags, self.lanes.failed)
        self.writer = Writer(options, stderr, self.lanes.failed)
        self.single = False
        self.total: int | None = None
        self.interrupted = False

    def note(self, line: str) -> None:
        if not self.options.quiet:
            self.stderr.write(f"attnviz: {line}\n")

    def results(self, arguments: list[str], stdin: BinaryIO | None) -> Generator[Item, None, None]:
        """Every input, in order, once its files are written (or it failed or was skipped). A Ctrl-C ends the
        iteration with `interrupted` set; files are written whole or not at all."""
        jobs, self.total, self.single = self.outputs.jobs(arguments, stdin)
        self.writer.summary = Summary()
        self.writer.interrupt_pending = False
        self.interrupted = False
        show = self.stderr.isatty() and not self.options.quiet and not self.single
        progress = Progress(self.stderr, self.total, enabled=show)

        def planned() -> Iterator[Item | None]:
            seq = 0
            for job in arrivals(jobs, streamed=self.total is None):
                if job is None:
                    yield None
                    continue
                yield self.outputs.admit(job, self.single, seq)
                seq += 1

        finished = self.lanes.results(planned())
        try:
            with self.writer.deferred_interrupts():
                for item in finished:
                    stop = self.writer.store(item, progress)
                    if self.writer.interrupt_pending:  # a Ctrl-C that came while this input's files were written
                        raise KeyboardInterrupt
                    yield item
                    if stop:
                        break
        except KeyboardInterrupt:
            self.interrupted = True
        finally:
            finished.close()  # the lanes stop drawing; nothing more is written
            progress.clear()

    def run(self, arguments: list[str], stdin: BinaryIO | None, stdout: BinaryIO) -> int:
        """The command line's run: each input reported as a JSON line, its image bytes, or a line on stderr."""
        return self.drain(arguments, stdin, lambda item: self.writer.report(item, stdout, one=self.total == 1))

    def drain(self, arguments: list[str], stdin: BinaryIO | None, take: Callable[[Item], None]) -> int:
        """Hand each finished input to `take`, then end the run: its summary, and the exit status."""
        results = self.results(arguments, stdin)
        try:
            for item in results:
                take(item)
        except KeyboardInterrupt:
            self.interrupted = True
        finally:
            results.close()
        return self.writer.finish(self.single, self.interrupted)


def run(arguments: list[str], options: RunOptions, stdin: BinaryIO | None = None) -> int:
    """Process `arguments` (files, folders, `-` for paths on stdin); returns the exit status."""
    check_output(arguments, options)  # a usage error in -o is said before the network loads, not after
    runner = Runner(options, sys.stderr)
    return runner.run(arguments, stdin if stdin is not None else sys.stdin.buffer, sys.stdout.buffer)


__all__ = ["Lanes", "RunOptions", "Runner", "Summary", "run"]
