"""Encoders beyond the embedded default: torchvision classifiers by name, and any timm model as `timm:NAME`.

Pretrained weights come from each library's own cache (downloaded there on first use when there is network), or
from a local file given with --weights.
"""

from __future__ import annotations

import contextlib
import io
import os
import sys
from pathlib import Path

import torch
from torch import Tensor, nn

from attnviz.encoders import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    TRAINED_SIZE,
    Encoder,
    TimmEncoder,
    imagenet_labels,
    register_encoder,
    register_prefix,
)
from attnviz.errors import AttnvizError, UsageError

#: torchvision classifiers offered by name (any other torchvision classifier works as `torchvision:NAME`).
TORCHVISION_NAMES = ("resnet18", "resnet50", "mobilenet_v3_large", "efficientnet_b0", "convnext_tiny", "vgg16")


class WeightsUnavailable(AttnvizError):
    """Pretrained weights are neither cached nor downloadable here."""


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
    """(channels, stride) of a torchvision classifier's last feature map, from shapes alone (no weights, no compute)."""
    from torchvision.models import get_model

    with torch.device("meta"):
        model = get_model(name, weights=None)
        encoder = TorchvisionEncoder(name, model, [], mean=IMAGENET_MEAN, std=IMAGENET_STD, check_head=False)
        features = encoder.forward_features(torch.zeros(1, 3, 224, 224))
    return int(features.shape[1]), 224 // int(features.shape[-1])


def _cached_file(url: str) -> Path:
    return Path(torch.hub.get_dir()) / "checkpoints" / os.path.basename(url)


def torchvision_weights_available(name: str) -> bool:
    from torchvision.models import get_model_weights

    return _cached_file(get_model_weights(name).DEFAULT.url).is_file()


def _final_linear_key(model: nn.Module) -> str | None:
    linears = [name for name, module in model.named_modules() if isinstance(module, nn.Linear)]
    return f"{linears[-1]}.weight" if linears else None


def _classes_in(state: dict[str, Tensor], model: nn.Module, default: int) -> int:
    """Number of classes a weights file was trained for (a fine-tuned head), read off its final linear layer."""
    key = _final_linear_key(model)
    if key is not None and key in state and state[key].dim() == 2:
        return int(state[key].shape[0])
    return default


def build_torchvision(name: str, weights: str | None) -> Encoder:
    import torchvision
    from torchvision.models import get_model, get_model_weights

    from attnviz.weights import load_into, load_state_dict

    try:
        default = get_model_weights(name).DEFAULT
    except (ValueError, KeyError):
        raise UsageError(f"unknown torchvision model {name!r}") from None
    transforms = default.transforms()
    resample = "bicubic" if "BICUBIC" in str(getattr(transforms, "interpolation", "")) else "bilinear"
    mean, std = tuple(transforms.mean), tuple(transforms.std)
    trained_size = _first_int(getattr(transforms, "crop_size", None), TRAINED_SIZE)
    if weights is not None:
        state = load_state_dict(weights)
        with torch.device("meta"):
            probe = get_model(name, weights=None)
        classes = _classes_in(state, probe, len(default.meta["categories"]))
        model = get_model(name, weights=None, num_classes=classes)
        load_into(model, state, weights, name)
        labels = default.meta["categories"] if classes == len(default.meta["categories"]) else _numbered(classes)
        return TorchvisionEncoder(
            name, model, list(labels), mean=mean, std=std, resample=resample, trained_size=trained_size
        )
    cached = _cached_file(default.url)
    # torch.hub prints "Downloading: ..." on stdout, which belongs to --json and -o -: it goes to stderr after a
    # download, and nowhere before a failure, which gets its own one-line error
    said = io.StringIO()
    try:
        with contextlib.redirect_stdout(said), contextlib.redirect_stderr(said):
            model = get_model(name, weights=default)
        sys.stderr.write(said.getvalue())
    except (OSError, RuntimeError, ValueError) as exc:  # URLError is an OSError
        reason = str(getattr(exc, "reason", "") or exc).splitlines()[0][:120]
        raise WeightsUnavailable(
            f"weights for {name} are not in torchvision's cache ({cached}) and could not be downloaded ({reason}); "
            f"put {os.path.basename(default.url)} there, or pass a state dict with --weights FILE"
        ) from None
    del torchvision
    categories = list(default.meta["categories"])
    return TorchvisionEncoder(name, model, categories, mean=mean, std=std, resample=resample, trained_size=trained_size)


def build_timm(name: str, weights: str | None) -> Encoder:
    import timm

    from attnviz.weights import load_into, load_state_dict

    if not name or not timm.is_model(name):
        raise UsageError(f"unknown timm model {name!r}; see timm.list_models()")
    if weights is not None:
        state = load_state_dict(weights)
        probe = timm.create_model(name, pretrained=False)
        default_classes = int(getattr(probe, "num_classes", 1000))
        classes = _classes_in(state, probe, default_classes)
        model = probe if classes == default_classes else timm.create_model(name, pretrained=False, num_classes=classes)
        load_into(model, state, weights, f"timm:{name}")
    else:
        model = _timm_pretrained(name)
    cfg = getattr(model, "pretrained_cfg", {}) or {}
    classes = int(getattr(model, "num_classes", 1000))
    labels = imagenet_labels() if classes == 1000 else _numbered(classes)
    return TimmEncoder(
        f"timm:{name}",
        model,
        labels,
        mean=tuple(cfg.get("mean", IMAGENET_MEAN)),
        std=tuple(cfg.get("std", IMAGENET_STD)),
        resample="bicubic" if cfg.get("interpolation", "bicubic") == "bicubic" else "bilinear",
        trained_size=_first_int(tuple(cfg.get("input_size", ()))[1:], TRAINED_SIZE),  # (C, H, W)
    )


def timm_cached_file(name: str) -> str | None:
    """The local path of timm:NAME's pretrained weights in the Hugging Face cache, or None."""
    import timm
    from huggingface_hub import try_to_load_from_cache

    cfg = timm.models.get_pretrained_cfg(name)
    hub_id = getattr(cfg, "hf_hub_id", None)
    if not hub_id:
        return None
    for filename in ("model.safetensors", "pytorch_model.bin"):
        found = try_to_load_from_cache(hub_id, filename)
        if isinstance(found, str):
            return found
    return None


def timm_weights_cached(name: str) -> bool:
    return timm_cached_file(name) is not None


def _timm_pretrained(name: str) -> nn.Module:
    """timm's pretrained model: from the Hugging Face cache's file when it is there (no network call at all), else
    through the hub as timm does it (its proxies, HF_ENDPOINT and offline settings apply)."""
    import timm

    cached = timm_cached_file(name)
    try:
        if cached is not None:
            return timm.create_model(name, pretrained=True, pretrained_cfg_overlay={"file": cached})
        return timm.create_model(name, pretrained=True)
    except Exception as exc:  # hub and network errors come in many types
        reason = (str(exc).splitlines() or [type(exc).__name__])[0][:120]
        raise WeightsUnavailable(
            f"cannot load pretrained weights for timm:{name} ({reason}); they are not in the Hugging Face cache: "
            "download them where there is network (timm.create_model(name, pretrained=True)), or pass a state dict "
            "with --weights FILE"
        ) from None


def _first_int(value: object, default: int) -> int:
    """The smaller side from a size that may be an int, a sequence of sides, or missing."""
    if isinstance(value, int):
        return value
    if isinstance(value, (list, tuple)) and value and all(isinstance(v, int) for v in value):
        return min(value)
    return default


def _numbered(classes: int) -> list[str]:
    return [f"class {i}" for i in range(classes)]


def _torchvision_factory(name: str):  # type: ignore[no-untyped-def]
    return lambda weights: build_torchvision(name, weights)


for _name in TORCHVISION_NAMES:
    register_encoder(_name)(_torchvision_factory(_name))
register_prefix("timm", build_timm)
register_prefix("torchvision", build_torchvision)
