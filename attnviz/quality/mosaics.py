"""2 x 2 mosaics of photos with different top-1 classes: localisation ground truth without labels."""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass

from PIL import Image

TILE_ORIGINS = ((0, 0), (1, 0), (0, 1), (1, 1))  # (col, row) of the four tiles


@dataclass(frozen=True)
class Mosaic:
    members: tuple[int, int, int, int]  # indices into the image list, in TILE_ORIGINS order
    classes: tuple[int, int, int, int]

    def renumbered(self, indices: Sequence[int]) -> Mosaic:
        """The same mosaic with members indexing `indices` (a subset) mapped back to the full list."""
        a, b, c, d = (indices[i] for i in self.members)
        return Mosaic((a, b, c, d), self.classes)


def tile_region(tile: int, rows: int, cols: int) -> tuple[slice, slice]:
    """The grid cells of one mosaic tile; with an odd grid the middle row and column go to the second tile."""
    col, row = TILE_ORIGINS[tile]
    return slice(row * rows // 2, (row + 1) * rows // 2 if row else rows // 2), slice(
        col * cols // 2, (col + 1) * cols // 2 if col else cols // 2
    )


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
