"""From scores to pictures: display range, smoothing, colour, blending, captions and comparison figures.

The pure functions most callers want are re-exported here: `render.draw_map`, `render.overlay`, ...
"""

from attnviz.options import DEFAULT_ALPHA, DEFAULT_COLORMAP, DEFAULT_SMOOTH, Interpolation
from attnviz.render.maps import display_map, draw_map, gaussian_blur, peak, upsample
from attnviz.render.overlay import blend_table, check_style, colormap_lut, overlay

__all__ = [
    "DEFAULT_ALPHA",
    "DEFAULT_COLORMAP",
    "DEFAULT_SMOOTH",
    "Interpolation",
    "blend_table",
    "check_style",
    "colormap_lut",
    "display_map",
    "draw_map",
    "gaussian_blur",
    "overlay",
    "peak",
    "upsample",
]
