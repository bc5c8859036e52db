"""A fast PNG writer for RGB overlays: 'Up' filter on every row, then the fastest deflate at hand.

Pillow picks a filter per row and runs full deflate: about 44 ms for a 1024 x 768 overlay even at its fastest
setting. Subtracting each row's upper neighbour (one numpy call) leaves small residuals that compress well with
little effort: on photos 4-15% smaller and about 10% faster to deflate than the left neighbour ('Sub'). Intel's
ISA-L (the `isal` package) deflates them at level 1 in about 7-8 ms; without it, zlib's Huffman-only mode takes
about 18 ms and writes larger files. Both release the GIL, so encoding overlaps
with the network on worker threads.
"""

from __future__ import annotations

import struct
import zlib
from types import ModuleType

import numpy as np

_isal: ModuleType | None
try:
    from isal import isal_zlib as _isal
except ImportError:  # no wheel for this platform: zlib does the same job a little more slowly
    _isal = None
#: CRC-32 as PNG and zlib define it; ISA-L's is several times faster on a half-megabyte IDAT than zlib's.
_crc32 = zlib.crc32 if _isal is None else _isal.crc32

_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_UP = 2


def _chunk(kind: bytes, data: bytes) -> list[bytes]:
    """A chunk's pieces (length, type, data, CRC of type and data), joined once by the caller: no copy of `data`
    just to checksum or frame it."""
    return [struct.pack(">I", len(data)), kind, data, struct.pack(">I", _crc32(data, _crc32(kind)))]


def deflate(data: memoryview | bytes) -> bytes:
    """A zlib stream of `data`, favouring speed over the last few percent of size."""
    if _isal is not None:
        return _isal.compress(data, 1)  # type: ignore[no-any-return]
    compressor = zlib.compressobj(1, zlib.DEFLATED, 15, 9, zlib.Z_HUFFMAN_ONLY)
    return compressor.compress(data) + compressor.flush()


def encode_png(pixels: np.ndarray) -> bytes:
    """(H, W, 3) uint8 RGB -> PNG file bytes (8-bit truecolour, no interlace)."""
    if pixels.dtype != np.uint8 or pixels.ndim != 3 or pixels.shape[2] != 3:
        raise ValueError(f"expected (H, W, 3) uint8 pixels, got {pixels.shape} {pixels.dtype}")
    height, width, _ = pixels.shape
    flat = np.ascontiguousarray(pixels).reshape(height, 3 * width)  # (H, 3W)
    rows = np.empty((height, 1 + 3 * width), np.uint8)  # each row: filter byte, then filtered bytes
    rows[:, 0] = _UP
    rows[0, 1:] = flat[0]  # the first row's upper neighbour is zero
    np.subtract(flat[1:], flat[:-1], out=rows[1:, 1:])  # wraps modulo 256, as PNG's Up filter does
    data = deflate(rows.data)
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)  # 8-bit RGB, deflate, no filter set, no interlace
    return b"".join([_SIGNATURE, *_chunk(b"IHDR", header), *_chunk(b"IDAT", data), *_chunk(b"IEND", b"")])
