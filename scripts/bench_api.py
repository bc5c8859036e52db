"""The Python API's batch against a loop of single calls: pictures per second of each, measured side by side.

A (B, 3, 224, 224) uint8 tensor of the bundled photos (centre squares, repeated up to B), explained by the default
explainer (EfficientNet-Lite0, concat, recognised at 224, mapped at --size) on the CPU: once as
`explainer.explain_batch(x, targets)`, once as `[explainer.explain(x[i], targets[i]) for i in range(B)]`, with one
target each. The two ways alternate round by round, so a busy machine slows both alike; the median round counts.

    python scripts/bench_api.py [--batch 8] [--rounds 5] [--size 448] [--mode concat]
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from attnviz.explainer import Explainer

SAMPLES = Path(__file__).resolve().parent.parent / "sample_images"


def photos(count: int, side: int = 224) -> torch.Tensor:
    """(count, 3, side, side) uint8: the bundled photos' centre squares, in turn."""
    squares = []
    for path in sorted(p for p in SAMPLES.iterdir() if p.suffix in (".png", ".jpg")):
        with Image.open(path) as image:
            rgb = image.convert("RGB")
        short = min(rgb.size)
        left, top = (rgb.width - short) // 2, (rgb.height - short) // 2
        square = rgb.crop((left, top, left + short, top + short)).resize((side, side), Image.Resampling.BICUBIC)
        squares.append(torch.from_numpy(np.array(square)).permute(2, 0, 1))
    return torch.stack([squares[i % len(squares)] for i in range(count)])


def timed(work: Callable[[], object], rounds: list[float]) -> None:
    """Run `work` once; its seconds go to `rounds`."""
    start = time.perf_counter()
    work()
    rounds.append(time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--batch", type=int, default=8, help="pictures per batch (B)")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--size", type=int, default=448, help="the map pass's shorter side")
    parser.add_argument("--mode", default="concat")
    args = parser.parse_args()
    explainer = Explainer(mode=args.mode, size=args.size, device="cpu")
    x = photos(args.batch)
    # warm-up (first-call costs out of both ways) that finds one target each: the picture's own top class
    targets: list[str | int | None] = [r.target.index if r.target else None for r in explainer.explain_batch(x)]
    explainer.explain(x[0], targets[0])
    batched: list[float] = []
    looped: list[float] = []
    for _ in range(args.rounds):
        timed(lambda: explainer.explain_batch(x, targets), batched)
        timed(lambda: [explainer.explain(x[i], targets[i]) for i in range(args.batch)], looped)
    batch_rate = args.batch / statistics.median(batched)
    loop_rate = args.batch / statistics.median(looped)
    print(
        f"explain_batch, B={args.batch}: {batch_rate:.1f} pictures/s; explain in a loop: {loop_rate:.1f} pictures/s; "
        f"batch / loop = {batch_rate / loop_rate:.2f}x  ({args.mode}, size {args.size}, {torch.get_num_threads()} "
        f"torch threads, median of {args.rounds} rounds)"
    )


if __name__ == "__main__":
    main()
