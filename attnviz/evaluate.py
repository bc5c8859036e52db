"""Map quality without annotations: the mosaic pointing game and its energy variant.

Four photos whose top-1 classes differ are tiled 2 x 2; querying the mosaic with one tile's class, a good map peaks
inside that tile (pointing game, Zhang et al. 2016) and puts most of its mass there (energy-based pointing game,
Score-CAM). The tile a class belongs to is known by construction, so no labels are needed.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
from PIL import Image

from attnviz import render
from attnviz.pipeline import Explainer

TILE_ORIGINS = ((0, 0), (1, 0), (0, 1), (1, 1))  # (col, row) of the four tiles


@dataclass(frozen=True)
class Mosaic:
    members: tuple[int, int, int, int]  # indices into the image list, in TILE_ORIGINS order
    classes: tuple[int, int, int, int]


@dataclass
class PointingScore:
    queries: int = 0
    hits: int = 0
    energy: float = 0.0

    @property
    def pointing(self) -> float:
        return self.hits / self.queries if self.queries else float("nan")

    @property
    def mean_energy(self) -> float:
        return self.energy / self.queries if self.queries else float("nan")


def square(image: Image.Image, side: int) -> Image.Image:
    """Centre crop to a square, then resize: every tile gets the same share of the mosaic."""
    short = min(image.size)
    left, top = (image.width - short) // 2, (image.height - short) // 2
    return image.crop((left, top, left + short, top + short)).resize((side, side), Image.Resampling.BICUBIC)


def compose(tiles: Sequence[Image.Image], side: int) -> Image.Image:
    canvas = Image.new("RGB", (2 * side, 2 * side))
    for tile, (col, row) in zip(tiles, TILE_ORIGINS, strict=True):
        canvas.paste(tile, (col * side, row * side))
    return canvas


def plan_mosaics(classes: Sequence[int], count: int, seed: int) -> list[Mosaic]:
    """`count` mosaics of four images with four different top-1 classes, reproducible for a seed."""
    rng = random.Random(seed)
    mosaics: list[Mosaic] = []
    indices = list(range(len(classes)))
    if len(set(classes)) < 4:
        return mosaics
    attempts = 0
    while len(mosaics) < count and attempts < 100 * count:
        attempts += 1
        pick = rng.sample(indices, 4)
        chosen = tuple(classes[i] for i in pick)
        if len(set(chosen)) == 4:
            mosaics.append(Mosaic(tuple(pick), chosen))  # type: ignore[arg-type]
    return mosaics


def tile_hit_and_energy(explainer: Explainer, mosaic_image: Image.Image, target: int, tile: int) -> tuple[bool, float]:
    """Query the mosaic with `target`; was the peak in `tile`, and what share of the weight lies there?"""
    result = explainer.infer(explainer.preprocess(mosaic_image)[None], [target])[0]
    heat = render.upsample(render.display_map(result.scores), mosaic_image.width, mosaic_image.height)
    x, y = render.peak(heat)
    col, row = TILE_ORIGINS[tile]
    half_w, half_h = mosaic_image.width // 2, mosaic_image.height // 2
    hit = (x >= half_w) == bool(col) and (y >= half_h) == bool(row)
    rows, cols = result.grid
    weights = result.weights  # (rows, cols), sum 1
    r0, c0 = row * rows // 2, col * cols // 2
    energy = float(np.sum(weights[r0 : r0 + rows // 2, c0 : c0 + cols // 2]))
    return hit, energy


def mosaic_pointing(
    explainer: Explainer,
    images: Sequence[Image.Image],
    classes: Sequence[int],
    mosaics: Sequence[Mosaic],
    progress: Callable[[], None] | None = None,
) -> PointingScore:
    """Pointing and energy over every tile of every mosaic, the mosaic fed at the explainer's input size."""
    side = explainer.size // 2
    tiles = {i: square(images[i], side) for m in mosaics for i in m.members}
    score = PointingScore()
    for mosaic in mosaics:
        picture = compose([tiles[i] for i in mosaic.members], side)
        for tile, target in enumerate(mosaic.classes):
            hit, energy = tile_hit_and_energy(explainer, picture, target, tile)
            score.queries += 1
            score.hits += int(hit)
            score.energy += energy
        if progress is not None:
            progress()
    return score
