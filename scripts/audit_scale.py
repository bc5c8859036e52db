"""Time and memory of the audit's analysis at 10k, 100k and 1M maps (synthetic, on the common 16 x 16 grid).

Each class holds objects whose peak wanders over the picture, a tag fixed in one corner (10%) and a strip along the
bottom edge (10%). Measured, per scale, in a fresh process: the features, every class's strategies (the sparse
k-NN graph, the sparse eigensolver on the clustered sample, the assignment of the rest), the ranking, and the
scatter's embedding; and whether the tag's strategy ranks first in each class. Peak memory is the process's
maximum resident set, beside the maps' and features' own size (what any analysis of them has to hold).

    python scripts/audit_scale.py 10000 100000 1000000 [--classes 10] [--sample 2000]
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time

import numpy as np

SIDE = 16


def synthetic(n: int, classes: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(maps (n, 16, 16) float32 summing to 1, class of each, True for the tag's maps)."""
    rng = np.random.default_rng(seed)
    kind = rng.choice(3, size=n, p=[0.8, 0.1, 0.1])  # 0 object, 1 corner tag, 2 bottom strip
    cx = np.where(kind == 1, 14.5, rng.uniform(2, 13, n)).astype(np.float32)
    cy = np.where(kind == 1, 14.5, np.where(kind == 2, 15.0, rng.uniform(2, 13, n))).astype(np.float32)
    cx += np.where(kind == 0, 0, rng.normal(0, 0.3, n)).astype(np.float32)
    spread = np.where(kind == 0, 1.8, 0.7).astype(np.float32)
    grid = np.arange(SIDE, dtype=np.float32) + 0.5
    maps = np.empty((n, SIDE, SIDE), dtype=np.float32)
    for start in range(0, n, 65536):
        s = slice(start, start + 65536)
        dy = (grid[None, :] - cy[s, None]) ** 2  # (b, 16)
        dx = (grid[None, :] - cx[s, None]) ** 2
        heat = np.exp(-(dy[:, :, None] + dx[:, None, :]) / (2 * spread[s, None, None] ** 2)) + 1e-6
        maps[s] = heat / heat.sum(axis=(1, 2), keepdims=True)
    return maps, rng.integers(0, classes, n), kind == 1


def measure(n: int, classes: int, sample: int) -> dict[str, object]:
    from attnviz.audit import strategies as module
    from attnviz.audit.stats import features
    from attnviz.audit.suspicion import judge, ranks

    module.MAX_CLUSTERED = sample
    maps, cls, tag = synthetic(n, classes)
    started = time.perf_counter()
    x = features(maps)
    times = {"features": time.perf_counter() - started}
    started = time.perf_counter()
    first = 0
    for c in range(classes):
        members = np.flatnonzero(cls == c)
        class_maps = maps[members]
        found = module.strategies(x[members], class_maps)  # with the maps: the suspect strategy settled by its place
        verdicts = judge(class_maps, found.labels)
        order = ranks(verdicts, list(np.bincount(found.labels)))
        top = order.index(0)
        first += int(tag[members][found.labels == top].mean() > 0.9)
    times["strategies"] = time.perf_counter() - started
    started = time.perf_counter()
    module.embed(x)
    times["embed"] = time.perf_counter() - started
    return {
        "n": n,
        "seconds": {k: round(v, 1) for k, v in times.items()},
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
        "maps_and_features_mb": round((maps.nbytes + x.nbytes) / 2**20),
        "tag_first_in": f"{first} of {classes} classes",
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("sizes", nargs="+", type=int)
    parser.add_argument("--classes", type=int, default=10)
    parser.add_argument("--sample", type=int, default=None, help="images clustered per class (default: the audit's)")
    parser.add_argument("--one", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        from attnviz.audit.strategies import MAX_CLUSTERED

        print(json.dumps(measure(args.sizes[0], args.classes, args.sample or MAX_CLUSTERED)))
        return 0
    for n in args.sizes:  # each in its own process: the peak resident set is that scale's alone
        extra = ["--sample", str(args.sample)] if args.sample else []
        argv = [sys.executable, __file__, str(n), "--classes", str(args.classes), "--one", *extra]
        done = subprocess.run(argv, capture_output=True, text=True)
        if done.returncode != 0:
            print(done.stderr, file=sys.stderr)
            return 1
        print(done.stdout.strip())
    return 0


if __name__ == "__main__":
    sys.exit(main())
