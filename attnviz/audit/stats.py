"""What one map says on its own: where its peak falls, how much sits at the border, how spread it is; the flags.

Every statistic is computed on the grid's attention weights (summing to 1), not on the drawn picture, so it does not
depend on colours, smoothing or the photo's size. `STATS` and `FLAGS` are the report's columns and filters, with
the help text the page shows.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np
from PIL import Image

#: Side of the common grid every map is resampled to before maps of different sizes are compared.
COMMON_GRID = 16
#: Blur of the common maps, in its cells (2 = 12.5% of the side): two maps peaking in neighbouring cells are the
#: same strategy, though sharp peaks make their cells disjoint. Measured on the planted tag (scripts/shortcut.py):
#: blurred by 1 cell its 29 photos fell into 3 strategies, by 1.5, 2 or 3 cells into one.
COMMON_BLUR = 2.0
#: Width of the border band, as a share of the picture's width and height.
BORDER_BAND = 0.1
#: Below this probability of its own class, an image is flagged as doubtful.
LOW_PROB = 0.3
#: A strategy holding at most this share of its class's images is "small": the possible shortcut.
SMALL_SHARE = 0.2
#: ... and at most this share of the class's largest strategy: six strategies of 16% each are not shortcuts.
SMALL_OF_LARGEST = 0.5
#: Outliers lie beyond the upper Tukey fence of their class's distances: Q3 + this many interquartile ranges.
OUTLIER_FENCE = 1.5

STATS = [
    {"key": "border", "label": "border mass", "help": f"share of the map's mass in the outer {BORDER_BAND:.0%} band"},
    {"key": "entropy", "label": "spread", "help": "entropy of the map: 0 one cell, 1 uniform over the grid"},
    {"key": "distance", "label": "distance", "help": "Hellinger distance from the map to its strategy's mean map"},
    {"key": "peak_x", "label": "peak x", "help": "where the map peaks: 0 left edge, 1 right edge"},
    {"key": "peak_y", "label": "peak y", "help": "where the map peaks: 0 top edge, 1 bottom edge"},
]
FLAGS = [
    {"key": "border_peak", "label": "peak at border", "help": f"the peak cell lies in the outer {BORDER_BAND:.0%}"},
    {
        "key": "small_strategy",
        "label": "small strategy",
        "help": f"its strategy holds at most {SMALL_SHARE:.0%} of its class and half its largest strategy: "
        "a possible shortcut",
    },
    {
        "key": "fixed_evidence",
        "label": "fixed place",
        "help": "its strategy comes first in its class: its evidence stays in one place from image to image "
        "(a tag, a watermark, a frame), unlike an object's",
    },
    {"key": "low_prob", "label": "low probability", "help": f"its class's probability is under {LOW_PROB}"},
    {
        "key": "outlier",
        "label": "outlier",
        "help": f"farther from its strategy's mean than Q3 + {OUTLIER_FENCE} IQR of its class",
    },
]


@dataclass(frozen=True)
class MapStats:
    peak_x: float
    peak_y: float
    border: float
    entropy: float
    border_peak: bool


def grid_of(weights: list[float] | np.ndarray, grid: tuple[int, int] | list[int]) -> np.ndarray:
    """A record's flat row-major weights as a (rows, cols) float64 map summing to 1."""
    rows, cols = int(grid[0]), int(grid[1])
    values = np.asarray(weights, dtype=np.float64).reshape(rows, cols).clip(min=0)
    total = values.sum()
    return values / total if total > 0 else np.full((rows, cols), 1.0 / (rows * cols))


def border_mask(rows: int, cols: int, band: float = BORDER_BAND) -> np.ndarray:
    """(rows, cols) True for the cells whose centre lies within `band` of an edge."""
    y = (np.arange(rows) + 0.5) / rows
    x = (np.arange(cols) + 0.5) / cols
    return ((y < band) | (y > 1 - band))[:, None] | ((x < band) | (x > 1 - band))[None, :]


def map_stats(weights: np.ndarray) -> MapStats:
    """(rows, cols) weights summing to 1 -> the statistics that need no other map."""
    rows, cols = weights.shape
    i, j = np.unravel_index(int(np.argmax(weights)), weights.shape)
    band = border_mask(rows, cols)
    positive = weights[weights > 0]
    entropy = float(-(positive * np.log(positive)).sum() / np.log(rows * cols)) if rows * cols > 1 else 0.0
    return MapStats(
        peak_x=(j + 0.5) / cols,
        peak_y=(i + 0.5) / rows,
        border=float(weights[band].sum()),
        entropy=entropy,
        border_peak=bool(band[i, j]),
    )


def resample(weights: np.ndarray, side: int = COMMON_GRID) -> np.ndarray:
    """(rows, cols) weights -> (side, side) by area, summing to 1: maps of any aspect ratio become comparable."""
    picture = Image.fromarray(weights.astype(np.float32), mode="F")
    out = np.asarray(picture.resize((side, side), Image.Resampling.BOX), dtype=np.float64).clip(min=0)
    total = out.sum()
    return out / total if total > 0 else np.full((side, side), 1.0 / side**2)


def common_map(weights: np.ndarray) -> np.ndarray:
    """(rows, cols) weights -> the (COMMON_GRID, COMMON_GRID) blurred map, summing to 1, that maps are compared by."""
    return common_maps(resample(weights, COMMON_GRID)[None])[0]


def common_maps(maps: np.ndarray) -> np.ndarray:
    """(N, side, side) resampled maps -> `common_map` of each, for all at once: the blur is linear and separable,
    B m B^T (a blur per map costs 0.15 ms on one thread, and 10 ms where torch's threads wait on a busy machine)."""
    blur = _blur_matrix(maps.shape[-1])
    common = np.clip(blur @ maps @ blur.T, 0, None)
    return common / np.maximum(common.sum(axis=(1, 2), keepdims=True), 1e-12)


@lru_cache(maxsize=4)
def _blur_matrix(side: int) -> np.ndarray:
    from attnviz.render.maps import blur_operator

    return blur_operator(side, COMMON_BLUR).double().numpy()


def features(common: np.ndarray) -> np.ndarray:
    """(N, side, side) maps -> (N, side * side + 2 * side) square roots of the maps and of their row and column
    sums: Euclidean distance between them is a Hellinger distance (times sqrt 2), which weighs a moved peak more
    than noise in the near-empty cells, and the sums make evidence along one edge (a text strip, a frame's side)
    alike wherever along it the peak falls. Measured on scripts/planted.py's text strip: without the sums its 30
    photos fell into five strategies, the largest holding 9; with them 16 and 8 fell into two along the bottom."""
    n, side = len(common), common.shape[-1]
    maps = common.reshape(n, side, side)
    out = np.empty((n, side * side + 2 * side), dtype=np.result_type(common.dtype, np.float32))
    for start in range(0, n, 65536):  # written in place, a chunk at a time: no copy of the whole set
        part = maps[start : start + 65536]
        rows = out[start : start + 65536]
        np.sqrt(part.reshape(len(part), -1), out=rows[:, : side * side])
        np.sqrt(part.sum(2), out=rows[:, side * side : side * side + side])
        np.sqrt(part.sum(1), out=rows[:, side * side + side :])
    return out


def outliers(distances: np.ndarray) -> np.ndarray:
    """(N,) distances within one class -> True beyond the upper Tukey fence."""
    if len(distances) < 4:
        return np.zeros(len(distances), dtype=bool)
    q1, q3 = np.percentile(distances, [25, 75])
    return distances > q3 + OUTLIER_FENCE * (q3 - q1) + 1e-9
