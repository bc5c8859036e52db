"""Hostile inputs: a folder of every kind of odd file, property tests for scorers and renderer."""

from __future__ import annotations

import json
import os
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

from attnviz import render
from attnviz.attention.scorers import class_scorer
from attnviz.cli.app import main
from attnviz.errors import ComputeError
from attnviz.io.images import load_image
from attnviz.options import SCORER_MODES, Mode

from helpers import TINY


def _png_header_only(path: Path, width: int, height: int) -> None:
    """A PNG that claims to be width x height with no pixel data: a decompression bomb's calling card."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    path.write_bytes(
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"")) + chunk(b"IEND", b"")
    )


def build_corpus(root: Path) -> tuple[list[str], list[str]]:
    """Write good images in every mode and bad files of every kind; returns (good, bad) relative names."""
    rng = np.random.default_rng(0)
    rgb = Image.fromarray(rng.integers(0, 255, (40, 60, 3), dtype=np.uint8))
    good: dict[str, Image.Image | None] = {
        "mode_1.png": rgb.convert("1"),
        "mode_L.png": rgb.convert("L"),
        "mode_LA.png": rgb.convert("LA"),
        "mode_RGBA.png": rgb.convert("RGBA"),
        "mode_CMYK.jpg": rgb.convert("CMYK"),
        "mode_I16.png": Image.fromarray(rng.integers(0, 65535, (40, 60), dtype=np.uint16)),
        "mode_I.tif": Image.fromarray(rng.integers(0, 65535, (40, 60), dtype=np.int32)),
        "mode_F.tif": Image.fromarray(rng.random((40, 60), dtype=np.float32)),
        "tiny 1x1.png": Image.new("RGB", (1, 1), (200, 10, 10)),
        "strip 10000x10.png": Image.new("RGB", (10000, 10), (20, 200, 10)),
        "name with spaces.png": rgb,
    }
    palette = rgb.convert("P")
    palette.info["transparency"] = 0
    good["mode_P_transparent.png"] = palette
    for orientation in range(1, 9):
        exif = Image.Exif()
        exif[0x0112] = orientation
        rgb.save(root / f"exif_{orientation}.jpg", exif=exif)
    frames = [Image.new("RGB", (30, 20), c) for c in ((255, 0, 0), (0, 255, 0))]
    frames[0].save(root / "animated.gif", save_all=True, append_images=frames[1:])
    frames[0].save(root / "animated.webp", save_all=True, append_images=frames[1:])
    for name, image in good.items():
        assert image is not None
        image.save(root / name)
    rgb.save(root / "new\nline.png")
    rgb.save(os.fsdecode(os.fsencode(root) + b"/bytes-\xff\xfe.png"))
    names = [*good, *(f"exif_{o}.jpg" for o in range(1, 9)), "animated.gif", "animated.webp", "new\nline.png"]

    (root / "zero.jpg").write_bytes(b"")
    full = (root / "exif_1.jpg").read_bytes()
    (root / "truncated.jpg").write_bytes(full[: len(full) // 3])
    png = (root / "mode_L.png").read_bytes()
    (root / "truncated.png").write_bytes(png[: len(png) // 2])
    (root / "page.jpg").write_text("<!doctype html><html><body>404</body></html>")
    (root / "broken_link.jpg").symlink_to(root / "does-not-exist.jpg")
    _png_header_only(root / "bomb.png", 20000, 20000)
    bad = ["zero.jpg", "truncated.jpg", "truncated.png", "page.jpg", "broken_link.jpg", "bomb.png"]

    (root / "folder.jpg").mkdir()  # a folder named like an image: walked, not opened
    (root / "folder.jpg" / "inside.png").write_bytes(png)
    names.append("folder.jpg/inside.png")
    (root / "loop").mkdir()
    (root / "loop" / "again").symlink_to(root / "loop")  # a symlink loop: not followed
    return names, bad


def test_a_folder_of_hostile_files(tmp_path: Path, capsysbinary) -> None:  # type: ignore[no-untyped-def]
    root = tmp_path / "corpus"
    root.mkdir()
    good, bad = build_corpus(root)
    out = tmp_path / "out"
    code = main(["run", str(root), *TINY, "-o", str(out), "--json", "--max-pixels", "100000000"])
    stdout, stderr = capsysbinary.readouterr()
    err = stderr.decode(errors="replace")
    assert code == 1 and "Traceback" not in err
    records = [json.loads(line) for line in stdout.decode().splitlines()]
    failed = {Path(r["input"]).name for r in records if "error" in r}
    assert failed == set(bad), failed
    written = [r for r in records if "error" not in r]
    assert len(written) == len(good) + 1  # and the file whose name is not UTF-8
    for record in written:
        with Image.open(record["output"]) as im:
            im.load()
            with Image.open(record["input"]) as source:
                assert im.size in (source.size, source.size[::-1])  # EXIF rotations swap sides
    animated = next(r for r in written if r["input"].endswith("animated.gif"))
    assert animated["frames"] == 2 and animated["frame"] == 0
    error_lines = [line for line in err.splitlines() if line.startswith("attnviz: error:")]
    assert len(error_lines) == len(bad)
    assert not [p for p in out.rglob(".attnviz-*")]
    assert "bomb.png: 20000x20000 is 400,000,000 pixels, over the limit" in err


@pytest.mark.parametrize("orientation", range(1, 9))
def test_every_exif_orientation_puts_the_marker_top_left(tmp_path: Path, orientation: int) -> None:
    # draw a red block top-left of the upright picture, then store it as the camera would for this orientation
    upright = np.zeros((40, 60, 3), np.uint8)
    upright[:10, :10] = (255, 0, 0)
    stored = Image.fromarray(upright)
    inverse = {
        2: Image.Transpose.FLIP_LEFT_RIGHT,
        3: Image.Transpose.ROTATE_180,
        4: Image.Transpose.FLIP_TOP_BOTTOM,
        5: Image.Transpose.TRANSPOSE,
        6: Image.Transpose.ROTATE_90,
        7: Image.Transpose.TRANSVERSE,
        8: Image.Transpose.ROTATE_270,
    }
    if orientation in inverse:
        stored = stored.transpose(inverse[orientation])
    exif = Image.Exif()
    exif[0x0112] = orientation
    path = tmp_path / "o.png"
    stored.save(path, exif=exif)
    loaded = np.asarray(load_image(path).image)
    assert loaded.shape == (40, 60, 3)
    assert loaded[:10, :10, 0].mean() > 200 and loaded[-10:, -10:, 0].mean() < 50


@settings(max_examples=60, deadline=None)
@given(
    mode=st.sampled_from(SCORER_MODES),
    rows=st.integers(1, 12),
    cols=st.integers(1, 12),
    scale=st.sampled_from([0.0, 1e-6, 1.0, 1e4, 1e12, 1e30]),
    constant=st.booleans(),
)
def test_scorers_are_total(mode: Mode, rows: int, cols: int, scale: float, constant: bool) -> None:
    generator = torch.Generator().manual_seed(rows * 13 + cols)
    classes = torch.randn(6, 5, generator=generator)
    scorer = class_scorer(mode, classes, feature_bound=4.0)
    h = torch.ones(1, rows * cols, 5) if constant else torch.rand(1, rows * cols, 5, generator=generator)
    out = scorer(h * scale, classes[:1])
    assert torch.isfinite(out.weights).all() and torch.isfinite(out.scores).all()
    assert float(out.weights.detach().sum()) == pytest.approx(1.0, abs=1e-5)


def test_nan_features_are_a_clear_error() -> None:
    scorer = class_scorer(Mode.concat, torch.randn(4, 3), feature_bound=1.0)
    with pytest.raises(ComputeError, match="NaN or infinity"):
        scorer(torch.full((1, 4, 3), float("inf")), torch.ones(1, 3))


@settings(max_examples=60, deadline=None)
@given(
    rows=st.integers(1, 9),
    cols=st.integers(1, 9),
    width=st.integers(1, 300),
    height=st.integers(1, 300),
    values=st.sampled_from(["random", "constant", "huge", "tiny"]),
    interpolation=st.sampled_from(list(render.Interpolation)),
)
def test_renderer_is_total(rows: int, cols: int, width: int, height: int, values: str, interpolation: str) -> None:
    rng = np.random.default_rng(rows * 31 + cols)
    scores = {
        "random": rng.normal(size=(rows, cols)),
        "constant": np.full((rows, cols), 3.0),
        "huge": rng.normal(size=(rows, cols)) * 1e30,
        "tiny": rng.normal(size=(rows, cols)) * 1e-30,
    }[values].astype(np.float32)
    shown = render.display_map(scores)
    assert np.isfinite(shown).all() and shown.min() >= 0 and shown.max() <= 1
    heat = render.upsample(shown, width, height, interpolation)
    assert heat.shape == (height, width) and np.isfinite(heat).all()
    image = rng.integers(0, 255, (height, width, 3), dtype=np.uint8)
    out = render.overlay(image, heat)
    assert out.shape == image.shape and out.dtype == np.uint8
