"""Ray Data against attnviz's own lanes on the same photos, side by side in one run, plus the per-stage rates the
README's scaling model is built on.

Each way runs in a fresh process of its own, one after the other, on the 48 photos of `scripts/bench.py`
(1024 x 768 JPEGs, concat, PNG outputs, default sizes):

* lanes: `Runner.run` warmed up first, as `bench.py` times it: steady-state images/s;
* ray A x T: `read_binary_files` -> `map_batches(ExplainBatches, ActorPoolStrategy(size=A))`, T torch threads per
  actor, on `ray.init(num_cpus=2)`: steady-state images/s (from the first returned block to the last; actors are
  built per dataset, so there is no warm-up to do beforehand) and what came before it (start-up);
* `attnviz run DIR -o OUT` and the same with `--engine ray`: the whole command, start-up included.

`--stages` instead times each stage of one image on one thread: read, decode, network, drawing and encoding, write.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench import ROOT, attnviz_way, ensure_photos, timed

from attnviz.cli.process import tune_allocator

VARIANTS = ("lanes", "ray 2x1", "ray 1x2", "ray 2x2")


def cpu_seconds() -> float:
    """CPU seconds used so far by this process and all its descendants, waited for or not (Ray's raylet, its
    workers and actors): what the work cost, whatever other load the machine carries."""
    stats: dict[int, tuple[int, float]] = {}  # pid -> (parent, seconds)
    for entry in Path("/proc").iterdir():
        try:
            if entry.name.isdigit():
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
                seconds = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
                stats[int(entry.name)] = (int(fields[1]), seconds)
        except (OSError, ValueError, IndexError):
            continue
    mine, total = {os.getpid()}, sum(os.times()[:2])
    grew = True
    while grew:
        found = {pid for pid, (parent, _) in stats.items() if parent in mine} - mine
        total += sum(stats[pid][1] for pid in found)
        mine |= found
        grew = bool(found)
    return total


def ray_way(photos: Path, actors: int, threads: int) -> dict[str, float]:
    os.environ.setdefault("RAY_AUTH_MODE", "token")  # no token file under the home folder
    os.environ.setdefault("RAY_AUTH_TOKEN", secrets.token_hex(16))
    start = time.perf_counter()
    import ray

    from attnviz.ray import ACTOR_OPTIONS, ExplainBatches

    imported = time.perf_counter()
    session = tempfile.mkdtemp(prefix="avb-")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, _temp_dir=session)
    ready = time.perf_counter()
    ray.data.DataContext.get_current().enable_progress_bars = False
    with tempfile.TemporaryDirectory(prefix="attnviz-bench-ray-") as out:
        dataset = ray.data.read_binary_files(str(photos), include_paths=True).map_batches(
            ExplainBatches,
            fn_constructor_kwargs={"output": out, "root": str(photos), "threads": threads},
            compute=ray.data.ActorPoolStrategy(size=actors),
            batch_size=4,
            **ACTOR_OPTIONS,
        )
        arrivals, spent = [], []
        for table in dataset.iter_batches(batch_format="pyarrow", batch_size=None):
            arrivals.append((time.perf_counter(), table.num_rows))  # type: ignore[union-attr]
            spent.append(cpu_seconds())
    ray.shutdown()
    shutil.rmtree(session, ignore_errors=True)
    first, rest = arrivals[0][0], sum(rows for _, rows in arrivals[1:])
    return {
        "images": sum(rows for _, rows in arrivals),
        "import": imported - start,
        "init": ready - imported,
        "first": first - ready,
        "steady": rest / (arrivals[-1][0] - first),
        "cpu": (spent[-1] - spent[0]) / rest,
        "total": arrivals[-1][0] - start,
    }


def lanes_way(photos: Path, data: Path) -> dict[str, float]:
    tune_allocator()
    options = argparse.Namespace(batch_size=1, workers=None, size=448, device="cpu", way="lanes")
    with tempfile.TemporaryDirectory(prefix="attnviz-bench-lanes-") as out:
        # torch in both ways: the Ray actors run torch too, so the comparison is the engine, not the runtime
        work = attnviz_way(options, photos, data / "warmup" / "warmup-0000.jpg", Path(out), None, "torch")
        done, seconds, others, (user, system) = timed(work)
        cpu = user + system
    return {"images": done, "steady": done / seconds, "others": others, "cpu": cpu / done}


def command_way(photos: Path, engine: str) -> float:
    with tempfile.TemporaryDirectory(prefix="attnviz-bench-cli-") as out:
        start = time.perf_counter()
        command = [sys.executable, "-m", "attnviz.cli", "run", str(photos), "-o", out, "-q", "--engine", engine]
        subprocess.run(command, check=True, capture_output=True)
        return time.perf_counter() - start


def stages(photos: Path) -> None:
    """Milliseconds per photo for each stage, one thread, warm page cache; sizes of what goes in and out."""
    import numpy as np
    import torch

    from attnviz.explainer import Explainer
    from attnviz.io.images import decode_bytes
    from attnviz.io.outputs import encode_image, write_bytes
    from attnviz.render.overlay import overlay

    tune_allocator()
    torch.set_num_threads(1)
    explainer = Explainer(device="cpu")
    paths = sorted(photos.glob("*.jpg"))
    names = ("read", "decode", "network", "draw+encode", "write")
    cpu, wall = dict.fromkeys(names, 0.0), dict.fromkeys(names, 0.0)
    sizes = {"in": 0, "out": 0}
    with tempfile.TemporaryDirectory(prefix="attnviz-stages-") as out:
        for index, path in enumerate([paths[0], *paths]):  # the first one warms up and is not counted
            marks = [(time.thread_time(), time.perf_counter())]
            data = path.read_bytes()
            marks.append((time.thread_time(), time.perf_counter()))
            image = decode_bytes(data, str(path)).image
            tensor, small = explainer.preprocess(image)[None], explainer.preprocess_classify(image)
            marks.append((time.thread_time(), time.perf_counter()))
            (result,) = explainer.infer(tensor, [None], None if small is None else small[None])
            marks.append((time.thread_time(), time.perf_counter()))
            drawn = explainer.draw(result, image.width, image.height)
            png = encode_image(overlay(np.asarray(image), drawn.heatmap, "turbo", 0.7), "PNG", {})
            marks.append((time.thread_time(), time.perf_counter()))
            write_bytes(Path(out) / f"{index}.png", png)
            marks.append((time.thread_time(), time.perf_counter()))
            if index > 0:
                for i, name in enumerate(names):
                    cpu[name] += marks[i + 1][0] - marks[i][0]
                    wall[name] += marks[i + 1][1] - marks[i][1]
                sizes["in"] += len(data)
                sizes["out"] += len(png)
    n = len(paths)
    print(f"one thread, {n} photos, warm page cache; load {os.getloadavg()[0]:.2f} (CPU time does not count it)")
    for name in names:
        per_core, elapsed = n / cpu[name], 1000 * wall[name] / n
        print(
            f"{name:<12} {1000 * cpu[name] / n:7.1f} CPU ms/photo ({per_core:8.1f}/s per core), wall {elapsed:7.1f} ms"
        )
    total = sum(cpu.values())
    print(f"all stages   {1000 * total / n:7.1f} CPU ms/photo, network {100 * cpu['network'] / total:.0f}% of it")
    print(f"in: {sizes['in'] / n / 1024:.0f} KiB/photo (JPEG), out: {sizes['out'] / n / 1024:.0f} KiB/photo (PNG)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=ROOT / "bench-data", help="cache folder for the photos")
    parser.add_argument("--count", type=int, default=48)
    parser.add_argument("--variants", default=",".join(VARIANTS), help=f"comma-separated, from: {', '.join(VARIANTS)}")
    parser.add_argument("--commands", action="store_true", help="also time the whole `attnviz run` per engine")
    parser.add_argument("--stages", action="store_true", help="time each stage on one thread instead")
    parser.add_argument("--way", help=argparse.SUPPRESS)
    args = parser.parse_args()
    photos = ensure_photos(args.data / f"photos-{args.count}", args.count)
    if args.stages:
        stages(photos)
        return
    if args.way:  # a child: one way, in this fresh process
        if args.way == "lanes":
            result = lanes_way(photos, args.data)
        else:
            actors, threads = (int(n) for n in args.way.split()[1].split("x"))
            result = ray_way(photos, actors, threads)
        print(json.dumps(result))
        return
    ensure_photos(args.data / "warmup", 1, offset=1_000_000, prefix="warmup")
    print(f"{args.count} photos in {photos}, {os.cpu_count()} CPUs; load before: {os.getloadavg()[0]:.2f}")
    rates: dict[str, list[float]] = {}
    costs: dict[str, list[float]] = {}
    for way in args.variants.split(","):  # a way may come back: alternating them spreads other load over both
        load = os.getloadavg()[0]
        child = subprocess.run(
            [sys.executable, __file__, "--way", way, "--data", str(args.data), "--count", str(args.count)],
            capture_output=True,
            text=True,
        )
        if child.returncode != 0:
            sys.exit(f"{way} failed:\n{child.stderr[-3000:]}")
        result = json.loads(child.stdout.strip().splitlines()[-1])
        rates.setdefault(way, []).append(result["steady"])
        costs.setdefault(way, []).append(result["cpu"])
        extra = ", ".join(f"{k} {v:.2f} s" for k, v in result.items() if k in ("import", "init", "first", "total"))
        rate, cpu = result["steady"], result["cpu"]
        line = f"{way:<10} {rate:6.2f} images/s steady, {1000 * cpu:4.0f} CPU ms/image (load {load:.2f})   {extra}"
        print(line, flush=True)
    if "lanes" in rates:
        lanes = sum(rates["lanes"]) / len(rates["lanes"])
        for way, runs in rates.items():
            mean, cost = sum(runs) / len(runs), sum(costs[way]) / len(costs[way])
            print(f"{way:<10} mean {mean:6.2f} images/s = {mean / lanes:.2f}x lanes; {1000 * cost:.0f} CPU ms/image")
    if args.commands:
        for engine in ("local", "ray"):
            seconds = command_way(photos, engine)
            print(f"attnviz run ({engine}): {seconds:.1f} s for {args.count} photos, start-up included")
    print(f"load after: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
