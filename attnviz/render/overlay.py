"""Colour and blending: a map laid over the photo, with an opacity that follows the map."""

from __future__ import annotations

from functools import lru_cache

import numpy as np

from attnviz.errors import UsageError
from attnviz.options import DEFAULT_ALPHA, DEFAULT_COLORMAP


@lru_cache(maxsize=8)
def colormap_lut(name: str) -> np.ndarray:
    """(256, 3) uint8 colours of a matplotlib colormap."""
    import matplotlib

    try:
        cmap = matplotlib.colormaps[name]
    except KeyError:
        raise UsageError(f"unknown colormap {name!r}; try inferno, viridis, magma, plasma, turbo or jet") from None
    return np.round(cmap(np.linspace(0.0, 1.0, 256))[:, :3] * 255).astype(np.uint8)


def check_style(colormap: str, alpha: float) -> None:
    """The one check of `--colormap` and `--alpha`, made by whoever draws, before any work."""
    if not 0.0 <= alpha <= 1.0:
        raise UsageError(f"--alpha must be between 0 and 1, got {alpha}")
    colormap_lut(colormap)


#: Rows blended at a time: keeps temporaries to a few MB however large the photo.
_STRIP_ROWS = 256


@lru_cache(maxsize=32)
def blend_table(colormap: str, alpha: float) -> tuple[bytes, tuple[int, ...]]:
    """Per map level (0-255): its colour (a 256-entry RGB palette) and its opacity over the photo (0-255)."""
    opacity = np.rint(np.linspace(0.0, 1.0, 256) * alpha * 255).astype(np.uint8)  # (256,)
    return colormap_lut(colormap).tobytes(), tuple(int(o) for o in opacity)


def overlay(
    image: np.ndarray, heat: np.ndarray, colormap: str = DEFAULT_COLORMAP, alpha: float = DEFAULT_ALPHA
) -> np.ndarray:
    """Blend a colour-mapped heat map over an (H, W, 3) uint8 RGB image; returns a new uint8 RGB image.

    Opacity follows the map (alpha * heat): where the network does not look, the photo stays as it was, instead
    of the whole picture being tinted as a fixed 50/50 blend does. The map's levels index a palette (colour) and a
    table (opacity), and Pillow composites the two in C: 8 ms for a 1024 x 768 photo on one core, against 17 ms
    for the same blend in numpy integers. Strips of rows keep temporaries to a few MB however large the photo.
    """
    from PIL import Image

    check_style(colormap, alpha)
    if image.shape[:2] != heat.shape:
        raise ValueError(f"image {image.shape[:2]} and map {heat.shape} differ in size")
    palette, opacity = blend_table(colormap, float(alpha))
    out = np.empty_like(image, dtype=np.uint8)
    for top in range(0, image.shape[0], _STRIP_ROWS):
        rows = slice(top, top + _STRIP_ROWS)
        level = Image.fromarray((heat[rows] * 255.0 + 0.5).astype(np.uint8))  # (h, W) "L", heat in [0, 1]
        mask = level.point(opacity)  # (h, W) opacity of the colour
        level.putpalette(palette)  # "P": each level is its colour
        photo = Image.fromarray(np.ascontiguousarray(image[rows]))  # (h, W, 3)
        out[rows] = np.asarray(Image.composite(level.convert("RGB"), photo, mask))
    return out
