"""Do high-norm "artifact" tokens (Darcet et al., ICLR 2024) hurt a ViT's cls and rollout maps? Measured on single
photos with object masks: pointing (peak on the object) and energy, with the raw maps and with the outlier tokens
discounted (`attnviz.attention.transformer.discount_outliers`, which `--mode cls`/`rollout` apply by default).

    python scripts/vit_artifacts.py PHOTOS_DIR -e timm:vit_small_patch14_dinov2 -w WEIGHTS [--limit N]

PHOTOS_DIR holds NAME.jpg with NAME.mask.png (`scripts/make_singles.py` makes such a set). Prints one line per
variant; `--json` prints them as one object.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch

from attnviz import render
from attnviz.attention.transformer import OUTLIER_FACTOR
from attnviz.explainer import Explainer
from attnviz.io.images import load_image
from attnviz.models.registry import create_encoder
from attnviz.options import Mode
from attnviz.quality.singles import read_mask


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("photos")
    parser.add_argument("-e", "--encoder", default="timm:vit_small_patch14_dinov2")
    parser.add_argument("-w", "--weights")
    parser.add_argument("--limit", type=int, default=0)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    torch.set_num_threads(2)
    encoder = create_encoder(args.encoder, args.weights)
    paths = sorted(p for p in Path(args.photos).glob("*.jpg"))[: args.limit or None]
    tallies: dict[str, list[float]] = {}
    flagged: list[int] = []
    for mode in (Mode.cls, Mode.rollout):
        for discount in (False, True):
            explainer = Explainer(encoder, mode, device="cpu")
            assert explainer.attention is not None
            explainer.attention.discount = discount
            name = f"{mode.value} {'outliers discounted' if discount else 'raw'}"
            hits, energy = [], []
            for path in paths:
                image = load_image(str(path)).image
                mask = read_mask(str(path), image.size)
                assert mask is not None
                result = explainer.infer_classes(explainer.preprocess(image)[None], None)[0][0]
                heat = render.draw_map(result.scores, image.width, image.height)
                x, y = render.peak(heat)
                hits.append(float(mask[y, x]))
                energy.append(float(heat[mask].sum() / max(heat.sum(), 1e-12)))
                if mode is Mode.cls and not discount:
                    flagged.append(int(explainer.attention.last_outliers))
            tallies[name] = [float(np.mean(hits)), float(np.mean(energy))]
    report = {
        "photos": len(paths),
        "outlier_factor": OUTLIER_FACTOR,
        "outliers_per_photo": float(np.mean(flagged)) if flagged else 0.0,
        "rows": {name: {"pointing": round(p, 4), "energy": round(e, 4)} for name, (p, e) in tallies.items()},
    }
    if args.json:
        print(json.dumps(report))
        return
    per_photo = report["outliers_per_photo"]
    print(f"{len(paths)} photos; tokens over {OUTLIER_FACTOR} x the median norm: {per_photo:.2f} a photo")
    for name, (p, e) in tallies.items():
        print(f"{name:<26} pointing {p:.3f}  energy {e:.3f}")


if __name__ == "__main__":
    main()
