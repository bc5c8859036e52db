"""torchvision classifiers by name: weights from torchvision's cache or a local file."""

from __future__ import annotations

import contextlib
import io
import math
import os
import sys
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from attnviz.errors import UsageError
from attnviz.models.base import IMAGENET_MEAN, IMAGENET_STD, Encoder
from attnviz.models.common import WeightsUnavailable, classes_in_state, numbered_labels, smaller_side
from attnviz.models.registry import EncoderFactory, register_encoder, register_prefix
from attnviz.options import TRAINED_SIZE

#: torchvision classifiers offered by name (any other torchvision classifier works as `torchvision:NAME`).
TORCHVISION_NAMES = ("resnet18", "resnet50", "mobilenet_v3_large", "efficientnet_b0", "convnext_tiny", "vgg16")


class TorchvisionEncoder(Encoder):
    """torchvision classifiers: ResNet-style (`layer4`, `avgpool`, `fc`) or `features`/`avgpool`/`classifier`."""

    def __init__(
        self, name: str, model: nn.Module, labels: list[str], *, check_head: bool = True, **kwargs: object
    ) -> None:
        super().__init__(name, labels, **kwargs)  # type: ignore[arg-type]
        self.model = model.eval()
        self._resnet = hasattr(model, "fc") and hasattr(model, "layer4")
        if not self._resnet and not all(hasattr(model, a) for a in ("features", "avgpool", "classifier")):
            raise UsageError(f"encoder {name}: unsupported torchvision architecture {type(model).__name__}")
        self._linear = self.head_is_pool_linear() if check_head else False

    def forward_features(self, x: Tensor) -> Tensor:
        m = self.model
        if not self._resnet:
            return m.features(x)  # type: ignore[operator,no-any-return]
        x = m.maxpool(m.relu(m.bn1(m.conv1(x))))  # type: ignore[operator]
        return m.layer4(m.layer3(m.layer2(m.layer1(x))))  # type: ignore[operator,no-any-return]

    def forward_head(self, features: Tensor) -> Tensor:
        m = self.model
        pooled = m.avgpool(features)  # type: ignore[operator]
        head = m.fc if self._resnet else m.classifier
        if any(isinstance(layer, nn.Flatten) for layer in head.modules()):  # type: ignore[union-attr]
            return head(pooled)  # type: ignore[operator,no-any-return]
        return head(torch.flatten(pooled, 1))  # type: ignore[operator,no-any-return]

    def classifier(self) -> nn.Linear | None:
        head = self.model.fc if self._resnet else self.model.classifier
        last = head[-1] if isinstance(head, nn.Sequential) else head
        if not isinstance(last, nn.Linear) or not getattr(self, "_linear", True):
            return None
        return last


def torchvision_geometry(name: str) -> tuple[int, int]:
    """(channels, stride) of a torchvision classifier's last feature map, from shapes alone where the architecture
    builds on the meta device (no weights, no compute)."""
    model = _probe(name)
    encoder = TorchvisionEncoder(name, model, [], mean=IMAGENET_MEAN, std=IMAGENET_STD, check_head=False)
    with torch.inference_mode():
        features = encoder.forward_features(torch.zeros(1, 3, 224, 224, device=next(model.parameters()).device))
    return int(features.shape[1]), 224 // int(features.shape[-1])


def _probe(name: str) -> nn.Module:
    """The architecture without weights, only to read its module names: built on the meta device (no memory, no
    initialisation) where its constructor allows it, else on the CPU (RegNet's computes its widths from data)."""
    from torchvision.models import get_model

    try:
        with torch.device("meta"):
            return get_model(name, weights=None)  # type: ignore[no-any-return]
    except (NotImplementedError, RuntimeError):
        return get_model(name, weights=None)  # type: ignore[no-any-return]


def _classes_in_state(state: dict[str, Tensor], probe: nn.Module, default: int) -> int:
    """Classes of the head in `state` (a fine-tuned head), read off the layer that gives the class scores in the
    architecture as built by default (the one with `default` outputs): SqueezeNet's is a 1x1 convolution, not a
    linear layer. The last of them, so the aux heads of GoogLeNet and Inception v3 are passed over; when no layer
    gives `default`, the final linear layer's."""
    layers = [
        name
        for name, module in probe.named_modules()
        if (isinstance(module, nn.Linear) and module.out_features == default)
        or (isinstance(module, nn.Conv2d) and module.out_channels == default)
    ]
    if not layers:
        return classes_in_state(state, probe, default)
    weight = state.get(f"{layers[-1]}.weight")
    return int(weight.shape[0]) if weight is not None and weight.dim() >= 2 else default


def _vit_side(state: dict[str, Tensor], probe: nn.Module) -> int | None:
    """The input side a torchvision ViT's state dict is for, read off its position embeddings (a class token and a
    square grid of patches); None for any other architecture."""
    position = state.get("encoder.pos_embedding")
    patch = getattr(probe, "patch_size", None)
    if position is None or position.dim() != 3 or not isinstance(patch, int):
        return None
    cells = int(position.shape[1]) - 1
    side = math.isqrt(max(cells, 0))
    return side * patch if side > 0 and side * side == cells else None


def _cached_file(url: str) -> Path:
    return Path(torch.hub.get_dir()) / "checkpoints" / os.path.basename(url)


def torchvision_weights_available(name: str) -> bool:
    from torchvision.models import get_model_weights

    return _cached_file(get_model_weights(name).DEFAULT.url).is_file()


def build_torchvision(name: str, weights: str | None) -> Encoder:
    import torchvision
    from torchvision.models import get_model, get_model_weights

    from attnviz.models.weights import load_into, load_state_dict

    try:
        default = get_model_weights(name).DEFAULT
    except (ValueError, KeyError):
        raise UsageError(f"unknown torchvision model {name!r}") from None
    transforms = default.transforms()
    if not hasattr(transforms, "mean") or "categories" not in default.meta:
        raise UsageError(
            f"torchvision:{name} is not an image classifier ({type(transforms).__name__} model): attnviz explains "
            "classifiers; for a detection or segmentation model, explain its classification backbone instead"
        )
    resample = "bicubic" if "BICUBIC" in str(getattr(transforms, "interpolation", "")) else "bilinear"
    mean, std = tuple(transforms.mean), tuple(transforms.std)
    trained_size = smaller_side(getattr(transforms, "crop_size", None), TRAINED_SIZE)
    if weights is not None:
        state = load_state_dict(weights)
        probe = _probe(name)
        classes = _classes_in_state(state, probe, len(default.meta["categories"]))
        # a ViT is built for one input size, that of its position embeddings (vit_h_14's default weights: 518)
        side = _vit_side(state, probe)
        sized = {} if side is None or side == getattr(probe, "image_size", None) else {"image_size": side}
        model = get_model(name, weights=None, num_classes=classes, **sized)
        trained_size = side or trained_size
        load_into(model, state, weights, name)
        labels = default.meta["categories"] if classes == len(default.meta["categories"]) else numbered_labels(classes)
        return torchvision_encoder(
            name, model, list(labels), mean=mean, std=std, resample=resample, trained_size=trained_size
        )
    cached = _cached_file(default.url)
    try:
        # cached: no download, nothing printed, the process's streams are left alone
        model = get_model(name, weights=default) if cached.is_file() else _download(name, default)
    except (OSError, RuntimeError, ValueError) as exc:  # URLError is an OSError
        reason = str(getattr(exc, "reason", "") or exc).splitlines()[0][:120]
        raise WeightsUnavailable(
            f"weights for {name} are not in torchvision's cache ({cached}) and could not be downloaded ({reason}); "
            f"put {os.path.basename(default.url)} there, or pass a state dict with --weights FILE"
        ) from None
    del torchvision
    categories = list(default.meta["categories"])
    return torchvision_encoder(
        name, model, categories, mean=mean, std=std, resample=resample, trained_size=trained_size
    )


def _download(name: str, weights: Any) -> nn.Module:
    """The model with its weights downloaded by torchvision. Asked first whether the server answers (through urllib,
    so proxy settings apply), so no network means an error at once and nothing printed. torch.hub prints
    "Downloading: ..." on stdout, which belongs to --json and -o -: during an actual download (and only then) the
    streams are redirected, and what was said goes to stderr."""
    import urllib.request

    from torchvision.models import get_model

    urllib.request.urlopen(urllib.request.Request(weights.url, method="HEAD"), timeout=5).close()
    said = io.StringIO()
    with contextlib.redirect_stdout(said), contextlib.redirect_stderr(said):
        model = get_model(name, weights=weights)
    sys.stderr.write(said.getvalue())
    return model  # type: ignore[no-any-return]


def torchvision_encoder(name: str, model: nn.Module, labels: list[str], **kwargs: Any) -> Encoder:
    """ResNet-style and features/avgpool/classifier models through their parts (a pool-then-linear head gives
    classifier queries); every other torchvision classifier through the generic path."""
    from attnviz.models.generic import ModuleEncoder

    resnet = hasattr(model, "fc") and hasattr(model, "layer4")
    if resnet or all(hasattr(model, a) for a in ("features", "avgpool", "classifier")):
        return TorchvisionEncoder(name, model, labels, **kwargs)
    return ModuleEncoder(name, model, labels, **kwargs)


def _factory(name: str) -> EncoderFactory:
    return lambda weights: build_torchvision(name, weights)


for _name in TORCHVISION_NAMES:
    register_encoder(_name)(_factory(_name))
register_prefix("torchvision", build_torchvision)
