"""A transformer's own attention as a map: the class token's attention (`cls`) and attention rollout (`rollout`),
and their class-specific forms (`grad-rollout`, `legrad`, in `attention/relevance.py`).

`cls` and `rollout` need no class: they show where the class token reads from, whatever the head makes of it.
The class-specific modes record the same attention with its autograd graph and weight it by a class score's
gradient. timm's blocks
compute `softmax(q k^T) -> attn_drop` when their `fused_attn` flag is off, so switching the flag off on the
encoder's own copy of each block (never timm's global `TIMM_FUSED_ATTN`) and hooking `attn_drop` captures the
weights exactly. torch's `nn.MultiheadAttention` (torchvision's ViT) is called with `need_weights=False`; while a
pass is recorded, a pre-hook asks it for its per-head weights instead, and nothing of it changes outside that
pass. Rollout follows Abnar & Zuidema (ACL 2020): each block's head-averaged attention gets the residual
identity added, rows renormalised, and the blocks are multiplied from first to last. As in Gildenblat's
vit-explain, the weakest 90% of each block's links are dropped first: without that, the many faint links to
background tokens add up over twelve blocks into a map that is nearly flat (pointing 0.77 against 0.93 with the drop
on held-out photos with DINOv2 ViT-S/14; docs/transformers.md).
"""

from __future__ import annotations

import inspect
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, cast

import torch
from torch import Tensor, nn

from attnviz.errors import UsageError
from attnviz.options import Mode

#: Most tokens before the patches: the class token, a distillation token and up to 14 registers.
MAX_PREFIX = 16
#: Floor under the captured weights before their log is taken as the map's scores.
_EPS = 1e-12
#: A patch token entering the last block with over this many times the median patch norm is an artifact
#: (Darcet et al., "Vision Transformers Need Registers"): a background token the class token reads global
#: information from, which would otherwise be drawn as the brightest spot of a cls or rollout map.
OUTLIER_FACTOR = 2.0
#: Fraction of each block's (N x N) head-averaged attention set to zero before rollout: the weakest links.
ROLLOUT_DISCARD = 0.9


def outlier_tokens(norms: Tensor) -> Tensor:
    """(B, P) patch-token norms -> (B, P) bool: the artifact tokens."""
    return norms > OUTLIER_FACTOR * norms.median(dim=1, keepdim=True).values


def discount_outliers(weights: Tensor, norms: Tensor) -> Tensor:
    """(B, P) patch weights with each artifact token's weight replaced by the median patch weight: the map of
    where the class token reads the picture, not where it stores its registers."""
    outliers = outlier_tokens(norms)
    typical = weights.median(dim=1, keepdim=True).values.expand_as(weights)
    return torch.where(outliers, typical, weights)


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


@dataclass
class Recorded:
    """What one recorded pass saw, block by block: each (B, heads, N, N) attention (`maps`), the tensor the
    network computed it as (`sources`: what a gradient is taken by; torch's MHA hands over a view of it), and, for
    passes with a graph, each block's (B, N, C) output tokens (`tokens`, which LeGrad scores layer by layer)."""

    maps: list[Tensor] = field(default_factory=list)
    sources: list[Tensor] = field(default_factory=list)
    tokens: list[Tensor] = field(default_factory=list)
    #: (B, N) norm of each token entering the last block: where the high-norm artifact tokens show.
    norms: list[Tensor] = field(default_factory=list)


def layer_head(model: nn.Module) -> Callable[[Tensor], Tensor] | None:
    """Block output tokens (B, N, C) -> (B, K) class logits, through the final norm and the head: what LeGrad asks
    of every layer. timm's ViT family (`norm`, `forward_head`) and torchvision's ViT (`encoder.ln`, `heads`)."""
    norm, forward_head = getattr(model, "norm", None), getattr(model, "forward_head", None)
    if isinstance(norm, nn.Module) and callable(forward_head):
        return lambda tokens: cast(Tensor, forward_head(norm(tokens)))
    final, heads = getattr(getattr(model, "encoder", None), "ln", None), getattr(model, "heads", None)
    if isinstance(final, nn.Module) and isinstance(heads, nn.Module):
        return lambda tokens: cast(Tensor, heads(final(tokens)[:, 0]))
    return None


class TransformerAttention:
    """Records one forward pass's attention and turns it into (B, rows * cols) weights over the patch grid."""

    def __init__(self, encoder: nn.Module, mode: Mode, name: str, discount: bool = True) -> None:
        self.mode = mode
        self.name = name
        self.blocks = attention_blocks(encoder)
        names = {module: name for name, module in encoder.named_modules()}
        #: Each attention's block (its parent module), whose output LeGrad scores.
        self.parents = [encoder.get_submodule(names[b].rpartition(".")[0]) for b in self.blocks]
        self.layer_head = layer_head(getattr(encoder, "model", encoder))
        #: Whether the artifact tokens' weight is discounted (`discount_outliers`) in the class-free maps.
        self.discount = discount
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
        if mode is Mode.legrad and self.layer_head is None:
            raise UsageError(
                f"--mode legrad scores every layer through the final norm and head, which encoder {name} does not "
                "expose (timm's ViT family and torchvision's ViT do): use --mode grad-rollout"
            )
        for block in self.blocks:  # this encoder's own modules only: timm's global setting stays as it was
            if _timm_attention(block):
                cast(Any, block).fused_attn = False  # an instance attribute: the class keeps timm's default

    @property
    def needs_gradients(self) -> bool:
        return self.mode not in (Mode.cls, Mode.rollout)

    @contextmanager
    def recording(self, graph: bool = False) -> Iterator[Recorded]:
        """Collects each block's (B, heads, N, N) attention, in block order, for passes made on this thread. With
        `graph`, the attention stays on the autograd graph and each block's output tokens are kept too."""
        seen = Recorded()
        caller = threading.get_ident()

        def keep(attention: Tensor, source: Tensor) -> None:
            seen.maps.append(attention if graph else attention.detach().float())  # (B, heads, N, N)
            if graph:
                seen.sources.append(source)

        def grab(_module: nn.Module, _inputs: object, output: Tensor) -> None:
            if threading.get_ident() == caller:
                keep(output, output)

        def grab_weights(_module: nn.Module, _inputs: object, output: tuple[Tensor, Tensor]) -> None:
            if threading.get_ident() == caller:  # (attended values, (B, heads, N, N) weights)
                weights = output[1]  # a view of the (B * heads, N, N) softmax the values were computed from
                keep(weights, weights._base if weights._base is not None else weights)

        def grab_norms(_module: nn.Module, inputs: tuple[object, ...]) -> None:
            if threading.get_ident() == caller and inputs and isinstance(inputs[0], Tensor):
                seen.norms.append(inputs[0].detach().float().norm(dim=-1))  # (B, N)

        def grab_tokens(_module: nn.Module, _inputs: object, output: Tensor) -> None:
            if threading.get_ident() == caller and isinstance(output, Tensor):
                seen.tokens.append(output)  # (B, N, C)

        def ask(module: nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any]) -> tuple[Any, dict[str, Any]] | None:
            return _ask_for_weights(module, args, kwargs) if threading.get_ident() == caller else None

        handles = []
        for block, parent in zip(self.blocks, self.parents, strict=True):
            if isinstance(block, nn.MultiheadAttention):  # other threads' calls go through as they were made
                handles.append(block.register_forward_pre_hook(ask, with_kwargs=True))
                handles.append(block.register_forward_hook(grab_weights))
            else:
                handles.append(block.get_submodule("attn_drop").register_forward_hook(grab))
            if graph:
                handles.append(parent.register_forward_hook(grab_tokens))
        if self.parents:
            handles.append(self.parents[-1].register_forward_pre_hook(grab_norms))
        try:
            yield seen
        finally:
            for handle in handles:
                handle.remove()

    def prefix(self, seen: Recorded, rows: int, cols: int) -> int:
        """How many tokens come before the patches (the class token, then distillation or register tokens)."""
        mode, last = self.mode.value, seen.maps[-1] if seen.maps else None
        if last is None or len(seen.maps) != len(self.blocks):
            raise UsageError(f"--mode {mode}: {len(self.blocks)} attention blocks but {len(seen.maps)} maps were seen")
        tokens = last.shape[-1]
        prefix = tokens - rows * cols
        if not 1 <= prefix <= MAX_PREFIX:  # channel attention (XCiT), or a grid other than the feature map's
            raise UsageError(
                f"--mode {mode}: the last block attends over {tokens} tokens, not a class token and the "
                f"{rows} x {cols} grid of the feature map; use dot, general or concat"
            )
        if self.mode is not Mode.cls and any(a.shape[-2:] != (tokens, tokens) for a in seen.maps):
            raise UsageError(  # pooling stages or class-attention blocks
                f"--mode {mode} needs every block to attend among the same {tokens} tokens; encoder {self.name} "
                "pools tokens or adds class-attention blocks: use --mode cls"
            )
        return prefix

    def weights(self, seen: Recorded, rows: int, cols: int, discount: bool | None = None) -> Tensor:
        """(B, rows * cols) weights summing to 1: the class token's row over the patch tokens; artifact tokens
        discounted unless `discount` (default: the attention's own setting) says otherwise."""
        prefix = self.prefix(seen, rows, cols)
        # (B, N): the class token's row, heads averaged (cls), or of the rollout
        row = seen.maps[-1].mean(dim=1)[:, 0] if self.mode is Mode.cls else rollout(seen.maps, ROLLOUT_DISCARD)[:, 0]
        patches = row[:, prefix:]  # (B, P)
        norms = seen.norms[-1][:, prefix:] if seen.norms else None
        if norms is not None and norms.shape == patches.shape and (self.discount if discount is None else discount):
            patches = discount_outliers(patches, norms)
        return normalised(patches)

    @staticmethod
    def scores(weights: Tensor) -> Tensor:
        """Log-weights: what the drawing code expects from a scorer."""
        return weights.clamp_min(_EPS).log()


def normalised(patches: Tensor) -> Tensor:
    """(B, P) relevance over the patches -> weights: negatives dropped, each row summing to 1."""
    patches = patches.clamp_min(0)
    return patches / patches.sum(dim=1, keepdim=True).clamp_min(_EPS)


def rollout(attentions: list[Tensor], discard: float = 0.0) -> Tensor:
    """(B, N, N) attention rollout over blocks of (B, heads, N, N) attention, the weakest `discard` fraction of each
    block's links dropped first."""
    result: Tensor | None = None
    for attention in attentions:
        mixed = attention.mean(dim=1)  # (B, N, N)
        if discard > 0:
            flat = mixed.flatten(1)  # (B, N * N)
            weakest = flat.topk(int(flat.shape[1] * discard), dim=1, largest=False).indices
            mixed = flat.scatter(1, weakest, 0.0).view_as(mixed)
        eye = torch.eye(mixed.shape[-1], device=mixed.device, dtype=mixed.dtype)
        mixed = 0.5 * mixed + 0.5 * eye  # the residual path carries half of each token forward
        mixed = mixed / mixed.sum(dim=-1, keepdim=True)
        result = mixed if result is None else mixed @ result  # (B, N, N)
    assert result is not None
    return result
