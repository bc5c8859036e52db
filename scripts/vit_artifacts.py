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
from attnviz.attention.transformer import OUTLIER_FACTOR, outlier_tokens
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
    tallies: dict[str, list[tuple[float, float]]] = {}
    flagged: list[int] = []
    explainers = {mode: Explainer(encoder, mode, device="cpu") for mode in (Mode.cls, Mode.rollout)}
    for path in paths:
        image = load_image(str(path)).image
        mask = read_mask(str(path), image.size)
        assert mask is not None
        for mode, explainer in explainers.items():
            attention = explainer.attention
            assert attention is not None
            with torch.inference_mode(), attention.recording() as seen:
                features, _ = encoder(explainer.preprocess(image)[None])
            rows, cols = features.shape[-2:]
            if mode is Mode.cls:
                prefix = attention.prefix(seen, rows, cols)
                flagged.append(int(outlier_tokens(seen.norms[-1][:, prefix:]).sum()))
            for discount in (False, True):
                weights = attention.weights(seen, rows, cols, discount=discount).reshape(rows, cols)
                heat = render.draw_map(attention.scores(weights).numpy(), image.width, image.height)
                x, y = render.peak(heat)
                energy = float(heat[mask].sum() / max(float(heat.sum()), 1e-12))
                name = f"{mode.value} {'outliers discounted' if discount else 'raw'}"
                tallies.setdefault(name, []).append((float(mask[y, x]), energy))
    means = {name: np.mean(np.array(values), axis=0) for name, values in tallies.items()}
    report = {
        "photos": len(paths),
        "outlier_factor": OUTLIER_FACTOR,
        "outliers_per_photo": float(np.mean(flagged)) if flagged else 0.0,
        "rows": {
            name: {"pointing": round(float(p), 4), "energy": round(float(e), 4)} for name, (p, e) in means.items()
        },
    }
    if args.json:
        print(json.dumps(report))
        return
    per_photo = report["outliers_per_photo"]
    print(f"{len(paths)} photos; tokens over {OUTLIER_FACTOR} x the median norm: {per_photo:.2f} a photo")
    for name, (p, e) in means.items():
        print(f"{name:<26} pointing {p:.3f}  energy {e:.3f}")


if __name__ == "__main__":
    main()
