"""Shared by the builders: weights that cannot be had, class counts read off a state dict, label lists."""

from __future__ import annotations

from torch import Tensor, nn

from attnviz.errors import AttnvizError


class WeightsUnavailable(AttnvizError):
    """Pretrained weights are neither cached nor downloadable here."""


def final_linear_key(model: nn.Module) -> str | None:
    linears = [name for name, module in model.named_modules() if isinstance(module, nn.Linear)]
    return f"{linears[-1]}.weight" if linears else None


def classes_in_state(state: dict[str, Tensor], model: nn.Module, default: int, key: str | None = None) -> int:
    """Number of classes a weights file was trained for (a fine-tuned head), read off its classifier's weight
    (`key`, by default the model's final linear layer's)."""
    key = key or final_linear_key(model)
    if key is not None and key in state and state[key].dim() == 2:
        return int(state[key].shape[0])
    return default


def smaller_side(value: object, default: int) -> int:
    """The smaller side from a size that may be an int, a sequence of sides, or missing."""
    if isinstance(value, int):
        return value
    if isinstance(value, (list, tuple)) and value and all(isinstance(v, int) for v in value):
        return min(value)
    return default


def numbered_labels(classes: int) -> list[str]:
    return [f"class {i}" for i in range(classes)]


def imagenet_labels() -> list[str]:
    from timm.data import ImageNetInfo

    info = ImageNetInfo()
    return [info.index_to_description(i) for i in range(1000)]
