"""Which way of drawing a map reads as one region on the object? Measured on masked single photos.

For each photo the reference class (the object alone at the trained scale, as `attnviz eval --singles` defines
it) is queried at the trained scale (224) and at the fine scale (448); the study then draws the map several ways and
reports, per way, pointing (peak in the mask), energy (share of the drawn map inside the mask) and regions
(connected areas above half the peak; 1 reads as one object).

    python scripts/display_study.py /work/heldout/singles [-m concat]
"""

from __future__ import annotations

import argparse
from collections.abc import Callable

import numpy as np
import torch
import torch.nn.functional as F

from attnviz import render
from attnviz.explainer import Explainer
from attnviz.models.registry import create_encoder
from attnviz.options import SCORER_MODES
from attnviz.quality.singles import count_regions, load_singles


def minmax(scores: np.ndarray) -> np.ndarray:
    span = float(scores.max() - scores.min())
    return (scores - scores.min()) / span if span > 0 else np.zeros_like(scores)


def blur(heat: np.ndarray, sigma_share: float) -> np.ndarray:
    """Gaussian blur with sigma a share of the shorter side (separable, torch)."""
    sigma = max(1.0, sigma_share * min(heat.shape))
    radius = int(3 * sigma)
    x = torch.arange(-radius, radius + 1, dtype=torch.float32)
    kernel = torch.exp(-(x**2) / (2 * sigma**2))
    kernel /= kernel.sum()
    t = torch.from_numpy(heat)[None, None]
    t = F.conv2d(F.pad(t, (radius, radius, 0, 0), mode="replicate"), kernel.reshape(1, 1, 1, -1))
    t = F.conv2d(F.pad(t, (0, 0, radius, radius), mode="replicate"), kernel.reshape(1, 1, -1, 1))
    out = t[0, 0].numpy()
    return out / out.max() if out.max() > 0 else out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("folder")
    parser.add_argument("-m", "--mode", default="concat", choices=[m.value for m in SCORER_MODES])
    args = parser.parse_args()
    encoder = create_encoder()
    singles, masked = load_singles(args.folder, encoder)
    fine = Explainer(encoder, args.mode, 448, classify_size=448)
    coarse = Explainer(encoder, args.mode, 224, classify_size=224)
    ways: dict[str, Callable[[np.ndarray, np.ndarray, int, int], np.ndarray]] = {
        "448 median-max bilinear (before)": lambda f, c, w, h: render.upsample(render.display_map(f), w, h),
        "448 median-max bicubic": lambda f, c, w, h: render.upsample(render.display_map(f), w, h, "bicubic"),
        "448 min-max bilinear": lambda f, c, w, h: render.upsample(minmax(f), w, h),
        "448 softmax weights / max": lambda f, c, w, h: render.upsample(minmax(np.exp(f - f.max())), w, h),
        "224 median-max bilinear": lambda f, c, w, h: render.upsample(render.display_map(c), w, h),
        "mean of 224 and 448": lambda f, c, w, h: (
            0.5 * (render.upsample(render.display_map(f), w, h) + render.upsample(render.display_map(c), w, h))
        ),
        "product of 224 and 448": lambda f, c, w, h: minmax(
            render.upsample(render.display_map(f), w, h) * render.upsample(render.display_map(c), w, h)
        ),
    }

    def at_photo_size(share: float) -> Callable[[np.ndarray, np.ndarray, int, int], np.ndarray]:
        return lambda f, c, w, h: blur(render.upsample(render.display_map(f), w, h), share)

    def on_grid(share: float) -> Callable[[np.ndarray, np.ndarray, int, int], np.ndarray]:
        return lambda f, c, w, h: render.upsample(
            blur(render.upsample(render.display_map(f), 8 * f.shape[1], 8 * f.shape[0]), share), w, h
        )

    for share in (0.02, 0.04, 0.06, 0.08):
        ways[f"448 blurred at photo size, sigma {share:.0%}"] = at_photo_size(share)
        ways[f"448 blurred on 8x grid, sigma {share:.0%}"] = on_grid(share)
    ways["product 224x448, blurred on 8x grid, sigma 4%"] = lambda f, c, w, h: render.upsample(
        blur(
            minmax(
                render.upsample(render.display_map(f), 8 * f.shape[1], 8 * f.shape[0])
                * render.upsample(render.display_map(c), 8 * f.shape[1], 8 * f.shape[0])
            ),
            0.04,
        ),
        w,
        h,
    )
    tallies = {name: [0, 0.0, 0] for name in ways}
    for single in singles:
        image = single.image
        f = fine.infer_classes(fine.preprocess(image)[None], [[single.reference]])[0][0].scores
        c = coarse.infer_classes(coarse.preprocess(image)[None], [[single.reference]])[0][0].scores
        for name, draw in ways.items():
            heat = draw(f, c, image.width, image.height).astype(np.float32)
            x, y = render.peak(heat)
            tallies[name][0] += int(single.mask[y, x])
            tallies[name][1] += float(heat[single.mask].sum() / max(heat.sum(), 1e-12))
            tallies[name][2] += count_regions(heat)
    n = len(singles)
    width = max(len(name) for name in ways)
    print(f"{'way (' + args.mode + ')':<{width}} pointing energy regions")
    for name, (hits, energy, regions) in tallies.items():
        print(f"{name:<{width}} {hits / n:8.3f} {energy / n:6.3f} {regions / n:7.2f}")
    print(f"{n} photos of {masked} with masks")


if __name__ == "__main__":
    main()
