from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from attnviz.png import encode_png


@pytest.mark.parametrize("shape", [(1, 1), (1, 7), (5, 1), (48, 64), (3, 1000)])
def test_png_round_trips_exactly(shape: tuple[int, int]) -> None:
    pixels = np.random.default_rng(sum(shape)).integers(0, 256, (*shape, 3), dtype=np.uint8)
    with Image.open(io.BytesIO(encode_png(pixels))) as im:
        assert im.format == "PNG" and im.mode == "RGB" and im.size == (shape[1], shape[0])
        assert np.array_equal(np.asarray(im), pixels)


def test_png_refuses_other_arrays() -> None:
    with pytest.raises(ValueError, match=r"expected \(H, W, 3\) uint8 pixels"):
        encode_png(np.zeros((4, 4), np.uint8))
    with pytest.raises(ValueError, match="uint8"):
        encode_png(np.zeros((4, 4, 3), np.float32))
