"""A transformer's own attention as a map: the class token's attention (`cls`) and attention rollout (`rollout`).

Neither needs a class: they show where the class token reads from, whatever the head makes of it. timm's blocks
compute `softmax(q k^T) -> attn_drop` when their `fused_attn` flag is off, so switching the flag off on the
encoder's own copy of each block (never timm's global `TIMM_FUSED_ATTN`) and hooking `attn_drop` captures the
weights exactly. torch's `nn.MultiheadAttention` (torchvision's ViT) is called with `need_weights=False`; while a
pass is recorded, a pre-hook asks it for its per-head weights instead, and nothing of it changes outside that
pass. Rollout follows Abnar & Zuidema (ACL 2020): each block's head-averaged attention gets the residual
identity added, rows renormalised, and the blocks are multiplied from first to last.
"""

from __future__ import annotations

import inspect
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, cast

import torch
from torch import Tensor, nn

from attnviz.errors import UsageError
from attnviz.options import Mode

#: Most tokens before the patches: the class token, a distillation token and up to 14 registers.
MAX_PREFIX = 16
#: Floor under the captured weights before their log is taken as the map's scores.
_EPS = 1e-12


def attention_blocks(model: nn.Module) -> list[nn.Module]:
    """The attention modules that can hand over their weights: timm's `Attention` family (ViT, DeiT, BEiT, EVA,
    DINOv2 with registers), recognised by the `fused_attn` flag and the `attn_drop` they apply the softmax to, and
    torch's `nn.MultiheadAttention` (torchvision's ViT)."""
    return [m for m in model.modules() if _timm_attention(m) or isinstance(m, nn.MultiheadAttention)]


def _timm_attention(module: nn.Module) -> bool:
    return hasattr(module, "fused_attn") and isinstance(getattr(module, "attn_drop", None), nn.Module)


def has_class_token(model: nn.Module) -> bool:
    """timm calls it `cls_token`, torchvision `class_token`."""
    return any(isinstance(getattr(m, name, None), Tensor) for m in model.modules() for name in _CLASS_TOKENS)


_CLASS_TOKENS = ("cls_token", "class_token")
_MHA_SIGNATURE = inspect.signature(nn.MultiheadAttention.forward)


def _ask_for_weights(module: nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any]) -> tuple[Any, dict[str, Any]]:
    """The same call with `need_weights=True` and one map per head, however the caller passed them."""
    bound = _MHA_SIGNATURE.bind(module, *args, **kwargs)
    bound.arguments["need_weights"] = True
    bound.arguments["average_attn_weights"] = False
    return bound.args[1:], bound.kwargs


class TransformerAttention:
    """Records one forward pass's attention and turns it into (B, rows * cols) weights over the patch grid."""

    def __init__(self, encoder: nn.Module, mode: Mode, name: str) -> None:
        self.mode = mode
        self.name = name
        self.blocks = attention_blocks(encoder)
        if not self.blocks:
            raise UsageError(
                f"--mode {mode.value} needs a transformer whose attention weights can be read (timm's ViT, DeiT, "
                f"BEiT, EVA or DINOv2 families, torchvision's ViT); encoder {name} has none: use dot, general or "
                "concat"
            )
        if not has_class_token(encoder):
            raise UsageError(
                f"--mode {mode.value} follows the class token's attention; encoder {name} has no class token "
                "(it pools its patches): use dot, general or concat"
            )
        for block in self.blocks:  # this encoder's own modules only: timm's global setting stays as it was
            if _timm_attention(block):
                cast(Any, block).fused_attn = False  # an instance attribute: the class keeps timm's default

    @contextmanager
    def recording(self) -> Iterator[list[Tensor]]:
        """Collects each block's (B, heads, N, N) attention, in block order, for passes made on this thread."""
        captured: list[Tensor] = []
        caller = threading.get_ident()

        def grab(_module: nn.Module, _inputs: object, output: Tensor) -> None:
            if threading.get_ident() == caller:
                captured.append(output.detach().float())  # (B, heads, N, N)

        def grab_weights(module: nn.Module, inputs: object, output: tuple[Tensor, Tensor]) -> None:
            grab(module, inputs, output[1])  # (attended values, (B, heads, N, N) weights)

        def ask(module: nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any]) -> tuple[Any, dict[str, Any]] | None:
            return _ask_for_weights(module, args, kwargs) if threading.get_ident() == caller else None

        handles = []
        for block in self.blocks:
            if isinstance(block, nn.MultiheadAttention):  # other threads' calls go through as they were made
                handles.append(block.register_forward_pre_hook(ask, with_kwargs=True))
                handles.append(block.register_forward_hook(grab_weights))
            else:
                handles.append(block.get_submodule("attn_drop").register_forward_hook(grab))
        try:
            yield captured
        finally:
            for handle in handles:
                handle.remove()

    def weights(self, captured: list[Tensor], rows: int, cols: int) -> Tensor:
        """(B, rows * cols) weights summing to 1: the class token's row over the patch tokens."""
        mode, last = self.mode.value, captured[-1] if captured else None
        if last is None or len(captured) != len(self.blocks):
            raise UsageError(f"--mode {mode}: {len(self.blocks)} attention blocks but {len(captured)} maps were seen")
        tokens = last.shape[-1]
        prefix = tokens - rows * cols  # the class token first, then any distillation or register tokens
        if not 1 <= prefix <= MAX_PREFIX:  # channel attention (XCiT), or a grid other than the feature map's
            raise UsageError(
                f"--mode {mode}: the last block attends over {tokens} tokens, not a class token and the "
                f"{rows} x {cols} grid of the feature map; use dot, general or concat"
            )
        if self.mode is Mode.cls:
            row = last.mean(dim=1)[:, 0]  # (B, N): the class token's row, heads averaged
        elif any(a.shape[-2:] != (tokens, tokens) for a in captured):  # pooling stages or class-attention blocks
            raise UsageError(
                f"--mode rollout needs every block to attend among the same {tokens} tokens; encoder {self.name} "
                "pools tokens or adds class-attention blocks: use --mode cls"
            )
        else:
            row = rollout(captured)[:, 0]  # (B, N)
        patches = row[:, prefix:].clamp_min(0)  # (B, rows * cols)
        return patches / patches.sum(dim=1, keepdim=True).clamp_min(_EPS)

    @staticmethod
    def scores(weights: Tensor) -> Tensor:
        """Log-weights: what the drawing code expects from a scorer."""
        return weights.clamp_min(_EPS).log()


def rollout(attentions: list[Tensor]) -> Tensor:
    """(B, N, N) attention rollout over blocks of (B, heads, N, N) attention."""
    result: Tensor | None = None
    for attention in attentions:
        mixed = attention.mean(dim=1)  # (B, N, N)
        eye = torch.eye(mixed.shape[-1], device=mixed.device, dtype=mixed.dtype)
        mixed = 0.5 * mixed + 0.5 * eye  # the residual path carries half of each token forward
        mixed = mixed / mixed.sum(dim=-1, keepdim=True)
        result = mixed if result is None else mixed @ result  # (B, N, N)
    assert result is not None
    return result
