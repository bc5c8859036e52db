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


def _fits(rows: int, cols: int, height: int, width: int, min_stride: float = 1.0) -> bool:
    """A rows x cols grid covers an height x width input with square-ish cells of one stride."""
    if rows < 1 or cols < 1:
        return False
    stride_h, stride_w = height / rows, width / cols
    if min(stride_h, stride_w) < min_stride:
        return False
    return abs(stride_h - stride_w) <= 0.25 * max(stride_h, stride_w) + 1


def as_grid(output: object, height: int, width: int, min_stride: float = 1.0) -> Grid | None:
    """The output of a layer fed an `height` x `width` picture as a grid, or None when it is not one.

    `min_stride` (pixels per cell) rules out fine tensors when layers are being discovered rather than named.
    """
    if not isinstance(output, Tensor) or not output.is_floating_point():
        return None
    if output.dim() == 4:
        b, c, h, w = output.shape
        if _fits(h, w, height, width, min_stride) and h * w > 1:
            return Grid(output, lambda cells: cells)
        if _fits(c, h, height, width, min_stride) and c * h > 1:  # (B, H', W', C): channels last, as Swin keeps them
            return Grid(output.permute(0, 3, 1, 2), lambda cells: cells.permute(0, 2, 3, 1))
        return None
    if output.dim() == 3:
        b, tokens, c = output.shape
        for prefix in range(min(MAX_PREFIX, tokens - 1) + 1):
            rows = round(math.sqrt((tokens - prefix) * height / width))
            if rows < 1 or (tokens - prefix) % rows:
                continue
            cols = (tokens - prefix) // rows
            if rows * cols > 1 and _fits(rows, cols, height, width, min_stride):
                head = output[:, :prefix]  # (B, P, C)
                cells = output[:, prefix:].transpose(1, 2).reshape(b, c, rows, cols)  # (B, C, H', W')

                def rebuild(grid: Tensor, head: Tensor = head) -> Tensor:
                    return torch.cat([head.detach(), grid.flatten(2).transpose(1, 2)], dim=1)  # (B, T, C)

                return Grid(cells, rebuild)
    return None
