from __future__ import annotations

import numpy as np
import pytest

from attnviz import render
from attnviz.errors import ComputeError, UsageError


def test_display_map_runs_from_median_to_max() -> None:
    scores = np.array([[0.0, 1.0, 2.0], [3.0, 4.0, 6.0]], dtype=np.float32)  # median 2.5
    shown = render.display_map(scores)
    assert shown.max() == 1.0 and shown[1, 2] == 1.0
    assert (shown[0] == 0.0).all()  # at or below the median: untinted
    assert shown[1, 0] == pytest.approx(0.5 / 3.5)


def test_display_map_of_a_constant_map_is_blank_not_nan() -> None:
    assert (render.display_map(np.full((3, 4), 7.0)) == 0).all()


def test_display_map_of_a_two_level_map_uses_the_minimum() -> None:
    scores = np.array([[0.0, 0.0, 0.0, 1.0]])  # median == min: fall back to min-max
    assert render.display_map(scores).tolist() == [[0.0, 0.0, 0.0, 1.0]]


def test_display_map_refuses_nan() -> None:
    with pytest.raises(ComputeError, match="NaN"):
        render.display_map(np.array([[np.nan, 1.0]]))


@pytest.mark.parametrize("mode", list(render.Interpolation))
def test_upsample_fills_the_picture_and_keeps_the_hot_cell_in_place(mode: render.Interpolation) -> None:
    grid = np.zeros((3, 4), np.float32)
    grid[2, 1] = 1.0  # bottom row, second column
    heat = render.upsample(grid, 400, 300, mode)
    assert heat.shape == (300, 400) and heat.dtype == np.float32
    assert heat.min() >= 0.0 and heat.max() <= 1.0
    x, y = render.peak(heat)
    assert 100 <= x < 200 and 200 <= y < 300  # inside that cell's quarter-by-third of the picture


def test_overlay_leaves_unattended_pixels_untouched_and_is_rgb() -> None:
    image = np.full((2, 2, 3), 100, np.uint8)
    heat = np.array([[0.0, 1.0], [0.0, 0.0]], np.float32)
    out = render.overlay(image, heat, "Reds", alpha=1.0)
    assert out.dtype == np.uint8 and out.shape == (2, 2, 3)
    assert (out[0, 0] == 100).all() and (out[1, 1] == 100).all()
    r, g, b = out[0, 1]
    assert r > 100 and g < 100 and b < 100  # the hot pixel is red in the R channel: no BGR


def test_overlay_alpha_zero_is_the_photo() -> None:
    image = np.random.default_rng(0).integers(0, 255, (5, 6, 3), dtype=np.uint8)
    assert (render.overlay(image, np.ones((5, 6), np.float32), alpha=0.0) == image).all()


def test_overlay_checks_alpha_and_colormap() -> None:
    image, heat = np.zeros((2, 2, 3), np.uint8), np.zeros((2, 2), np.float32)
    with pytest.raises(UsageError, match="between 0 and 1"):
        render.overlay(image, heat, alpha=1.5)
    with pytest.raises(UsageError, match="unknown colormap 'nope'"):
        render.overlay(image, heat, colormap="nope")


def test_the_drawn_map_peaks_where_the_evidence_is_densest_not_on_one_hot_cell() -> None:
    from attnviz.options import DEFAULT_SMOOTH
    from attnviz.render.maps import draw_map

    scores = np.zeros((14, 19), np.float32)
    scores[2:9, 3:10] = 1.0  # a broad object
    scores[12, 17] = 1.2  # one hot cell in a corner
    raw = draw_map(scores, 190, 140, smooth=0)
    drawn = draw_map(scores, 190, 140)
    assert DEFAULT_SMOOTH > 0
    x, y = render.peak(raw)
    assert x > 160 and y > 110  # unsmoothed: the hot cell wins
    x, y = render.peak(drawn)
    assert 30 <= x < 100 and 20 <= y < 90  # smoothed: the object wins
    assert drawn.max() == pytest.approx(1.0) and drawn.min() >= 0.0
    np.testing.assert_array_equal(raw, render.upsample(render.display_map(scores), 190, 140))
    np.testing.assert_array_equal(
        draw_map(scores, 190, 140, "nearest"), render.upsample(render.display_map(scores), 190, 140, "nearest")
    )
    assert not draw_map(np.zeros((3, 4), np.float32), 40, 30).any()


@pytest.mark.parametrize(
    ("shape", "size", "smooth"), [((14, 19), (640, 480), 0.04), ((7, 5), (33, 101), 0.2), ((1, 9), (90, 8), 0.04)]
)
def test_the_smoothed_drawing_as_matrices_equals_the_image_operations(
    shape: tuple[int, int], size: tuple[int, int], smooth: float
) -> None:
    """`draw_map` computes the bilinear smoothed map as R_y G R_x^T; it must be the picture that upsampling to 8x,
    blurring, scaling the fine peak to 1 and upsampling to the photo give."""
    from attnviz.render.maps import _SMOOTH_ZOOM, display_map, draw_map, gaussian_blur, upsample

    scores = np.random.default_rng(sum(shape)).normal(size=shape).astype(np.float32)
    grid = display_map(scores)
    rows, cols = shape
    fine = gaussian_blur(upsample(grid, cols * _SMOOTH_ZOOM, rows * _SMOOTH_ZOOM), smooth * _SMOOTH_ZOOM * min(shape))
    expected = upsample(fine / fine.max(), *size)
    drawn = draw_map(scores, *size, smooth=smooth)
    assert drawn.shape == expected.shape and drawn.dtype == np.float32
    np.testing.assert_allclose(drawn, expected, atol=2e-6)


def test_the_built_in_turbo_table_is_matplotlibs() -> None:
    """The default colormap's table ships with attnviz (no matplotlib import on the default path): it must be the
    same colours matplotlib gives."""
    import matplotlib

    from attnviz.render.overlay import _TURBO

    expected = np.round(matplotlib.colormaps["turbo"](np.linspace(0.0, 1.0, 256))[:, :3] * 255).astype(np.uint8)
    assert np.frombuffer(_TURBO, np.uint8).reshape(256, 3).tolist() == expected.tolist()
    assert render.colormap_lut("turbo").tolist() == expected.tolist()


def test_drawing_with_the_default_colormap_does_not_import_matplotlib() -> None:
    import subprocess
    import sys

    code = (
        "import sys, numpy as np\n"
        "from attnviz.render.overlay import overlay\n"
        "overlay(np.zeros((4, 5, 3), np.uint8), np.ones((4, 5), np.float32))\n"
        "assert 'matplotlib' not in sys.modules, 'matplotlib was imported'\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_an_overlay_is_a_fresh_writable_array() -> None:
    image = np.zeros((4, 5, 3), np.uint8)
    out = render.overlay(image, np.ones((4, 5), np.float32))
    out[0, 0] = 7  # the caller owns it
    assert out.flags.writeable and (image == 0).all()
