from __future__ import annotations

import io
import os
import stat
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from attnviz.io import png
from attnviz.io.png import encode_png


@pytest.fixture(params=["isal", "zlib"])
def backend(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Both deflate back-ends: ISA-L where installed, and the zlib fallback used where it is not."""
    if request.param == "zlib":
        monkeypatch.setattr(png, "_isal", None)
    elif png._isal is None:  # a hard dependency (pyproject.toml): missing means a broken install, not a skip
        pytest.fail("isal is not installed: pip install -e . installs it")
    return str(request.param)


@pytest.mark.parametrize("shape", [(1, 1), (1, 7), (5, 1), (48, 64), (3, 1000)])
def test_png_round_trips_exactly(shape: tuple[int, int], backend: str) -> None:
    pixels = np.random.default_rng(sum(shape)).integers(0, 256, (*shape, 3), dtype=np.uint8)
    with Image.open(io.BytesIO(encode_png(pixels))) as im:
        assert im.format == "PNG" and im.mode == "RGB" and im.size == (shape[1], shape[0])
        assert np.array_equal(np.asarray(im), pixels)


def test_png_refuses_other_arrays() -> None:
    with pytest.raises(ValueError, match=r"expected \(H, W, 3\) uint8 pixels"):
        encode_png(np.zeros((4, 4), np.uint8))
    with pytest.raises(ValueError, match="uint8"):
        encode_png(np.zeros((4, 4, 3), np.float32))


def test_png_of_a_smooth_picture_is_compressed(backend: str) -> None:
    ramp = np.broadcast_to(np.arange(256, dtype=np.uint8)[None, :, None], (64, 256, 3))  # (64, 256, 3)
    data = encode_png(ramp)
    assert len(data) < ramp.nbytes / 5  # Huffman alone needs at least a bit a byte
    with Image.open(io.BytesIO(data)) as im:
        assert np.array_equal(np.asarray(im), ramp)


@pytest.mark.parametrize("umask", [0o022, 0o077])
def test_written_files_get_the_permissions_a_plain_open_gives(tmp_path: Path, umask: int) -> None:
    """Outputs go through a temporary file, but end with 0666 less the umask, as `open()` would give them, and no
    temporary is left beside them; an existing file is refused, not replaced."""
    from attnviz.errors import OutputError
    from attnviz.io.outputs import write_bytes

    before = os.umask(umask)
    try:
        write_bytes(tmp_path / "a.png", b"data")
    finally:
        os.umask(before)
    assert stat.S_IMODE((tmp_path / "a.png").stat().st_mode) == 0o666 & ~umask
    with pytest.raises(OutputError, match="already exists"):
        write_bytes(tmp_path / "a.png", b"other")
    assert (tmp_path / "a.png").read_bytes() == b"data"
    assert [p.name for p in tmp_path.iterdir()] == ["a.png"]
