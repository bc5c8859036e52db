"""scripts/planted_limits.py's measures, which issue 23's closing note quotes: a map's mass on the outer two rings of
cells, and the border cut away with the rest zoomed back."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scripts"))
import planted_limits


def record(weights: np.ndarray) -> dict[str, object]:
    return {"grid": list(weights.shape), "weights": weights.ravel().tolist()}


@pytest.mark.parametrize(
    ("cell", "expected"), [((0, 0), 1.0), ((1, 9), 1.0), ((2, 2), 0.0), ((7, 9), 0.0), ((11, 16), 0.0), ((12, 16), 1.0)]
)
def test_border_mass_counts_the_outer_two_rings_of_cells(cell: tuple[int, int], expected: float) -> None:
    weights = np.zeros((14, 19))
    weights[cell] = 3.0
    assert planted_limits.border_mass(record(weights)) == pytest.approx(expected)


def test_border_mass_of_an_even_map_is_the_rings_share_of_the_cells() -> None:
    assert planted_limits.border_mass(record(np.ones((14, 19)))) == pytest.approx(1 - 10 * 15 / (14 * 19))


def test_cropping_cuts_a_frame_away_and_keeps_the_size() -> None:
    photo = np.full((480, 640, 3), 40, np.uint8)
    photo[:24], photo[-24:], photo[:, :24], photo[:, -24:] = 200, 200, 200, 200  # (480, 640, 3): a 24-pixel frame
    out = planted_limits.cropped(Image.fromarray(photo), 0.06)
    assert out.size == (640, 480)
    assert int(np.asarray(out).max()) == 40
