from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from attnviz.errors import InputError
from attnviz.io.images import load_image, to_rgb


def save(path: Path, image: Image.Image, **options: Any) -> Path:
    image.save(path, **options)
    return path


def test_exif_orientation_is_applied(tmp_path: Path) -> None:
    pixels = np.zeros((20, 40, 3), np.uint8)
    pixels[:, :20] = (255, 0, 0)  # left half red
    exif = Image.Exif()
    exif[0x0112] = 6  # stored rotated: display needs a 90 degree clockwise turn
    path = save(tmp_path / "rot.jpg", Image.fromarray(pixels), exif=exif, quality=95)
    loaded = load_image(path).image
    assert loaded.size == (20, 40)
    top = np.asarray(loaded)[:5].mean(axis=(0, 1))
    assert top[0] > 200 and top[2] < 60  # the red half is now on top


@pytest.mark.parametrize("mode", ["1", "L", "LA", "P", "RGBA", "CMYK", "I", "I;16", "F", "RGB"])
def test_every_mode_becomes_rgb(mode: str) -> None:
    rgb = Image.fromarray(np.random.default_rng(0).integers(0, 255, (8, 9, 3), dtype=np.uint8))
    image = (
        rgb.convert(mode)
        if mode not in ("I;16", "F", "I")
        else Image.fromarray(
            {
                "I;16": np.full((8, 9), 40000, np.uint16),
                "I": np.full((8, 9), 60000, np.int32),
                "F": np.full((8, 9), 0.5, np.float32),
            }[mode]  # type: ignore[arg-type]
        )
    )
    out = to_rgb(image)
    assert out.mode == "RGB" and out.size == (9, 8)
    if mode in ("I;16", "I"):
        assert 130 <= np.asarray(out).mean() <= 240  # scaled from 16 bits, not clipped to white


def test_transparency_is_laid_over_white() -> None:
    clear = Image.new("RGBA", (3, 3), (0, 0, 0, 0))
    assert (np.asarray(to_rgb(clear)) == 255).all()
    palette = Image.new("P", (2, 2), 0)
    palette.info["transparency"] = 0
    assert (np.asarray(to_rgb(palette)) == 255).all()


def test_animated_gif_uses_the_first_frame(tmp_path: Path) -> None:
    frames = [Image.new("RGB", (6, 6), c) for c in ((255, 0, 0), (0, 0, 255))]
    path = tmp_path / "anim.gif"
    frames[0].save(path, save_all=True, append_images=frames[1:])
    loaded = load_image(path)
    assert loaded.frames == 2
    assert np.asarray(loaded.image)[0, 0, 0] > 200


def test_errors_name_the_file(tmp_path: Path) -> None:
    with pytest.raises(InputError, match=r"missing\.jpg: no such file"):
        load_image(tmp_path / "missing.jpg")
    (tmp_path / "dir.jpg").mkdir()
    with pytest.raises(InputError, match=r"dir\.jpg: is a folder"):
        load_image(tmp_path / "dir.jpg")
    (tmp_path / "text.jpg").write_text("<html>not a picture</html>")
    with pytest.raises(InputError, match=r"text\.jpg: not an image file"):
        load_image(tmp_path / "text.jpg")
    (tmp_path / "empty.png").write_bytes(b"")
    with pytest.raises(InputError, match=r"empty\.png: not an image file"):
        load_image(tmp_path / "empty.png")
    (tmp_path / "link.jpg").symlink_to(tmp_path / "gone.jpg")
    with pytest.raises(InputError, match=r"link\.jpg: broken symbolic link"):
        load_image(tmp_path / "link.jpg")


def test_truncated_image_is_an_input_error(tmp_path: Path) -> None:
    buffer = io.BytesIO()
    Image.fromarray(np.random.default_rng(1).integers(0, 255, (64, 64, 3), dtype=np.uint8)).save(buffer, "PNG")
    path = tmp_path / "cut.png"
    path.write_bytes(buffer.getvalue()[: len(buffer.getvalue()) // 2])
    with pytest.raises(InputError, match=r"cut\.png: cannot decode image"):
        load_image(path)


def test_pixel_limit(tmp_path: Path) -> None:
    path = save(tmp_path / "big.png", Image.new("RGB", (100, 100)))
    with pytest.raises(InputError, match=r"big\.png: 100x100 is 10,000 pixels, over the limit of 9,999"):
        load_image(path, max_pixels=9_999)
    assert load_image(path, max_pixels=10_000).image.size == (100, 100)
