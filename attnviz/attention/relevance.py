"""Class-specific transformer maps: a transformer's attention weighted by the gradient of a class score.

- `grad-rollout`, gradient-weighted attention rollout (Chefer, Gur and Wolf, "Generic Attention-model
  Explainability", ICCV 2021, the version without LRP): for each block, `Abar = mean over heads of
  relu(dy/dA * A)`; `R = I`, then `R = R + Abar @ R` block by block; the map is the class token's row of `R`.
- `legrad` (Bousselham et al., "LeGrad", ICCV 2025): every layer's class token goes through the final norm and
  the head to give that layer's class score `s_l`; `E_l` is `relu(ds_l/dA_l)` averaged over heads and query rows;
  the map is the mean of `E_l` over the layers.

Both differentiate the raw class logit (before the softmax), as the papers do. The images of a batch are
independent (layer norms, not batch norms), so one backward pass of the sum of each image's own class score gives
every image's gradient at once.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

from attnviz.attention.transformer import Recorded, TransformerAttention, normalised
from attnviz.errors import UsageError
from attnviz.options import Mode

#: (B, K) logits -> the scalar to differentiate: the sum over images of each one's chosen class score.
Pick = Callable[[Tensor], Tensor]


def gradient_rollout(maps: list[Tensor], grads: list[Tensor]) -> Tensor:
    """(B, N, N) relevance from each block's (B, heads, N, N) attention and its gradient."""
    relevance: Tensor | None = None
    for attention, grad in zip(maps, grads, strict=True):
        mixed = (grad * attention).clamp_min(0).mean(dim=1)  # (B, N, N)
        if relevance is None:
            relevance = torch.eye(mixed.shape[-1], dtype=mixed.dtype, device=mixed.device).expand_as(mixed)
        relevance = relevance + mixed @ relevance  # (B, N, N)
    assert relevance is not None
    return relevance


def layer_relevance(grad: Tensor) -> Tensor:
    """LeGrad's one layer: (B, heads, N, N) gradient -> (B, N) over the attended tokens."""
    return grad.clamp_min(0).mean(dim=(1, 2))  # heads and query rows averaged


def class_weights(
    attention: TransformerAttention, seen: Recorded, logits: Tensor, pick: Pick, rows: int, cols: int
) -> Tensor:
    """(B, rows * cols) weights summing to 1 for the class scores `pick` selects, from a pass recorded with its
    graph (`attention.recording(graph=True)`). The graph is kept, so it can be asked about other classes."""
    prefix = attention.prefix(seen, rows, cols)
    grads = [
        grad.reshape(a.shape)  # a view's source has the (B * heads, N, N) shape torch computed it in
        for grad, a in zip(_gradients(attention, seen, logits, pick), seen.maps, strict=True)
    ]
    if attention.mode is Mode.grad_rollout:
        maps = [a.detach().float() for a in seen.maps]
        row = gradient_rollout(maps, [g.float() for g in grads])[:, 0]  # (B, N)
    else:
        row = torch.stack([layer_relevance(g.float()) for g in grads]).mean(dim=0)  # (B, N)
    return normalised(row[:, prefix:].detach())


def _gradients(attention: TransformerAttention, seen: Recorded, logits: Tensor, pick: Pick) -> list[Tensor]:
    if attention.mode is Mode.grad_rollout:
        return list(torch.autograd.grad(pick(logits), seen.sources, retain_graph=True))
    head = attention.layer_head
    assert head is not None
    if len(seen.tokens) != len(seen.sources):  # a block whose output is not one tensor of tokens
        raise UsageError(
            f"--mode legrad reads each block's output tokens, which encoder {attention.name}'s blocks do not return "
            "as one tensor: use --mode grad-rollout"
        )
    grads = []
    for tokens, source in zip(seen.tokens, seen.sources, strict=True):  # each layer's own score, its own attention
        (grad,) = torch.autograd.grad(pick(head(tokens)), source, retain_graph=True)
        grads.append(grad)
    return grads


def attention_maps(
    attention: TransformerAttention, seen: Recorded, logits: Tensor, chosen: list[list[int]], rows: int, cols: int
) -> Tensor:
    """(M, rows * cols), one row per requested map in image-then-class order: the class-free map repeated for each
    class asked, or a class-specific map each (one backward pass per class rank, all images at once)."""
    if not attention.needs_gradients:
        owner = torch.tensor([i for i, wanted in enumerate(chosen) for _ in wanted], device=logits.device)
        return attention.weights(seen, rows, cols)[owner]  # (M, N)
    per_rank: list[dict[int, Tensor]] = []
    for rank in range(max(len(wanted) for wanted in chosen)):
        images = [i for i, wanted in enumerate(chosen) if len(wanted) > rank]
        picked = [chosen[i][rank] for i in images]

        def pick(scores: Tensor, images: list[int] = images, picked: list[int] = picked) -> Tensor:
            return scores[images, picked].sum()  # each image's own class score, summed

        weights = class_weights(attention, seen, logits, pick, rows, cols)  # (B, N)
        per_rank.append({i: weights[i] for i in images})
    return torch.stack([per_rank[r][i] for i, wanted in enumerate(chosen) for r in range(len(wanted))])
