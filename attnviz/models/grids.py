"""Any layer's output as a grid of cells (B, C, H', W'): NCHW maps as they are, NHWC maps (Swin) permuted, token
sequences (ViT, DeiT, BEiT, EVA...) with their prefix tokens (class, distillation, registers) set aside.

The layout is told from the shapes and the input's aspect ratio, never from a hard-coded grid size, so any input
size works. `rebuild` puts a grid back into the layer's own layout, so the rest of the network can run on a grid
that the logits are then differentiable by.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor

#: Prefix tokens a transformer may put before its patches: class, distillation, up to 8 registers.
MAX_PREFIX = 9


@dataclass(frozen=True)
class Grid:
    cells: Tensor  # (B, C, H', W')
    rebuild: Callable[[Tensor], Tensor]  # (B, C, H', W') -> the layer's own layout


#: Layers are discovered only where cells span at least this many pixels: finer "grids" are early layers, or
#: coincidences such as an attention head's (tokens, head width) tensor.
DISCOVERY_STRIDE = 4


def _mismatch(rows: int, cols: int, height: int, width: int, min_stride: float = 1.0) -> float | None:
    """How far a rows x cols grid is from covering an height x width input with square cells of one stride
    (0 is exact), or None when it does not fit at all."""
    if rows < 1 or cols < 1:
        return None
    stride_h, stride_w = height / rows, width / cols
    if min(stride_h, stride_w) < min_stride:
        return None
    gap = abs(stride_h - stride_w)
    return gap / max(stride_h, stride_w) if gap <= 0.25 * max(stride_h, stride_w) + 1 else None


def as_grid(output: object, height: int, width: int, min_stride: float = 1.0) -> Grid | None:
    """The output of a layer fed an `height` x `width` picture as a grid, or None when it is not one.

    `min_stride` (pixels per cell) rules out fine tensors when layers are being discovered rather than named.
    """
    if not isinstance(output, Tensor) or not output.is_floating_point():
        return None
    if output.dim() == 4:  # NCHW or NHWC: whichever covers the input with squarer cells
        b, c, h, w = output.shape
        first = _mismatch(h, w, height, width, min_stride) if h * w > 1 else None
        last = _mismatch(c, h, height, width, min_stride) if c * h > 1 else None
        if first is not None and (last is None or first <= last):
            return Grid(output, lambda cells: cells)
        if last is not None:  # (B, H', W', C): channels last, as Swin keeps them
            return Grid(output.permute(0, 3, 1, 2), lambda cells: cells.permute(0, 2, 3, 1))
        return None
    if output.dim() == 3:  # tokens: the prefix length whose patches tile the input best
        b, tokens, c = output.shape
        best: tuple[float, int, int, int] | None = None  # (mismatch, prefix, rows, cols)
        for prefix in range(min(MAX_PREFIX, tokens - 1) + 1):
            rows = round(math.sqrt((tokens - prefix) * height / width))
            if rows < 1 or (tokens - prefix) % rows:
                continue
            cols = (tokens - prefix) // rows
            gap = _mismatch(rows, cols, height, width, min_stride) if rows * cols > 1 else None
            if gap is not None and (best is None or gap < best[0]):
                best = (gap, prefix, rows, cols)
        if best is not None:
            _, prefix, rows, cols = best
            head = output[:, :prefix]  # (B, P, C)
            cells = output[:, prefix:].transpose(1, 2).reshape(b, c, rows, cols)  # (B, C, H', W')

            def rebuild(grid: Tensor, head: Tensor = head) -> Tensor:
                return torch.cat([head.detach(), grid.flatten(2).transpose(1, 2)], dim=1)  # (B, T, C)

            return Grid(cells, rebuild)
    return None
