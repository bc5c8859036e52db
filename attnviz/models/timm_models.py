"""Any timm classifier as `timm:NAME`: weights from the Hugging Face cache or a local file."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from attnviz.errors import UsageError
from attnviz.models.base import IMAGENET_MEAN, IMAGENET_STD, Encoder
from attnviz.models.common import WeightsUnavailable, classes_in_state, imagenet_labels, numbered_labels, smaller_side
from attnviz.models.registry import register_prefix
from attnviz.options import TRAINED_SIZE


class TimmEncoder(Encoder):
    """Any timm classifier: timm already splits `forward_features` from `forward_head`."""

    def __init__(self, name: str, model: nn.Module, labels: list[str], **kwargs: object) -> None:
        super().__init__(name, labels, **kwargs)  # type: ignore[arg-type]
        self.model = model.eval()
        self._linear = self.head_is_pool_linear()

    def forward_features(self, x: Tensor) -> Tensor:
        return self.model.forward_features(x)  # type: ignore[operator,no-any-return]

    def forward_head(self, features: Tensor) -> Tensor:
        return self.model.forward_head(features)  # type: ignore[operator,no-any-return]

    def classifier(self) -> nn.Linear | None:
        head = self.model.get_classifier()  # type: ignore[operator]
        if not isinstance(head, nn.Linear) or not getattr(self, "_linear", True):
            return None
        return head


def build_timm(name: str, weights: str | None) -> Encoder:
    import timm

    from attnviz.models.weights import load_into, load_state_dict

    if not name or not timm.is_model(name):
        raise UsageError(f"unknown timm model {name!r}; see timm.list_models()")
    if weights is not None:
        state = load_state_dict(weights)
        probe = create_timm_model(name)
        default_classes = int(getattr(probe, "num_classes", 1000))
        classes = _classes_in_state(state, probe, default_classes)
        model = probe if classes == default_classes else create_timm_model(name, num_classes=classes)
        load_into(model, state, weights, f"timm:{name}")
    else:
        model = _timm_pretrained(name)
    return timm_encoder(f"timm:{name}", model)


def _classes_in_state(state: dict[str, Tensor], probe: nn.Module, default: int) -> int:
    """Classes of the head in `state`, 0 when it has none (a backbone such as DINOv2's, saved without a head).

    The head is found by the name timm gives it (`pretrained_cfg["classifier"]`), not as the last linear layer:
    in a model built without classes that is an MLP's."""
    head = (getattr(probe, "pretrained_cfg", {}) or {}).get("classifier")
    if isinstance(head, (list, tuple)):  # distilled models: (head, head_dist)
        head = head[0] if head else None
    if not isinstance(head, str):
        return classes_in_state(state, probe, default)
    weight = state.get(f"{head}.weight")
    if weight is not None and (weight.dim() == 2 or (weight.dim() == 4 and tuple(weight.shape[2:]) == (1, 1))):
        return int(weight.shape[0])  # a linear head, or a 1 x 1 convolution's (DPN, DLA)
    if any(key.startswith(f"{head}.") for key in state):  # a head of another form: the mismatch will say how
        return default
    return 0


def create_timm_model(name: str, pretrained: bool = False, **kwargs: Any) -> nn.Module:
    """timm's model, taking any input size where the architecture allows it (position embeddings interpolated)."""
    import timm

    try:
        return timm.create_model(name, pretrained=pretrained, dynamic_img_size=True, **kwargs)  # type: ignore[no-any-return]
    except TypeError:  # an architecture without the option: CNNs take any size anyway
        return timm.create_model(name, pretrained=pretrained, **kwargs)  # type: ignore[no-any-return]


def timm_encoder(name: str, model: nn.Module, labels: list[str] | None = None) -> Encoder:
    """A timm model as an encoder: `forward_features`/`forward_head` when its features are an NCHW map, else (tokens,
    channels-last maps) the generic path, which finds the grid in its blocks."""
    from attnviz.models.generic import ModuleEncoder
    from attnviz.models.grids import as_grid

    cfg = getattr(model, "pretrained_cfg", {}) or {}
    classes = int(getattr(model, "num_classes", 1000))
    kwargs: dict[str, Any] = {
        "mean": tuple(cfg.get("mean", IMAGENET_MEAN)),
        "std": tuple(cfg.get("std", IMAGENET_STD)),
        "resample": "bicubic" if cfg.get("interpolation", "bicubic") == "bicubic" else "bilinear",
        "trained_size": smaller_side(tuple(cfg.get("input_size", ()))[1:], TRAINED_SIZE),  # (C, H, W)
    }
    # a backbone's output is pooled features, not class scores: it has no labels
    labels = [] if classes == 0 else labels or (imagenet_labels() if classes == 1000 else numbered_labels(classes))
    probe = torch.zeros(1, 3, 96, 128)
    try:
        with torch.inference_mode():
            features = model.eval().forward_features(probe)  # type: ignore[operator]
        grid = as_grid(features, 96, 128)
        native = grid is not None and grid.cells is features and hasattr(model, "forward_head")
    except Exception:  # fixed-size models and the like: the generic path sorts them out
        native = False
    if native:
        encoder = TimmEncoder(name, model, labels, **kwargs)
        encoder.headless = classes == 0
        return encoder
    return ModuleEncoder(name, model, labels if classes else None, headless=classes == 0, **kwargs)


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


def hub_reachable(timeout: float = 3.0) -> bool:
    """Whether the Hugging Face hub answers, asked through its own client: HF_ENDPOINT, HF_HUB_OFFLINE and the
    proxy settings apply. Without this, a download with no network retries for most of a minute."""
    from huggingface_hub import constants
    from huggingface_hub.utils import get_session

    if constants.HF_HUB_OFFLINE:
        return False
    try:
        get_session().head(constants.ENDPOINT, timeout=timeout)
    except Exception:  # whatever the client raises for no network, no proxy, no DNS
        return False
    return True


def timm_weights_cached(name: str) -> bool:
    return timm_cached_file(name) is not None


def _timm_pretrained(name: str) -> nn.Module:
    """timm's pretrained model: from the Hugging Face cache's file when it is there (no network call at all), else
    through the hub as timm does it (its proxies, HF_ENDPOINT and offline settings apply)."""

    cached = timm_cached_file(name)
    if cached is None and not hub_reachable():
        raise WeightsUnavailable(
            f"pretrained weights for timm:{name} are not in the Hugging Face cache and the hub cannot be reached; "
            "download them where there is network (timm.create_model(name, pretrained=True)), or pass a state dict "
            "with --weights FILE"
        )
    try:
        if cached is not None:
            return create_timm_model(name, pretrained=True, pretrained_cfg_overlay={"file": cached})
        return create_timm_model(name, pretrained=True)
    except Exception as exc:  # hub and network errors come in many types
        reason = (str(exc).splitlines() or [type(exc).__name__])[0][:120]
        raise WeightsUnavailable(
            f"cannot load pretrained weights for timm:{name} ({reason}); they are not in the Hugging Face cache: "
            "download them where there is network (timm.create_model(name, pretrained=True)), or pass a state dict "
            "with --weights FILE"
        ) from None


register_prefix("timm", build_timm)
