"""From scores to a map in [0, 1] at the picture's size: display range, smoothing, upsampling, peak."""

from __future__ import annotations

from functools import lru_cache

import numpy as np
import torch
import torch.nn.functional as F

from attnviz.errors import ComputeError
from attnviz.options import DEFAULT_SMOOTH, Interpolation


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


#: The grid is smoothed at this many times its own resolution, then resized to the picture: the same map as
#: smoothing at the picture's size (measured), at a cost that does not grow with the photo.
_SMOOTH_ZOOM = 8


def _gaussian_kernel(sigma: float) -> torch.Tensor:
    """(2r + 1,) normalised Gaussian taps, r = 3 sigma (at least 1)."""
    radius = max(1, int(3 * sigma))
    offsets = torch.arange(-radius, radius + 1, dtype=torch.float32)
    kernel = torch.exp(-(offsets**2) / (2 * sigma**2))
    return kernel / kernel.sum()


def _blur_rows(t: torch.Tensor, sigma: float) -> torch.Tensor:
    """(N, 1, h, w) -> the same, each column blurred along h by a Gaussian of `sigma` pixels (edges replicated)."""
    kernel = _gaussian_kernel(sigma)
    radius = len(kernel) // 2
    return F.conv2d(F.pad(t, (0, 0, radius, radius), mode="replicate"), kernel.reshape(1, 1, -1, 1))


def gaussian_blur(grid: np.ndarray, sigma: float) -> np.ndarray:
    """(h, w) float32 -> the same size, blurred with a separable Gaussian of `sigma` pixels (edges replicated)."""
    t = torch.from_numpy(np.ascontiguousarray(grid, dtype=np.float32))[None, None]  # (1, 1, h, w)
    t = _blur_rows(t.transpose(2, 3), sigma).transpose(2, 3)  # along w
    return _blur_rows(t, sigma)[0, 0].numpy()


def blur_operator(size: int, sigma: float) -> torch.Tensor:
    """(size, size): `gaussian_blur` along one axis as a matrix, column j the blur of a one at j, so a stack of
    maps is blurred in one product, B m B^T."""
    return _blur_rows(torch.eye(size).reshape(size, 1, size, 1), sigma)[:, 0, :, 0].T.contiguous()


@lru_cache(maxsize=32)
def _axis_operators(cells: int, pixels: int, sigma: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Along one axis, what the smoothed drawing does to each cell alone, as matrices: (8 cells, cells) for the
    blurred fine grid and (pixels, cells) for the picture (bilinear to 8x, Gaussian blur with edges replicated,
    bilinear to `pixels`). Built by running those very operations on one-hot columns."""
    eye = torch.eye(cells).reshape(cells, 1, cells, 1)  # (cells, 1, cells, 1): each cell alone
    fine = F.interpolate(eye, size=(cells * _SMOOTH_ZOOM, 1), mode="bilinear", align_corners=False)
    fine = _blur_rows(fine, sigma)
    drawn = F.interpolate(fine, size=(pixels, 1), mode="bilinear", align_corners=False)  # (cells, 1, pixels, 1)
    return fine[:, 0, :, 0].T.contiguous(), drawn[:, 0, :, 0].T.contiguous()


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
    if interpolation is Interpolation.bicubic:  # bicubic overshoots and is clamped: not a linear map of the grid
        rows, cols = grid.shape
        fine = upsample(grid, cols * _SMOOTH_ZOOM, rows * _SMOOTH_ZOOM, interpolation)  # (8 H', 8 W')
        fine = gaussian_blur(fine, smooth * min(fine.shape))
        fine /= max(float(fine.max()), 1e-12)
        return upsample(fine, width, height, Interpolation.bilinear)
    return _smooth_bilinear(grid, width, height, smooth)


def _smooth_bilinear(grid: np.ndarray, width: int, height: int, smooth: float) -> np.ndarray:
    """The bilinear smoothed drawing (bilinear to 8x the grid, blur, peak to 1, bilinear to the picture) as the
    linear map it is: per axis one matrix, so the picture is R_y G R_x^T, two small products (0.2 ms at 640 x 480
    against 1.6 ms for the same operations on images). Equal to them to float rounding (tested)."""
    rows, cols = grid.shape
    sigma = smooth * _SMOOTH_ZOOM * min(rows, cols)  # the blur's sigma on the 8x grid
    fine_y, draw_y = _axis_operators(rows, height, sigma)  # (8 H', H'), (height, H')
    fine_x, draw_x = _axis_operators(cols, width, sigma)  # (8 W', W'), (width, W')
    g = torch.from_numpy(np.ascontiguousarray(grid, dtype=np.float32))  # (H', W')
    # torch, not numpy: its matmul keeps to a lane's thread count, where OpenBLAS would start threads of its own
    top = float((fine_y @ g @ fine_x.T).max())  # the fine grid's peak, which the drawing scales to 1
    heat = (draw_y @ g) @ draw_x.T  # (height, width)
    return heat.mul_(1.0 / max(top, 1e-12)).clamp_(0.0, 1.0).numpy()


def peak(heat: np.ndarray) -> tuple[int, int]:
    """(x, y) pixel of the map's maximum."""
    y, x = np.unravel_index(int(np.argmax(heat)), heat.shape)
    return int(x), int(y)
