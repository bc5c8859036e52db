"""Library side of `attnviz compare`, `attnviz encoders` and `attnviz labels`: the CLI only parses options."""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from attnviz import render
from attnviz.encoders import DEFAULT_ENCODER, DEFAULT_SIZE, create_encoder, encoder_names
from attnviz.errors import AttnvizError, UsageError
from attnviz.images import load_image
from attnviz.pipeline import Explainer, Query
from attnviz.scorers import Mode


@dataclass(frozen=True)
class CompareOptions:
    modes: tuple[Mode, ...] = tuple(Mode)
    targets: tuple[str, ...] = ()
    topk: int = 1
    encoder: str = DEFAULT_ENCODER
    weights: str | None = None
    layer: str | None = None
    query: Query = Query.auto
    size: int = DEFAULT_SIZE
    interpolation: render.Interpolation = render.Interpolation.bilinear
    colormap: str = render.DEFAULT_COLORMAP
    alpha: float = render.DEFAULT_ALPHA
    columns: int | None = None
    overwrite: bool = False
    extra: dict[str, object] = field(default_factory=dict)


def default_figure_name(image: str) -> str:
    return f"{Path(image).stem or 'image'}.compare.png"


def compare(image_path: str, output: str | None, options: CompareOptions) -> str:
    """One figure: the photo, then one overlay per mode and class, one forward pass per mode. Returns the path."""
    from attnviz.compare import Panel, comparison_figure, figure_format, save_figure

    if options.targets and options.topk > 1:
        raise UsageError("give either --target (one or more) or --topk, not both")
    out = output or default_figure_name(image_path)
    figure_format(out)  # refuse an unknown extension before any work
    render.colormap_lut(options.colormap)
    if Path(out).exists() and not options.overwrite:
        raise AttnvizError(f"{out}: already exists (use --overwrite to replace it)")
    encoder = create_encoder(options.encoder, options.weights, options.layer)
    image = load_image(image_path).image
    panels: list[Panel] = []
    for mode in dict.fromkeys(options.modes):
        explainer = Explainer(encoder, mode, options.size, query=options.query)
        targets = [explainer.target_index(t) for t in options.targets]
        wanted = [[t for t in targets if t is not None]] if targets else None
        maps = explainer.infer_classes(explainer.preprocess(image)[None], wanted, top=options.topk)[0]
        for result in maps:
            drawn = explainer.draw(result, image.width, image.height, options.interpolation)
            panels.append(Panel(mode.value, drawn.target, drawn.heatmap))
    figure = comparison_figure(
        image, panels, colormap=options.colormap, alpha=options.alpha, columns=options.columns, title=None
    )
    save_figure(figure, out, overwrite=options.overwrite)
    return out


@dataclass(frozen=True)
class EncoderRow:
    name: str
    channels: int | None
    stride: int | None
    weights: str


def encoder_rows() -> list[EncoderRow]:
    """Every registered encoder with its feature map and whether its weights can be loaded right now."""
    from attnviz import zoo

    rows = []
    for name in encoder_names():
        if name == DEFAULT_ENCODER:
            encoder = create_encoder(name)
            rows.append(EncoderRow(name, encoder.channels, encoder.stride, "embedded"))
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


def labels(query: str | None, encoder_name: str, weights: str | None = None) -> list[tuple[int, str]]:
    """(index, name) of the encoder's classes, those containing `query` (case-insensitive) when given."""
    encoder = create_encoder(encoder_name, weights)
    wanted = (query or "").strip().lower()
    return [(i, label) for i, label in enumerate(encoder.labels) if wanted in label.lower()]


__all__ = ["CompareOptions", "compare", "encoder_rows", "format_encoder_rows", "labels", "os"]
