"""Inference-only speed-ups that keep the maps: batch norms folded into the convolutions before them.

A pair is folded only when the graph says it is safe: the norm reads exactly the tensor the convolution wrote, and
nothing else reads that tensor (a residual branch that also took the convolution's output would see the folded
values). The folded model is then checked against the unfolded one on a probe; when they differ, nothing is folded.
"""

from __future__ import annotations

import warnings
from collections import Counter
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from attnviz.errors import ComputeError

#: Folded outputs may differ from unfolded ones by float rounding only: this much, relative to the largest value.
FOLD_TOLERANCE = 1e-4


class FoldingWarning(UserWarning):
    """Batch norms were left unfolded because folding would have changed the model's output."""


def _consumers(roots: list[Tensor]) -> Counter[object]:
    """How many edges of the autograd graph behind `roots` lead into each node: its number of readers."""
    counts: Counter[object] = Counter()
    seen: set[object] = set()
    stack = [t.grad_fn for t in roots if t.grad_fn is not None]
    while stack:
        node = stack.pop()
        if node in seen:
            continue
        seen.add(node)
        for parent, _ in node.next_functions:
            if parent is not None:
                counts[parent] += 1
                stack.append(parent)
    return counts


def _outputs(result: object) -> list[Tensor]:
    if isinstance(result, Tensor):
        return [result]
    if isinstance(result, (tuple, list)):
        return [t for item in result for t in _outputs(item)]
    if isinstance(result, dict):
        return [t for item in result.values() for t in _outputs(item)]
    return []


def conv_bn_pairs(model: nn.Module, example: Tensor) -> list[tuple[str, str]]:
    """(conv name, bn name) pairs that are safe to fold, found on one probe pass with gradients on.

    Every convolution output is held until the end of the pass, so two tensors can never be mistaken for each other
    (an `id()` of a freed tensor is reused by the next one), and the autograd graph tells who reads each output.
    """
    names = {module: name for name, module in model.named_modules()}
    written: list[tuple[str, Tensor, object]] = []  # (conv, its output, the output's grad_fn then)
    read: list[tuple[str, Tensor, object]] = []  # (bn, its input, the input's grad_fn then)

    def after_conv(module: nn.Module, _inputs: tuple[Tensor, ...], output: Tensor) -> None:
        written.append((names[module], output, output.grad_fn))

    def before_bn(module: nn.Module, inputs: tuple[Tensor, ...]) -> None:
        read.append((names[module], inputs[0], inputs[0].grad_fn))

    handles = []
    for module in names:
        if isinstance(module, nn.Conv2d):  # subclasses too (timm's same-padding convs pad, then convolve)
            handles.append(module.register_forward_hook(after_conv))
        elif isinstance(module, nn.BatchNorm2d):
            handles.append(module.register_forward_pre_hook(before_bn))
    try:
        with torch.enable_grad():
            result = model(example.detach().clone().requires_grad_())
    finally:
        for handle in handles:
            handle.remove()
    readers = _consumers(_outputs(result))
    pairs = []
    for bn, tensor, node in read:
        for conv, output, written_node in written:
            same = tensor is output and node is written_node  # not modified in place in between
            if same and node is not None and readers[node] == 1:
                pairs.append((conv, bn))
    convs = Counter(conv for conv, _ in pairs)
    return [(c, b) for c, b in pairs if convs[c] == 1]  # a conv that runs twice stays as it is


@dataclass
class _Undo:
    """What one fold changed, so it can be put back."""

    parent: nn.Module
    child: str
    bn: nn.BatchNorm2d
    conv: nn.Conv2d
    weight: Tensor
    bias: Tensor | None

    def revert(self) -> None:
        with torch.no_grad():
            self.conv.weight.copy_(self.weight)
        self.conv.bias = (
            self.bias if self.bias is None or isinstance(self.bias, nn.Parameter) else nn.Parameter(self.bias)
        )
        setattr(self.parent, self.child, self.bn)


def _bn_replacement(bn: nn.BatchNorm2d) -> nn.Module:
    """What is left of a norm layer once its affine part lives in the conv: timm's fused activation, if any."""
    drop, act = getattr(bn, "drop", None), getattr(bn, "act", None)
    parts = [m for m in (drop, act) if isinstance(m, nn.Module) and not isinstance(m, nn.Identity)]
    return nn.Sequential(*parts) if parts else nn.Identity()


def _fold(model: nn.Module, conv_name: str, bn_name: str) -> _Undo:
    conv: nn.Conv2d = model.get_submodule(conv_name)  # type: ignore[assignment]
    bn: nn.BatchNorm2d = model.get_submodule(bn_name)  # type: ignore[assignment]
    assert bn.running_var is not None and bn.running_mean is not None
    parent_name, _, child = bn_name.rpartition(".")
    parent = model.get_submodule(parent_name) if parent_name else model
    undo = _Undo(parent, child, bn, conv, conv.weight.detach().clone(), conv.bias)
    scale = torch.rsqrt(bn.running_var + bn.eps)  # (C,)
    if bn.weight is not None:
        scale = scale * bn.weight
    shift = -bn.running_mean * scale
    if bn.bias is not None:
        shift = shift + bn.bias
    with torch.no_grad():
        conv.weight.mul_(scale.reshape(-1, 1, 1, 1))
        bias = shift if conv.bias is None else conv.bias * scale + shift
        conv.bias = nn.Parameter(bias.detach().clone(), requires_grad=False)
    setattr(parent, child, _bn_replacement(bn))
    return undo


def _largest_gap(before: list[Tensor], after: list[Tensor]) -> float:
    """Largest difference between two lists of outputs, relative to the largest value; inf when shapes differ."""
    if len(before) != len(after) or any(a.shape != b.shape for a, b in zip(before, after, strict=True)):
        return float("inf")
    gap = 0.0
    for a, b in zip(before, after, strict=True):
        scale = max(1.0, float(a.abs().max())) if a.numel() else 1.0
        gap = max(gap, float((a - b).abs().max()) / scale if a.numel() else 0.0)
    return gap


def fold_batch_norms(model: nn.Module, example: Tensor, label: str = "model") -> int:
    """Fold every eval-mode BatchNorm2d into the convolution that alone feeds it, in place; returns how many.

    The folded model must reproduce the unfolded one's outputs on `example`; if it does not, every fold is undone
    and a `FoldingWarning` says so (the model then runs unfolded: slower, never wrong).
    """
    if not any(isinstance(module, nn.BatchNorm2d) for module in model.modules()):
        return 0  # nothing to fold (transformers, most of them): no probe pass
    try:
        pairs = conv_bn_pairs(model, example)
    except (RuntimeError, ComputeError) as exc:  # a network that cannot run on the probe: it runs unfolded
        warnings.warn(
            f"{label}: batch norms left unfolded (the probe pass failed: {exc})", FoldingWarning, stacklevel=2
        )
        return 0
    if not pairs:
        return 0
    with torch.inference_mode():
        before = [t.clone() for t in _outputs(model(example))]
    undo = [_fold(model, conv, bn) for conv, bn in pairs]
    with torch.inference_mode():
        gap = _largest_gap(before, _outputs(model(example)))
    if gap <= FOLD_TOLERANCE:
        return len(pairs)
    for step in reversed(undo):
        step.revert()
    warnings.warn(
        f"{label}: batch norms left unfolded (folding changed the output by {gap:.2g} relative); running eager",
        FoldingWarning,
        stacklevel=2,
    )
    return 0
