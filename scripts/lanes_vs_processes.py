"""Do attnviz's lanes (threads of one process) cost more CPU per image than the same work in processes?

Runs the default job (`Runner`, PNG outputs) over bench.py's photos two ways, each warmed up first, side by side
in one run: one process with one lane per core (what `attnviz run` does), and one process per core with one lane
of one thread each (what Ray's actors are). Prints images/s and CPU ms per image for each, round by round.

    python scripts/lanes_vs_processes.py [--count 32] [--rounds 3] [--backend auto]
"""

from __future__ import annotations

import argparse
import io
import multiprocessing
import os
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

from attnviz.batch.allocator import tune_allocator
from attnviz.batch.options import RunOptions
from attnviz.batch.runner import Runner
from attnviz.models.devices import cpu_count
from attnviz.options import Backend

ROOT = Path(__file__).resolve().parent.parent
_STATE: dict[str, Any] = {}


def setup(lanes: int, backend: str, warmup: str) -> None:
    """Build and warm a runner in this process; `lanes` = 1 in a worker process: one lane of one thread."""
    tune_allocator()  # as the attnviz command and Ray's actors do
    if lanes == 1:
        import attnviz.batch.lanes as lanes_module

        lanes_module.cpu_count = lambda: 1  # type: ignore[attr-defined]  # this process's share: one core
    options = RunOptions(output=tempfile.mkdtemp(), quiet=True, workers=lanes, overwrite=True, backend=Backend(backend))
    _STATE["runner"] = Runner(options, io.StringIO())
    _STATE["runner"].run([warmup], None, io.BytesIO())


def work(paths: list[str]) -> float:
    """CPU seconds this process spent on `paths`."""
    before = sum(os.times()[:2])
    _STATE["runner"].run(paths, None, io.BytesIO())
    return sum(os.times()[:2]) - before


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=ROOT / "bench-data")
    parser.add_argument("--count", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--backend", default="auto")
    args = parser.parse_args()
    from bench import ensure_photos, photos_folder  # scripts/ is on sys.path when this file runs

    paths = [str(p) for p in sorted(ensure_photos(photos_folder(args.data, args.count), args.count).glob("*.jpg"))]
    cores = cpu_count()
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(
        cores, mp_context=context, initializer=setup, initargs=(1, args.backend, paths[0])
    ) as pool:
        list(pool.map(time.sleep, [0.2] * cores))  # every worker built and warm
        setup(cores, args.backend, paths[0])
        for round_ in range(1, args.rounds + 1):
            start = time.perf_counter()
            cpu = work(paths)
            threads = (len(paths) / (time.perf_counter() - start), 1000 * cpu / len(paths))
            start = time.perf_counter()
            cpu = sum(pool.map(work, [paths[i::cores] for i in range(cores)]))
            processes = (len(paths) / (time.perf_counter() - start), 1000 * cpu / len(paths))
            print(
                f"round {round_}: {cores} lanes in one process {threads[0]:.2f} images/s, {threads[1]:.0f} CPU ms/image"
                f" | {cores} processes x 1 lane {processes[0]:.2f} images/s, {processes[1]:.0f} CPU ms/image",
                flush=True,
            )


if __name__ == "__main__":
    main()
