"""Writing results: never half a file, never over an existing file unless asked, never over the input."""

from __future__ import annotations

import io
import os
import secrets
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

import numpy as np
from PIL import Image

from attnviz.errors import OutputError, UsageError

#: Pillow format and save options per extension (PNG is written by attnviz.png, faster than Pillow's encoder).
FORMATS: dict[str, tuple[str, dict[str, object]]] = {
    ".png": ("PNG", {}),
    ".jpg": ("JPEG", {"quality": 92}),
    ".jpeg": ("JPEG", {"quality": 92}),
    ".webp": ("WEBP", {"quality": 90}),
}


def image_format(path: str | os.PathLike[str]) -> tuple[str, dict[str, object]]:
    """Pillow format and options for an output path, by its extension."""
    suffix = Path(path).suffix.lower()
    if suffix not in FORMATS:
        raise UsageError(f"cannot tell the output format from {os.fspath(path)!r}; use .png, .jpg or .webp")
    return FORMATS[suffix]


def suffix_format(suffix: str) -> tuple[str, dict[str, object]]:
    return image_format("image" + suffix)


def default_output_name(input_path: str, mode: str, suffix: str = ".png") -> str:
    """`photo.jpg` -> `photo.attn-concat.png`: the mode in the name, so several modes can sit side by side."""
    stem = Path(input_path).stem or "image"
    return f"{stem}.attn-{mode}{suffix}"


def _new_temporary(folder: Path) -> tuple[int, str]:
    """A new, empty `.attnviz-*.tmp` file in `folder`, opened for writing, with the permissions a plain `open()`
    gives (0666 less the umask, applied by the kernel): `mkstemp`'s are 0600, and reading the umask to widen them
    costs a read of /proc/self/status per file (`os.umask` can only be read by setting it, racing other threads)."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0) | getattr(os, "O_BINARY", 0)
    while True:
        name = os.path.join(folder, f".attnviz-{secrets.token_hex(6)}.tmp")
        try:
            return os.open(name, flags, 0o666), name
        except FileExistsError:  # 48 random bits: only another writer's leftover can be in the way
            continue


def encode_image(pixels: np.ndarray | Image.Image, fmt: str, options: dict[str, object]) -> bytes:
    """(H, W, 3) uint8 RGB pixels, or an RGB Pillow image, as the bytes of a `fmt` file."""
    if fmt == "PNG":
        from attnviz.io.png import encode_png

        return encode_png(np.asarray(pixels))
    picture = pixels if isinstance(pixels, Image.Image) else Image.fromarray(pixels, mode="RGB")
    buffer = io.BytesIO()
    picture.save(buffer, format=fmt, **options)
    return buffer.getvalue()


def check_target(path: str | os.PathLike[str], *, inputs: tuple[str, ...] = (), overwrite: bool = False) -> None:
    """Refuse before any work is done: an output that is an input, or an existing file without --overwrite."""
    target = Path(path)
    for source in inputs:
        if os.path.exists(source) and target.exists() and os.path.samefile(source, target):
            raise OutputError(f"{os.fspath(path)}: refusing to write over the input image")
    if target.is_dir():
        raise OutputError(f"{os.fspath(path)}: is a folder")
    if target.exists() and not overwrite:
        raise OutputError(f"{os.fspath(path)}: already exists (use --overwrite to replace it)")


def atomic_write(path: str | os.PathLike[str], write: Callable[[BinaryIO], None], *, overwrite: bool = False) -> None:
    """Write to a temporary file beside `path`, then move it into place in one step.

    Without `overwrite` the final step is a hard link, which fails if the name appeared meanwhile, so a file that
    exists is never replaced even by a race. An interrupted run leaves at most a `.attnviz-*.tmp` file behind.
    """
    final = Path(path)
    try:
        final.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = _new_temporary(final.parent)
    except OSError as exc:  # e.g. a file where the output's folder should be
        raise OutputError(f"{os.fspath(path)}: cannot write: {exc.strerror or exc}") from None
    try:
        with os.fdopen(fd, "wb") as handle:
            write(handle)
        if overwrite:
            os.replace(tmp, final)
        else:
            try:
                os.link(tmp, final)
            except FileExistsError:
                raise OutputError(f"{os.fspath(path)}: already exists (use --overwrite to replace it)") from None
            except OSError:  # file systems without hard links: check-then-rename
                if final.exists():
                    raise OutputError(f"{os.fspath(path)}: already exists (use --overwrite to replace it)") from None
                os.replace(tmp, final)
    except OSError as exc:
        raise OutputError(f"{os.fspath(path)}: cannot write: {exc.strerror or exc}") from None
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def write_bytes(path: str | os.PathLike[str], data: bytes, *, overwrite: bool = False) -> None:
    def write(handle: BinaryIO) -> None:
        handle.write(data)

    atomic_write(path, write, overwrite=overwrite)


def write_npy(path: str | os.PathLike[str], array: np.ndarray, *, overwrite: bool = False) -> None:
    atomic_write(path, lambda handle: np.save(handle, array, allow_pickle=False), overwrite=overwrite)
