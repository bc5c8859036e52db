"""Pure functions from attention scores to pictures: display map, upsampling, colour and blending."""

from __future__ import annotations

from enum import Enum
from functools import lru_cache

import numpy as np
import torch
import torch.nn.functional as F

from attnviz.errors import ComputeError, UsageError

#: Turbo: a rainbow made perceptually smooth (unlike jet), and its blue-to-red reads on warm and cool photos alike.
DEFAULT_COLORMAP = "turbo"
DEFAULT_ALPHA = 0.7


class Interpolation(str, Enum):
    nearest = "nearest"
    bilinear = "bilinear"
    bicubic = "bicubic"


def display_map(scores: np.ndarray) -> np.ndarray:
    """(H', W') scores -> (H', W') values in [0, 1] for display: the median cell maps to 0, the best cell to 1.

    Softmax weights are exponential in the scores, so drawn directly they show one hot cell. The scores are the
    log-weights up to a constant, so scaling them draws the same ranking with the contrast of a CAM. Starting at
    the median rather than the minimum leaves the less attended half of the picture untinted. A map with no
    preferred cell is drawn as all zeros rather than divided by zero.
    """
    scores = np.asarray(scores, dtype=np.float32)
    if not np.isfinite(scores).all():
        raise ComputeError("attention scores contain NaN or infinity")
    low, high = float(np.median(scores)), float(scores.max())
    if high - low <= 1e-6 * max(1.0, abs(high)):
        low = float(scores.min())
    if high - low <= 1e-6 * max(1.0, abs(high)):
        return np.zeros_like(scores)
    return np.clip((scores - low) / (high - low), 0.0, 1.0)


def upsample(
    grid: np.ndarray, width: int, height: int, mode: Interpolation | str = Interpolation.bilinear
) -> np.ndarray:
    """(H', W') -> (height, width) float32, with cell centres landing on the centres of their image regions."""
    mode = Interpolation(mode)
    tensor = torch.from_numpy(np.ascontiguousarray(grid, dtype=np.float32))[None, None]  # (1, 1, H', W')
    if mode is Interpolation.nearest:
        out = F.interpolate(tensor, size=(height, width), mode="nearest")
    else:
        out = F.interpolate(tensor, size=(height, width), mode=mode.value, align_corners=False)
    return out[0, 0].clamp_(0.0, 1.0).numpy()  # bicubic overshoots; the map stays in [0, 1]


#: Default smoothing of the drawn map: Gaussian sigma as a share of the picture's shorter side. Chosen on masked
#: single photos (scripts/display_study.py): the peak lands on the object for 0.97 of them against 0.80 unsmoothed,
#: with 1.05 regions above half the peak against 1.08, for 0.42 of the drawn mass inside the object against 0.45.
DEFAULT_SMOOTH = 0.04
#: The grid is smoothed at this many times its own resolution, then resized to the picture: the same map as
#: smoothing at the picture's size (measured), at a cost that does not grow with the photo.
_SMOOTH_ZOOM = 8


def gaussian_blur(grid: np.ndarray, sigma: float) -> np.ndarray:
    """(h, w) float32 -> the same size, blurred with a separable Gaussian of `sigma` pixels (edges replicated)."""
    radius = max(1, int(3 * sigma))
    offsets = torch.arange(-radius, radius + 1, dtype=torch.float32)
    kernel = torch.exp(-(offsets**2) / (2 * sigma**2))
    kernel /= kernel.sum()
    t = torch.from_numpy(np.ascontiguousarray(grid, dtype=np.float32))[None, None]  # (1, 1, h, w)
    t = F.conv2d(F.pad(t, (radius, radius, 0, 0), mode="replicate"), kernel.reshape(1, 1, 1, -1))
    t = F.conv2d(F.pad(t, (0, 0, radius, radius), mode="replicate"), kernel.reshape(1, 1, -1, 1))
    return t[0, 0].numpy()


def draw_map(
    scores: np.ndarray,
    width: int,
    height: int,
    interpolation: Interpolation | str = Interpolation.bilinear,
    smooth: float = DEFAULT_SMOOTH,
) -> np.ndarray:
    """(H', W') scores -> (height, width) map in [0, 1], peak 1: what `attnviz run` draws.

    A cell's score is drawn as evidence spread over its neighbourhood, not as a hard tile: with `smooth` > 0 the
    map is blurred (sigma = `smooth` x the shorter side), so its peak sits where the evidence is densest rather than
    on one hot cell at an object's edge, and an object reads as one region. `nearest` shows the cells as they are.
    """
    grid = display_map(scores)
    interpolation = Interpolation(interpolation)
    if smooth <= 0 or interpolation is Interpolation.nearest or not grid.any():
        return upsample(grid, width, height, interpolation)
    rows, cols = grid.shape
    fine = upsample(grid, cols * _SMOOTH_ZOOM, rows * _SMOOTH_ZOOM, interpolation)  # (8 H', 8 W')
    fine = gaussian_blur(fine, smooth * min(fine.shape))
    fine /= max(float(fine.max()), 1e-12)
    return upsample(fine, width, height, Interpolation.bilinear)


@lru_cache(maxsize=8)
def colormap_lut(name: str) -> np.ndarray:
    """(256, 3) uint8 colours of a matplotlib colormap."""
    import matplotlib

    try:
        cmap = matplotlib.colormaps[name]
    except KeyError:
        raise UsageError(f"unknown colormap {name!r}; try inferno, viridis, magma, plasma, turbo or jet") from None
    return np.round(cmap(np.linspace(0.0, 1.0, 256))[:, :3] * 255).astype(np.uint8)


def peak(heat: np.ndarray) -> tuple[int, int]:
    """(x, y) pixel of the map's maximum."""
    y, x = np.unravel_index(int(np.argmax(heat)), heat.shape)
    return int(x), int(y)


#: Rows blended at a time: keeps temporaries to a few MB however large the photo.
_STRIP_ROWS = 256
#: Opacity steps (7 bits): blending runs in 16-bit integers, exact to half a grey level.
_OPACITY_ONE = 128


@lru_cache(maxsize=32)
def blend_table(colormap: str, alpha: float) -> np.ndarray:
    """(256,) uint64: per map level, four uint16 packed as one word so one gather fetches them all.

    Unpacked (256, 4): colour added (r, g, b) and share of the photo kept, with
    out = (photo * keep + add + 64) >> 7, keep + opacity = 128, add = colour * opacity.
    """
    opacity = np.rint(np.linspace(0.0, 1.0, 256) * alpha * _OPACITY_ONE).astype(np.uint16)  # (256,)
    table = np.empty((256, 4), np.uint16)
    table[:, :3] = colormap_lut(colormap).astype(np.uint16) * opacity[:, None] + _OPACITY_ONE // 2
    table[:, 3] = _OPACITY_ONE - opacity
    return table.view(np.uint64).reshape(256)


def overlay(
    image: np.ndarray, heat: np.ndarray, colormap: str = DEFAULT_COLORMAP, alpha: float = DEFAULT_ALPHA
) -> np.ndarray:
    """Blend a colour-mapped heat map over an (H, W, 3) uint8 RGB image; returns a new uint8 RGB image.

    Opacity follows the map (alpha * heat): where the network does not look, the photo stays as it was, instead
    of the whole picture being tinted as a fixed 50/50 blend does. Integer arithmetic on strips of rows: an
    80-megapixel photo needs no full-size float copies, and a 1024 x 768 one takes a few milliseconds.
    """
    if not 0.0 <= alpha <= 1.0:
        raise UsageError(f"--alpha must be between 0 and 1, got {alpha}")
    if image.shape[:2] != heat.shape:
        raise ValueError(f"image {image.shape[:2]} and map {heat.shape} differ in size")
    table = blend_table(colormap, float(alpha))
    out = np.empty_like(image, dtype=np.uint8)
    for top in range(0, image.shape[0], _STRIP_ROWS):
        rows = slice(top, top + _STRIP_ROWS)
        level = (heat[rows] * 255.0 + 0.5).astype(np.uint8)  # (h, W), heat in [0, 1]
        entry = table[level].view(np.uint16).reshape(*level.shape, 4)  # (h, W, 4): add r, g, b, keep
        strip = image[rows].astype(np.uint16)  # (h, W, 3)
        strip *= entry[..., 3:]
        strip += entry[..., :3]
        strip >>= 7
        out[rows] = strip
    return out
