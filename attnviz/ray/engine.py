"""`attnviz run --engine ray`: the local engine's plan, files and JSON lines, with the work done by Ray Data actors.

The driver plans every input as the local engine does (output names, collisions, `--skip-existing`, refusals), so
both engines name and refuse alike; the rows it hands to Ray carry each input's path and planned outputs. Actors
read, explain and write; the driver reports each input in input order as its record comes back.
"""

from __future__ import annotations

import logging
import os
import sys
import warnings
from collections.abc import Callable, Generator, Iterator
from contextlib import closing, contextmanager, nullcontext
from dataclasses import replace
from typing import Any, BinaryIO, TextIO

from attnviz.batch.lanes import map_tags, planning_explainer
from attnviz.batch.options import STDOUT, RunOptions
from attnviz.batch.plan import Item, OutputPlan, check_output
from attnviz.batch.progress import Progress
from attnviz.batch.writer import Writer
from attnviz.errors import ComputeError, UsageError
from attnviz.models.devices import pick_device
from attnviz.ray.batches import ExplainBatches
from attnviz.ray.records import json_record
from attnviz.ray.session import check_address, last_line, ray_session
from attnviz.record import Record

#: What each actor asks of Ray. Half a CPU: with whole CPUs, N actors on N cores leave Ray's read and input tasks
#: none, and the job hangs (measured with Ray 2.60 on 2 cores).
ACTOR_OPTIONS: dict[str, Any] = {"num_cpus": 0.5}
#: Ray's default for actors is to restart them and retry their tasks forever, so a file that kills its worker every
#: time would loop; three tries, then the run stops with that error. Ray 2.60 takes these only as `ray_remote_args`,
#: which it calls deprecated without offering a named parameter yet.
RETRIES: dict[str, Any] = {"max_restarts": 3, "max_task_retries": 3}
#: Rows per actor call: small, so a retried call redoes little and results stream back in order.
BATCH_ROWS = 4


def check_ray_options(options: RunOptions) -> None:
    """What the Ray engine cannot do: it writes files, and its actors cannot stop each other at a first failure."""
    if options.output == STDOUT:
        raise UsageError("-o - (image to stdout) needs --engine local")
    if options.fail_fast:
        raise UsageError("--fail-fast needs --engine local (Ray's actors keep explaining after a failure)")


@contextmanager
def _data_context() -> Iterator[None]:
    """Records in input order, no progress bars, no block skipped: a block lost after its retries fails the run
    (`max_errored_blocks = 0`) rather than silently losing its outputs. Ray's logs and its deprecation notes
    about its own settings (issued when its context is first made) are kept off stderr: a failed job reaches us
    as an exception, said in one line. Everything is restored afterwards."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", module=r"ray(\.|$)")
        from ray.data import DataContext

        context = DataContext.get_current()
        saved = (context.execution_options.preserve_order, context.enable_progress_bars, context.max_errored_blocks)
        data_logger = logging.getLogger("ray.data")
        level = data_logger.level
        context.execution_options.preserve_order = True
        context.enable_progress_bars = False
        context.max_errored_blocks = 0
        data_logger.setLevel(logging.CRITICAL)
        try:
            yield
        finally:
            context.execution_options.preserve_order, context.enable_progress_bars = saved[:2]
            context.max_errored_blocks = saved[2]
            data_logger.setLevel(level)


def records(work: list[Item], options: RunOptions, actors: int | None = None) -> Generator[Record, None, None]:
    """Explain the planned items on the current cluster; one record per item, in order. Consumed once: a Ray
    dataset is lazy, and a second pass would run the network again."""
    import ray
    from ray.data import ActorPoolStrategy

    if not work:
        return
    rows = [{"path": item.job.input, "outputs": [str(p) for p in item.outputs]} for item in work]
    size = actors or max(1, int(ray.cluster_resources().get("CPU", 1)))
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="`ray_remote_args` is deprecated")
        dataset = ray.data.from_items(rows).map_batches(
            ExplainBatches,
            fn_constructor_kwargs={"options": replace(options, output=options.output or "."), "cwd": os.getcwd()},
            compute=ActorPoolStrategy(size=min(size, len(rows))),
            batch_size=BATCH_ROWS,
            **ACTOR_OPTIONS,
            **RETRIES,
        )
    for table in dataset.iter_batches(batch_format="pyarrow", batch_size=None):
        yield from table.to_pylist()  # type: ignore[union-attr]


def _next(results: Iterator[Record]) -> Record:
    """The next record; a job that failed (its retries spent) is one line, as any other error."""
    try:
        return next(results)
    except Exception as exc:
        raise ComputeError(f"the Ray job failed: {last_line(exc)}") from None


def run(
    arguments: list[str],
    options: RunOptions,
    address: str | None = None,
    stdin: BinaryIO | None = None,
    stdout: BinaryIO | None = None,
    stderr: TextIO | None = None,
) -> int:
    """`attnviz run` on Ray: the same outputs, JSON lines, summary and exit status as the local engine."""
    check_output(arguments, options)  # a usage error in -o is said before Ray starts or an encoder loads
    out = stdout or sys.stdout.buffer
    writer = Writer(options, stderr or sys.stderr)

    def report(item: Item, total: int) -> None:
        writer.report(item, out, one=total == 1)

    return drain(arguments, options, writer, report, address, stdin)


def drain(
    arguments: list[str],
    options: RunOptions,
    writer: Writer,
    take: Callable[[Item, int], None],
    address: str | None = None,
    stdin: BinaryIO | None = None,
) -> int:
    """Plan, explain on Ray, and hand each input, in input order, to `take` (with the number of inputs) once
    `writer` has counted it; then end the run: its summary, and the exit status. With `options.record_weights`,
    each record carries its grid's weights as the local engine's do (the audit's)."""
    check_ray_options(options)
    import ray

    if address is not None:
        address = check_address(address)
    elif not ray.is_initialized():  # a Ray started here: a device this machine lacks is a usage error, not actors'
        pick_device(options.device)
    # the driver plans and checks as the local engine does, with an explainer that never sees an image
    explainer = planning_explainer(options)
    targets = explainer.check_targets(options.targets, options.topk)
    plan = OutputPlan(options, explainer.mode.value, map_tags(targets, options.topk))
    jobs, _, single = plan.jobs(arguments, stdin if stdin is not None else sys.stdin.buffer)
    items = [plan.admit(job, single, seq) for seq, job in enumerate(jobs)]
    work = [item for item in items if item.error is None and not item.skipped]
    progress = Progress(writer.stderr, len(items), enabled=writer.stderr.isatty() and not options.quiet and not single)
    interrupted = False
    try:
        with _data_context(), ray_session(address) if work else nullcontext():  # all skipped: no cluster to start
            results = records(work, options, options.workers)
            with closing(results):  # before Ray shuts down: an open iterator would report to a cluster that is gone
                for item in items:
                    if item.error is None and not item.skipped:
                        _fill(item, _next(results), options.record_weights)
                    writer.store(item, progress)
                    take(item, len(items))
    except KeyboardInterrupt:
        interrupted = True
    progress.clear()
    # actors may have finished more files than reached us: complete ones, which a rerun skips
    unreported = " (--skip-existing resumes: actors may have finished more than is reported)"
    return writer.finish(single, interrupted, unreported)


def _fill(item: Item, row: Record, with_weights: bool) -> None:
    """An item's record (or error) from its row; its weights rounded as the local engine rounds them."""
    record = json_record(row)
    if "error" in record:
        item.error = str(record["error"])
        return
    weights = row.get("weights")
    if with_weights and weights is not None:
        record["weights"] = [round(float(w), 7) for w in weights]
    item.record = record
