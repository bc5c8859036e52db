"""How much does rollout's discard (`attnviz.attention.transformer.ROLLOUT_DISCARD`: the weakest fraction of each
block's head-averaged links dropped before the blocks are multiplied) matter? Measured on single photos with object
masks, as `attnviz eval --singles` rates them: pointing (peak of the drawn map inside the mask), energy (share of
the drawn map inside the mask) and regions (connected areas above half the maximum).

    python scripts/rollout_discard.py PHOTOS_DIR -e timm:vit_small_patch14_dinov2 -w WEIGHTS [--discard 0 0.9]

PHOTOS_DIR holds NAME.jpg with NAME.mask.png (`scripts/make_singles.py` makes such a set). Each photo gets one
recorded pass at the map size (`-s`, 448 as in `run`); the rollout is then taken at every `--discard` value from
that same pass, artifact tokens discounted as `--mode rollout` does by default. The value in
`transformer.ROLLOUT_DISCARD` is swapped only inside this process; the library is not edited. `--json` prints one
object.
"""

from __future__ import annotations

import argparse
import json
import sys

import numpy as np
import torch

from attnviz import render
from attnviz.attention import transformer
from attnviz.explainer import Explainer
from attnviz.models.registry import create_encoder
from attnviz.options import DEFAULT_SIZE, Mode
from attnviz.quality.singles import count_regions, load_singles


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("photos")
    parser.add_argument("-e", "--encoder", default="timm:vit_small_patch14_dinov2")
    parser.add_argument("-w", "--weights")
    parser.add_argument("-s", "--size", type=int, default=DEFAULT_SIZE)
    parser.add_argument("--discard", type=float, nargs="+", default=[0.0, transformer.ROLLOUT_DISCARD])
    parser.add_argument("--limit", type=int, default=0)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    torch.set_num_threads(2)
    encoder = create_encoder(args.encoder, args.weights)
    photos, masked = load_singles(args.photos, encoder, say=lambda m: print(m, file=sys.stderr))
    photos = photos[: args.limit or None]
    explainer = Explainer(encoder, Mode.rollout, args.size, device="cpu")
    attention = explainer.attention
    assert attention is not None
    default = transformer.ROLLOUT_DISCARD
    tallies: dict[float, list[tuple[float, float, int]]] = {d: [] for d in args.discard}
    try:
        for photo in photos:
            with torch.inference_mode(), attention.recording() as seen:
                features, _ = encoder(explainer.preprocess(photo.image)[None])
            rows, cols = features.shape[-2:]
            for discard in args.discard:
                transformer.ROLLOUT_DISCARD = discard  # read by TransformerAttention.weights at call time
                weights = attention.weights(seen, rows, cols).reshape(rows, cols)
                heat = render.draw_map(attention.scores(weights).numpy(), photo.image.width, photo.image.height)
                x, y = render.peak(heat)
                energy = float(heat[photo.mask].sum() / max(float(heat.sum()), 1e-12))
                tallies[discard].append((float(photo.mask[y, x]), energy, count_regions(heat)))
    finally:
        transformer.ROLLOUT_DISCARD = default
    report = {
        "photos": len(photos),
        "masked": masked,
        "size": args.size,
        "default_discard": default,
        "rows": {
            f"{d:g}": {k: round(float(v), 4) for k, v in zip(("pointing", "energy", "regions"), means, strict=True)}
            for d, means in ((d, np.mean(t, axis=0)) for d, t in tallies.items())
        },
    }
    if args.json:
        print(json.dumps(report))
        return
    print(f"{len(photos)} photos, rollout at {args.size} px, artifact tokens discounted")
    for d, row in report["rows"].items():
        mark = "  (default)" if float(d) == default else ""
        figures = f"pointing {row['pointing']:.3f}  energy {row['energy']:.3f}  regions {row['regions']:.2f}"
        print(f"discard {d:<5} {figures}{mark}")


if __name__ == "__main__":
    main()
