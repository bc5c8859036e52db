"""A caption band under an overlay, so the file alone says what it explains: class, probability, mode, colour bar."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from attnviz.render.overlay import colormap_lut

if TYPE_CHECKING:
    from attnviz.results import Prediction

#: Band height as a share of the picture's shorter side, within these bounds in pixels.
_BAND_SHARE = 0.06
_BAND_MIN, _BAND_MAX = 22, 96
_INK, _PAPER = (20, 20, 20), (248, 248, 248)


def caption(target: Prediction | None, mode: str) -> str:
    """`espresso  p=0.687  (concat)`; of a list of synonyms (`tabby, tabby cat`) the first. A backbone's map,
    which explains no class, says only its mode: `attention (cls)`."""
    if target is None:
        return f"attention  ({mode})"
    label = target.label
    return f"{label.split(',')[0].strip() or label}  p={target.prob:.3f}  ({mode})"


def annotate(pixels: np.ndarray, text: str, colormap: str) -> np.ndarray:
    """(H, W, 3) uint8 overlay -> (H + band, W, 3): the overlay unchanged, then a band with `text` on the left and
    the colour bar (low to high attention) on the right."""
    height, width = pixels.shape[:2]
    band = int(min(_BAND_MAX, max(_BAND_MIN, round(min(height, width) * _BAND_SHARE))))
    canvas = Image.new("RGB", (width, height + band), _PAPER)
    canvas.paste(Image.fromarray(pixels), (0, 0))
    draw = ImageDraw.Draw(canvas)
    font = ImageFont.load_default(size=max(10, int(band * 0.6)))
    pad = band // 4
    bar_width = min(width // 3, band * 6)
    bar_left = width - pad - bar_width
    small = ImageFont.load_default(size=max(8, int(band * 0.4)))
    low_w = draw.textlength("low", font=small)
    high_w = draw.textlength("high", font=small)
    bar_left_inner = int(bar_left + low_w + pad)
    bar_right_inner = int(width - pad - high_w - pad)
    if bar_right_inner - bar_left_inner >= 16:  # a picture too narrow for a bar gets the caption alone
        colours = colormap_lut(colormap)[np.linspace(0, 255, bar_right_inner - bar_left_inner).astype(np.intp)]
        strip = np.broadcast_to(colours[None], (band - 2 * pad, len(colours), 3))
        canvas.paste(Image.fromarray(np.ascontiguousarray(strip)), (bar_left_inner, height + pad))
        middle = height + band // 2
        draw.text((bar_left, middle), "low", fill=_INK, font=small, anchor="lm")
        draw.text((width - pad, middle), "high", fill=_INK, font=small, anchor="rm")
        text_room = bar_left - 2 * pad
    else:
        text_room = width - 2 * pad
    while text and draw.textlength(text, font=font) > text_room:  # shorten a long class name to fit
        text = text[:-2] + "…" if len(text) > 2 else ""
    draw.text((pad, height + band // 2), text, fill=_INK, font=font, anchor="lm")
    return np.asarray(canvas)
