"""Encoders by name: a registry that imports no model; each builder module registers itself."""

from __future__ import annotations

from collections.abc import Callable
from functools import lru_cache

import torch

from attnviz.errors import UsageError
from attnviz.models.base import Encoder
from attnviz.options import DEFAULT_ENCODER

EncoderFactory = Callable[[str | None], Encoder]


_REGISTRY: dict[str, EncoderFactory] = {}


#: Names resolved by prefix rather than listed one by one, e.g. `timm:resnet50`.
_PREFIXES: dict[str, Callable[[str, str | None], Encoder]] = {}


def register_encoder(name: str) -> Callable[[EncoderFactory], EncoderFactory]:
    """Register a factory taking an optional weights file path."""

    def decorate(factory: EncoderFactory) -> EncoderFactory:
        _REGISTRY[name] = factory
        return factory

    return decorate


def register_prefix(prefix: str, factory: Callable[[str, str | None], Encoder]) -> None:
    _PREFIXES[prefix] = factory


def encoder_names() -> list[str]:
    return sorted(_REGISTRY)


def create_encoder(
    name: str = DEFAULT_ENCODER,
    weights: str | None = None,
    layer: str | None = None,
    fast: bool = True,
    labels: list[str] | None = None,
) -> Encoder:
    """Build an encoder by registry name, `timm:NAME`, `torchvision:NAME` or the user's `package.module:factory`,
    in eval mode, with gradients off.

    `weights` is a local state dict file (safetensors or a torch checkpoint, loaded without unpickling code).
    `fast` folds batch norms and uses channels-last memory (see `Encoder.optimize`). `labels` names the classes.
    """
    prefix, sep, rest = name.partition(":")
    # building a network draws its initial weights from torch's global generator: the caller's draws stay theirs
    with torch.random.fork_rng(devices=[]):
        if sep and prefix in _PREFIXES:
            encoder = _PREFIXES[prefix](rest, weights)
        elif name in _REGISTRY:
            encoder = _REGISTRY[name](weights)
        elif (sep and "." in prefix) or (sep and prefix not in _PREFIXES and rest):
            from attnviz.models.generic import build_imported

            encoder = build_imported(name, weights)
        else:
            encoder = None
    if encoder is None:
        raise UsageError(
            f"unknown encoder {name!r}; choose from: {', '.join(encoder_names())}, timm:NAME, torchvision:NAME, "
            "or package.module:factory for your own model"
        )
    if labels is not None:
        if len(labels) != len(encoder.labels):
            raise UsageError(f"{len(labels)} labels for the {len(encoder.labels)} classes of encoder {name}")
        encoder.labels = list(labels)
    encoder.eval()
    encoder.requires_grad_(False)
    if fast:
        encoder.optimize()
    encoder.use_layer(layer)
    return encoder


@lru_cache(maxsize=4)
def cached_encoder(
    name: str, weights: str | None = None, layer: str | None = None, labels: tuple[str, ...] | None = None
) -> Encoder:
    """`create_encoder`, built once per name, weights, layer and labels: what explainers by name share."""
    return create_encoder(name, weights, layer, labels=list(labels) if labels is not None else None)
