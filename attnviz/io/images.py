"""Reading images: any file Pillow can open becomes an upright 8-bit RGB picture, or an `InputError`."""

from __future__ import annotations

import io
import os
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import numpy as np
from PIL import Image, ImageOps

from attnviz.errors import InputError
from attnviz.options import DEFAULT_MAX_PIXELS

#: Extensions treated as images when a folder is walked (explicit paths are opened whatever their name).
IMAGE_EXTENSIONS = frozenset(
    {".jpg", ".jpeg", ".png", ".webp", ".bmp", ".gif", ".tif", ".tiff", ".ppm", ".pgm", ".pbm", ".jfif"}
)


def use_own_pixel_limit() -> None:
    """Hand the decompression-bomb guard to `load_image`'s own, clearer `max_pixels` check.

    For the command line only: it changes Pillow for the whole process. A library caller keeps Pillow's guard as
    they set it, and `load_image` applies both.
    """
    Image.MAX_IMAGE_PIXELS = None


_DECODE_ERRORS = (OSError, ValueError, SyntaxError, EOFError, TypeError, IndexError)


@dataclass(frozen=True)
class LoadedImage:
    """An upright RGB image and what was noticed while reading it."""

    image: Image.Image
    path: str
    source_mode: str
    frames: int = 1


def is_image_name(path: Path) -> bool:
    return path.suffix.lower() in IMAGE_EXTENSIONS


def load_image(path: str | os.PathLike[str], max_pixels: int = DEFAULT_MAX_PIXELS) -> LoadedImage:
    """Open, orient and convert to RGB; every failure is an `InputError` naming the file."""
    name = os.fspath(path)
    if not os.path.exists(name):
        kind = "broken symbolic link" if os.path.islink(name) else "no such file"
        raise InputError(f"{name}: {kind}")
    if os.path.isdir(name):
        raise InputError(f"{name}: is a folder, not an image")
    return _decode(name, name, max_pixels)


def decode_bytes(data: bytes, name: str, max_pixels: int = DEFAULT_MAX_PIXELS) -> LoadedImage:
    """`load_image` for a file's bytes read elsewhere (object storage, Ray's `read_binary_files`); `name` is the
    path the errors name. The same checks and messages as a file on disk."""
    return _decode(io.BytesIO(data), name, max_pixels)


_ORIENTATION = 0x0112  # the EXIF tag that says how the camera was held


def _decode(source: str | BinaryIO, name: str, max_pixels: int) -> LoadedImage:
    try:
        with Image.open(source) as im:
            width, height = im.size
            if width * height > max_pixels:
                raise InputError(
                    f"{name}: {width}x{height} is {width * height:,} pixels, over the limit of "
                    f"{max_pixels:,} (raise it with --max-pixels)"
                )
            frames = int(getattr(im, "n_frames", 1))
            source_mode = im.mode
            im.seek(0)
            im.load()
            upright = im.getexif().get(_ORIENTATION, 1) in (0, 1)  # most photos: no copy just to say so
            rgb = to_rgb(im if upright else ImageOps.exif_transpose(im))  # `with` closes the file, not the image
    except InputError:
        raise
    except PermissionError:
        raise InputError(f"{name}: permission denied") from None
    except Image.DecompressionBombError as exc:  # Pillow's own guard, as this process has it set
        raise InputError(f"{name}: refused by Pillow's decompression-bomb guard ({exc})") from None
    except Image.UnidentifiedImageError:
        raise InputError(f"{name}: not an image file (or a format Pillow cannot read)") from None
    except _DECODE_ERRORS as exc:
        raise InputError(f"{name}: cannot decode image: {exc}") from None
    return LoadedImage(image=rgb, path=name, source_mode=source_mode, frames=frames)


def to_rgb(im: Image.Image) -> Image.Image:
    """Any Pillow mode to 8-bit RGB; transparency is laid over white, deep images are scaled, not clipped."""
    if im.mode == "RGB":
        return im
    if im.mode in ("I", "I;16", "I;16B", "I;16L", "I;16N", "F"):
        return Image.fromarray(_scale_to_uint8(np.asarray(im)), mode="L").convert("RGB")
    if im.mode == "P" and "transparency" in im.info:
        im = im.convert("RGBA")
    if im.mode in ("RGBA", "LA", "PA", "La", "RGBa"):
        rgba = im.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    return im.convert("RGB")


def _scale_to_uint8(values: np.ndarray) -> np.ndarray:
    """16-bit and 32-bit integer images are scaled by their full range; float images by their own."""
    if values.dtype.kind == "f":
        finite = np.nan_to_num(values.astype(np.float32), nan=0.0, posinf=0.0, neginf=0.0)
        low, high = float(finite.min()), float(finite.max())
        if low >= 0.0 and high <= 1.0:
            low, high = 0.0, 1.0
        span = high - low or 1.0
        return np.clip((finite - low) * (255.0 / span), 0, 255).astype(np.uint8)
    high = 255 if int(values.max(initial=0)) <= 255 and int(values.min(initial=0)) >= 0 else 65535
    return np.clip(values.astype(np.int64) * 255 // high, 0, 255).astype(np.uint8)
