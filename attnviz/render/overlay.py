"""Colour and blending: a map laid over the photo, with an opacity that follows the map."""

from __future__ import annotations

from functools import lru_cache

import numpy as np
from PIL import Image

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


#: Rows blended at a time: temporaries stay under about 10 MB per 1000 px of width however tall the photo.
_STRIP_ROWS = 1024


@lru_cache(maxsize=32)
def blend_table(colormap: str, alpha: float) -> tuple[bytes, tuple[int, ...]]:
    """Per map level (0-255): its colour (a 256-entry RGB palette) and its opacity over the photo (0-255)."""
    opacity = np.rint(np.linspace(0.0, 1.0, 256) * alpha * 255).astype(np.uint8)  # (256,)
    return colormap_lut(colormap).tobytes(), tuple(int(o) for o in opacity)


def overlay_image(
    photo: Image.Image, heat: np.ndarray, colormap: str = DEFAULT_COLORMAP, alpha: float = DEFAULT_ALPHA
) -> Image.Image:
    """Blend a colour-mapped (H, W) heat map in [0, 1] over an RGB Pillow image; returns a new RGB image.

    Opacity follows the map (alpha * heat): where the network does not look, the photo stays as it was, instead
    of the whole picture being tinted as a fixed 50/50 blend does. The map's levels index a palette (colour) and a
    table (opacity), and Pillow composites the two in C, straight from the decoded image: no copy of the photo
    into numpy and back. 5 ms for a 1024 x 768 photo on one core, against 17 ms for the same blend in numpy.
    """
    check_style(colormap, alpha)
    if photo.mode != "RGB" or (photo.height, photo.width) != heat.shape:
        raise ValueError(f"image {photo.mode} {photo.height}x{photo.width} and map {heat.shape} differ")
    palette, opacity = blend_table(colormap, float(alpha))
    if photo.height <= _STRIP_ROWS:
        return _blend(photo, heat, palette, opacity)
    out = Image.new("RGB", photo.size)
    for top in range(0, photo.height, _STRIP_ROWS):
        box = (0, top, photo.width, min(photo.height, top + _STRIP_ROWS))
        out.paste(_blend(photo.crop(box), heat[top : box[3]], palette, opacity), box)
    return out


def _blend(photo: Image.Image, heat: np.ndarray, palette: bytes, opacity: tuple[int, ...]) -> Image.Image:
    level = Image.fromarray((heat * 255.0 + 0.5).astype(np.uint8))  # (h, W) "L", heat in [0, 1]
    mask = level.point(opacity)  # (h, W) opacity of the colour
    level.putpalette(palette)  # "P": each level is its colour
    return Image.composite(level.convert("RGB"), photo, mask)


def overlay(
    image: np.ndarray, heat: np.ndarray, colormap: str = DEFAULT_COLORMAP, alpha: float = DEFAULT_ALPHA
) -> np.ndarray:
    """`overlay_image` on an (H, W, 3) uint8 RGB array; returns a new uint8 RGB array."""
    if image.shape[:2] != heat.shape:
        raise ValueError(f"image {image.shape[:2]} and map {heat.shape} differ in size")
    return np.asarray(overlay_image(Image.fromarray(np.ascontiguousarray(image)), heat, colormap, alpha))
