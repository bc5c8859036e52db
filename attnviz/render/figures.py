"""A comparison figure for papers: the photo, then one attention overlay per scorer, and one shared colour bar.

Drawn with matplotlib's object API on the Agg canvas, never through pyplot, so it needs no display, touches no
global figure state and can run on several threads at once. The layout is computed in inches from the photo's
aspect ratio, so every panel has the same size and nothing is left to a layout engine that might overlap titles.

    panels = [Panel(m, e.target, e.heatmap) for m in ("dot", "concat") for e in [Explainer(mode=m).explain(im)]]
    save_figure(comparison_figure(im, panels), "compare.pdf")
"""

from __future__ import annotations

import io
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import matplotlib
import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.cm import ScalarMappable
from matplotlib.colors import Normalize
from matplotlib.figure import Figure
from matplotlib.font_manager import FontProperties
from PIL import Image

from attnviz import render
from attnviz.errors import UsageError
from attnviz.io.outputs import atomic_write
from attnviz.results import Prediction

#: Figure formats by extension, with their resolution: of the whole PNG, and of the pictures inside a PDF or SVG
#: (text and colour bar stay vectors), 300 dpi as journals ask of photographs; matplotlib's default would be 100.
FIGURE_FORMATS: dict[str, tuple[str, int]] = {
    ".png": ("png", 200),
    ".pdf": ("pdf", 300),
    ".svg": ("svg", 300),
}

MAX_COLUMNS = 4
LABEL_CHARS = 24  # "label (p=0.123)" stays on one line of a 3-inch column

# Geometry in inches.
COLUMN_WIDTH = 3.0
MARGIN = 0.04  # around the whole figure
GAP_X = 0.08  # between panels side by side
GAP_Y = 0.12  # between a row's pictures and the next row's titles
TITLE_HEIGHT = 0.42  # room for two lines of titles above each row
MAX_ASPECT = 1.5  # a panel is at most this many times as tall as it is wide; taller photos get narrower
BAR_GAP = 0.10  # pictures to colour bar
BAR_HEIGHT = 0.11
BAR_TEXT = 0.42  # tick labels and the bar's label below it

# Text in points.
TITLE_SIZE = 10.0
TITLE_PAD = 4.0  # picture top to the baseline of the lower title line
TITLE_LEADING = 1.3  # baseline to baseline, in font sizes
BAR_LABEL_SIZE = 9.0
BAR_TICK_SIZE = 8.5

#: A picture is drawn at most this many pixels on its longer side (a 3-inch panel at 200 dpi is 600 pixels), so a
#: 24-megapixel photo does not make a 100 MB PDF.
MAX_PIXELS_SIDE = 1200


@dataclass(frozen=True, eq=False)
class Panel:
    """One overlay of the figure: the scorer's name, the class it was asked about, and its map at the photo's size.

    `eq=False`: a map is an array, and arrays do not compare to one bool; panels compare by identity.
    """

    mode: str
    target: Prediction | None  # None: a backbone's map, which explains no class
    heatmap: np.ndarray  # (H, W) float32 in [0, 1], the photo's size


def short_label(label: str, limit: int = LABEL_CHARS) -> str:
    """`"tabby, tabby cat"` -> `"tabby"`: the first synonym, cut to `limit` characters with an ellipsis."""
    first = label.split(",")[0].strip() or label.strip()
    return first if len(first) <= limit else first[: limit - 1].rstrip() + "\u2026"


def format_prob(prob: float) -> str:
    """Three decimals; a probability too small for them in scientific notation rather than as `0.000`."""
    return f"{prob:.3f}" if prob >= 0.001 or prob == 0.0 else f"{prob:.1e}"


def mode_name(mode: str) -> str:
    return str(getattr(mode, "value", mode))  # a `Mode` is a str enum: draw "dot", not "Mode.dot"


def panel_title(panel: Panel) -> tuple[str, str]:
    """The two lines above an overlay: the scorer, then `label (p=0.123)`."""
    if panel.target is None:
        return mode_name(panel.mode), "no class (a backbone)"
    return mode_name(panel.mode), f"{short_label(panel.target.label)} (p={format_prob(panel.target.prob)})"


def _check_heatmap(index: int, panel: Panel, width: int, height: int) -> np.ndarray:
    heat = np.asarray(panel.heatmap)
    name = f"panel {index} ({mode_name(panel.mode)})"
    if heat.ndim != 2:
        raise ValueError(f"{name}: the heatmap must be a 2-D (height, width) array, got shape {heat.shape}")
    if heat.shape != (height, width):
        raise ValueError(
            f"{name}: the heatmap is {heat.shape[1]}x{heat.shape[0]} (w x h) but the image is {width}x{height}; "
            "draw the map at the image's size (Explanation.heatmap is)"
        )
    heat = heat.astype(np.float32, copy=False)
    if not np.isfinite(heat).all():
        raise ValueError(f"{name}: the heatmap contains NaN or infinity")
    if heat.min() < -1e-3 or heat.max() > 1 + 1e-3:
        raise ValueError(f"{name}: heatmap values must lie in [0, 1], got {heat.min():.3g} to {heat.max():.3g}")
    return np.clip(heat, 0.0, 1.0)


def _text_width(canvas: FigureCanvasAgg, text: str, size: float, weight: str = "normal") -> float:
    """Width in inches of one line of text as matplotlib will draw it."""
    renderer = canvas.get_renderer()
    font = FontProperties(size=size, weight=weight)
    width, _height, _descent = renderer.get_text_width_height_descent(text, font, ismath=False)
    return float(width) / canvas.figure.dpi


def _shrink(image: Image.Image, heats: list[np.ndarray]) -> tuple[Image.Image, list[np.ndarray]]:
    """Image and maps scaled together to at most `MAX_PIXELS_SIDE` on the longer side."""
    scale = MAX_PIXELS_SIDE / max(image.size)
    if scale >= 1.0:
        return image, heats
    size = (max(1, round(image.width * scale)), max(1, round(image.height * scale)))
    small = image.resize(size, Image.Resampling.LANCZOS, reducing_gap=3.0)
    maps = [
        np.clip(np.asarray(Image.fromarray(h, mode="F").resize(size, Image.Resampling.BILINEAR)), 0.0, 1.0)
        for h in heats
    ]
    return small, maps


def comparison_figure(
    image: Image.Image,
    panels: Sequence[Panel],
    *,
    colormap: str = render.DEFAULT_COLORMAP,
    alpha: float = render.DEFAULT_ALPHA,
    columns: int | None = None,
    title: str | None = None,
) -> Figure:
    """The photo titled `title` (default "input"), then one overlay per panel titled with its mode, class and
    probability, wrapped into rows of `columns` (default: all in one row, at most 4), over one colour bar.

    Raises `ValueError` for no panels, a bad `columns` or a map that is not the photo's size, and `UsageError`
    for an unknown colormap or an alpha outside [0, 1].
    """
    if not panels:
        raise ValueError("comparison_figure needs at least one panel")
    count = len(panels) + 1
    if columns is None:
        columns = min(MAX_COLUMNS, count)
    if isinstance(columns, bool) or not isinstance(columns, int) or columns < 1:
        raise ValueError(f"columns must be a positive integer, got {columns!r}")
    columns = min(columns, count)
    rows = math.ceil(count / columns)
    if not 0.0 <= alpha <= 1.0:
        raise UsageError(f"--alpha must be between 0 and 1, got {alpha}")
    render.colormap_lut(colormap)  # an unknown name is a UsageError, as on the command line
    cmap = matplotlib.colormaps[colormap]

    photo = image.convert("RGB")
    heats = [_check_heatmap(i, p, photo.width, photo.height) for i, p in enumerate(panels, start=1)]
    photo, heats = _shrink(photo, heats)
    pixels = np.asarray(photo)
    pictures = [pixels] + [render.overlay(pixels, heat, colormap, alpha) for heat in heats]
    titles = [("", title if title is not None else "input")] + [panel_title(p) for p in panels]

    # Geometry, in inches from the bottom left. A column is COLUMN_WIDTH wide, less where a tall photo's panels
    # are narrower, but never narrower than the widest title.
    figure = Figure(layout=None)
    canvas = FigureCanvasAgg(figure)
    title_w = max(
        max(_text_width(canvas, text, TITLE_SIZE), _text_width(canvas, heading, TITLE_SIZE, "bold"))
        for heading, text in titles
    )
    aspect = photo.height / photo.width
    pic_w = COLUMN_WIDTH - GAP_X
    pic_h = min(pic_w * aspect, pic_w * MAX_ASPECT)
    pic_w = pic_h / aspect
    cell_w = max(pic_w, min(title_w + GAP_X, COLUMN_WIDTH - GAP_X))
    width = 2 * MARGIN + columns * cell_w + (columns - 1) * GAP_X
    row_pitch = TITLE_HEIGHT + pic_h + GAP_Y
    bar_block = BAR_GAP + BAR_HEIGHT + BAR_TEXT
    height = MARGIN + bar_block + rows * row_pitch - GAP_Y + MARGIN
    figure.set_size_inches(width, height)

    grid_bottom = MARGIN + bar_block
    for k, (picture, (heading, text)) in enumerate(zip(pictures, titles, strict=True)):
        row, col = divmod(k, columns)
        left = MARGIN + col * (cell_w + GAP_X) + (cell_w - pic_w) / 2
        bottom = grid_bottom + (rows - 1 - row) * row_pitch
        ax = figure.add_axes((left / width, bottom / height, pic_w / width, pic_h / height))
        ax.imshow(picture, interpolation="antialiased", aspect="auto")
        ax.set_axis_off()
        # Two one-line texts on fixed baselines rather than one two-line title, whose lines matplotlib spaces by
        # their glyphs: "dot" and "general" would sit at different heights.
        ax.set_title(text, fontsize=TITLE_SIZE, pad=TITLE_PAD, parse_math=False)
        if heading:
            ax.annotate(
                heading,
                xy=(0.5, 1.0),
                xycoords="axes fraction",
                xytext=(0.0, TITLE_PAD + TITLE_LEADING * TITLE_SIZE),
                textcoords="offset points",
                ha="center",
                va="baseline",
                fontsize=TITLE_SIZE,
                fontweight="bold",
                parse_math=False,
            )

    # Under the middle columns, edge to edge with their pictures: all but the first and the last of three or
    # more, the overlay's of two, the only one of one.
    first, last = (1, columns - 2) if columns >= 3 else (columns - 1, columns - 1)
    bar_left = MARGIN + first * (cell_w + GAP_X) + (cell_w - pic_w) / 2
    bar_w = (last - first) * (cell_w + GAP_X) + pic_w
    bar_bottom = MARGIN + BAR_TEXT
    cax = figure.add_axes((bar_left / width, bar_bottom / height, bar_w / width, BAR_HEIGHT / height))
    bar = figure.colorbar(ScalarMappable(norm=Normalize(0.0, 1.0), cmap=cmap), cax=cax, orientation="horizontal")
    bar.set_ticks([0.0, 1.0], labels=["low", "high"])
    bar.ax.tick_params(labelsize=BAR_TICK_SIZE, length=2.5, width=0.6, pad=2.0)
    low, high = bar.ax.xaxis.get_major_ticks()[:2]
    low.label1.set_horizontalalignment("left")  # inside the bar's span, not hanging past the pictures' edges
    high.label1.set_horizontalalignment("right")
    bar.outline.set_linewidth(0.6)
    bar.set_label("attention (median \u2192 max)", fontsize=BAR_LABEL_SIZE, labelpad=2.0)
    return figure


def figure_format(path: str | os.PathLike[str]) -> tuple[str, int]:
    """matplotlib format and dpi for a figure path, by its extension."""
    suffix = Path(path).suffix.lower()
    if suffix not in FIGURE_FORMATS:
        raise UsageError(f"cannot tell the figure format from {os.fspath(path)!r}; use .png, .pdf or .svg")
    return FIGURE_FORMATS[suffix]


def save_figure(figure: Figure, path: str | os.PathLike[str], *, overwrite: bool = False) -> None:
    """Write `figure` as PNG (200 dpi), PDF or SVG (vectors, pictures at 300 dpi) by `path`'s extension, whole or
    not at all (a temporary file renamed into place).

    An existing file is an `OutputError` unless `overwrite`; an unknown extension is a `UsageError`.
    """
    fmt, dpi = figure_format(path)
    buffer = io.BytesIO()
    figure.savefig(buffer, format=fmt, dpi=dpi, bbox_inches="tight", pad_inches=0.03)
    data = buffer.getvalue()

    def write(handle: BinaryIO) -> None:
        handle.write(data)

    atomic_write(path, write, overwrite=overwrite)


__all__ = ["Panel", "comparison_figure", "figure_format", "save_figure", "short_label"]
