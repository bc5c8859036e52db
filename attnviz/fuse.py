"""Inference-only speed-ups that keep the maps: batch norms folded into the convolutions before them."""

from __future__ import annotations

import torch
from torch import Tensor, nn


def _conv_bn_pairs(model: nn.Module, example: Tensor) -> list[tuple[str, str]]:
    """(conv name, bn name) where the batch norm reads exactly the tensor that convolution wrote.

    Found by running the model once with hooks rather than by names, so it holds for any architecture.
    """
    names = {module: name for name, module in model.named_modules()}
    produced: dict[int, str] = {}
    pairs: list[tuple[str, str]] = []

    def after_conv(module: nn.Module, _inputs: tuple[Tensor, ...], output: Tensor) -> None:
        produced[id(output)] = names[module]

    def before_bn(module: nn.Module, inputs: tuple[Tensor, ...]) -> None:
        conv = produced.get(id(inputs[0]))
        if conv is not None:
            pairs.append((conv, names[module]))

    handles = []
    for module in names:
        if isinstance(module, nn.Conv2d):
            handles.append(module.register_forward_hook(after_conv))
        elif isinstance(module, nn.BatchNorm2d):
            handles.append(module.register_forward_pre_hook(before_bn))
    try:
        with torch.inference_mode():
            model(example)
    finally:
        for handle in handles:
            handle.remove()
    used_convs = [conv for conv, _ in pairs]
    return [(c, b) for c, b in pairs if used_convs.count(c) == 1]  # a conv feeding two norms stays as it is


def _bn_replacement(bn: nn.BatchNorm2d) -> nn.Module:
    """What is left of a norm layer once its affine part lives in the conv: timm's fused activation, if any."""
    drop, act = getattr(bn, "drop", None), getattr(bn, "act", None)
    parts = [m for m in (drop, act) if isinstance(m, nn.Module) and not isinstance(m, nn.Identity)]
    return nn.Sequential(*parts) if parts else nn.Identity()


def fold_batch_norms(model: nn.Module, example: Tensor) -> int:
    """Fold every eval-mode BatchNorm2d into the convolution that feeds it, in place; returns how many."""
    pairs = _conv_bn_pairs(model, example)
    for conv_name, bn_name in pairs:
        conv: nn.Conv2d = model.get_submodule(conv_name)  # type: ignore[assignment]
        bn: nn.BatchNorm2d = model.get_submodule(bn_name)  # type: ignore[assignment]
        assert bn.running_var is not None and bn.running_mean is not None
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
        parent_name, _, child = bn_name.rpartition(".")
        parent = model.get_submodule(parent_name) if parent_name else model
        setattr(parent, child, _bn_replacement(bn))
    return len(pairs)
