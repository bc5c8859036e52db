"""`attnviz compare`: the photo and one overlay per mode and class, in one figure file."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from attnviz import render
from attnviz.explainer import Explainer
from attnviz.io.images import load_image
from attnviz.io.outputs import check_target
from attnviz.models.generic import read_labels
from attnviz.models.registry import create_encoder
from attnviz.options import COMPARE_MODES, DEFAULT_ENCODER, DEFAULT_SIZE, Backend, Mode, Query, check_targets


@dataclass(frozen=True)
class CompareOptions:
    modes: tuple[Mode, ...] = COMPARE_MODES
    targets: tuple[str, ...] = ()
    topk: int = 1
    encoder: str = DEFAULT_ENCODER
    weights: str | None = None
    labels: str | None = None  # a file of class names
    layer: str | None = None
    query: Query = Query.auto
    size: int = DEFAULT_SIZE
    classify_size: int | None = None
    interpolation: render.Interpolation = render.Interpolation.bilinear
    smooth: float = render.DEFAULT_SMOOTH
    colormap: str = render.DEFAULT_COLORMAP
    alpha: float = render.DEFAULT_ALPHA
    columns: int | None = None
    overwrite: bool = False
    head: str | None = None
    backend: Backend = Backend.auto


def default_figure_name(image: str) -> str:
    return f"{Path(image).stem or 'image'}.compare.png"


def compare(image_path: str, output: str | None, options: CompareOptions) -> str:
    """One figure: the photo, then one overlay per mode and class, one forward pass per mode. Returns the path."""
    from attnviz.render.figures import Panel, comparison_figure, figure_format, save_figure

    check_targets(options.targets, options.topk)  # before any model is loaded; the explainer checks the classes
    out = output or default_figure_name(image_path)
    figure_format(out)  # refuse an unknown extension before any work
    render.check_style(options.colormap, options.alpha)  # the one style check, before any model is loaded
    check_target(out, inputs=(image_path,), overwrite=options.overwrite)
    names = read_labels(options.labels) if options.labels else None
    encoder = create_encoder(options.encoder, options.weights, options.layer, labels=names)
    image = load_image(image_path).image
    panels: list[Panel] = []
    fitted = None
    if options.head is not None:
        from attnviz.attention.heads import head_mode, load_head

        fitted = (head_mode(options.head), load_head(options.head, encoder, head_mode(options.head)))
    modes = list(dict.fromkeys(options.modes))
    if fitted and fitted[0] not in modes:
        modes.append(fitted[0])
    for mode in modes:
        scorer = fitted[1] if fitted and fitted[0] is mode else None
        explainer = Explainer(
            encoder,
            mode,
            options.size,
            query=options.query,
            scorer=scorer,
            classify_size=options.classify_size,
            backend=options.backend,
        )
        classes = explainer.check_targets(options.targets, options.topk)
        for result in explainer.explain_classes(image, classes, options.topk):
            drawn = explainer.draw(result, image.width, image.height, options.interpolation, options.smooth)
            panels.append(Panel(mode.value, drawn.target, drawn.heatmap))
    figure = comparison_figure(
        image, panels, colormap=options.colormap, alpha=options.alpha, columns=options.columns, title=None
    )
    save_figure(figure, out, overwrite=options.overwrite)
    return out
