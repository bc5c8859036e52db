"""Where a lane's time goes: milliseconds per image for each stage of `attnviz run`, on one thread, as one lane runs.

Stages, in the order a lane runs them: decode (open, orient, RGB), resize (both passes' network inputs), forward
(the backend's two passes: recognition at the trained size, map at --size), scoring (class queries, scorer,
softmax: `infer_classes` less its forward passes), map (upsampling and smoothing the grid to the photo), blend
(colour map and opacity over the photo) and encode (PNG). Run on the photos `scripts/bench.py` synthesises:

    python scripts/stages.py [--backend auto] [--count 48]
"""

from __future__ import annotations

import argparse
import time
from collections import defaultdict
from pathlib import Path

import torch

from attnviz.explainer import Explainer
from attnviz.io.images import load_image
from attnviz.io.outputs import encode_image, suffix_format
from attnviz.render.overlay import overlay_image

ROOT = Path(__file__).resolve().parent.parent


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=ROOT / "bench-data", help="bench.py's photo cache")
    parser.add_argument("--count", type=int, default=200)
    parser.add_argument("--backend", default="auto")
    parser.add_argument("--size", type=int, default=448)
    args = parser.parse_args()
    from bench import ensure_photos, photos_folder  # scripts/ is on sys.path when this file runs

    paths = sorted(ensure_photos(photos_folder(args.data, args.count), args.count).glob("*.jpg"))
    torch.set_num_threads(1)  # one lane's share on a 2-core machine
    explainer = Explainer("efficientnet_lite0", "concat", args.size, device="cpu", backend=args.backend, threads=1)
    forward = explainer.engine or explainer.encoder
    print(f"backend: {explainer.backend_note}; {len(paths)} photos, one thread")
    fmt, options = suffix_format(".png")
    totals: dict[str, float] = defaultdict(float)
    for index, path in enumerate([paths[0], *paths]):  # the first is a warm-up, not counted
        clock = time.perf_counter()
        times: dict[str, float] = {}

        def lap(stage: str, times: dict[str, float] = times) -> None:
            nonlocal clock
            now = time.perf_counter()
            times[stage] = now - clock
            clock = now

        image = load_image(path).image
        lap("decode")
        x, small = explainer.preprocess(image)[None], explainer.preprocess_classify(image)  # (1, 3, h, w)
        lap("resize")
        recognise = None if small is None else small[None]
        with torch.inference_mode():
            forward(x)
            if recognise is not None:
                forward(recognise)
        lap("forward")
        result = explainer.infer_classes(x, None, recognise=recognise)[0][0]
        lap("scoring")  # includes the forward passes again: subtracted below
        times["scoring"] -= times["forward"]
        heat = explainer.draw(result, image.width, image.height).heatmap
        lap("map")
        pixels = overlay_image(image, heat)
        lap("blend")
        encode_image(pixels, fmt, options)
        lap("encode")
        if index:
            for stage, seconds in times.items():
                totals[stage] += seconds
    whole = sum(totals.values())
    for stage, seconds in totals.items():
        print(f"{stage:<8}{1000 * seconds / len(paths):>8.1f} ms{100 * seconds / whole:>6.0f}%")
    print(f"{'total':<8}{1000 * whole / len(paths):>8.1f} ms  ({len(paths) / whole:.2f} images/s on one thread)")


if __name__ == "__main__":
    main()
