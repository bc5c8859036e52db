"""Library side of `attnviz compare`, `attnviz encoders` and `attnviz labels`: the CLI only parses options."""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from PIL import Image

from attnviz import render
from attnviz.encoders import DEFAULT_ENCODER, DEFAULT_SIZE, Encoder, create_encoder, encoder_names
from attnviz.errors import UsageError
from attnviz.images import load_image
from attnviz.outputs import check_target
from attnviz.pipeline import Explainer, Query
from attnviz.scorers import Mode

if TYPE_CHECKING:
    from attnviz.evaluate import EvalRow
    from attnviz.fit import FitReport


#: compare's default panels. The data-free general and concat heads draw the same map (correlation 0.9999: concat
#: is built to reproduce general), so a default figure shows dot and concat; a fitted --head adds its own mode.
COMPARE_MODES = (Mode.dot, Mode.concat)


@dataclass(frozen=True)
class CompareOptions:
    modes: tuple[Mode, ...] = COMPARE_MODES
    targets: tuple[str, ...] = ()
    topk: int = 1
    encoder: str = DEFAULT_ENCODER
    weights: str | None = None
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
    check_target(out, inputs=(image_path,), overwrite=options.overwrite)
    encoder = create_encoder(options.encoder, options.weights, options.layer)
    if options.topk > len(encoder.labels):
        raise UsageError(f"--topk {options.topk}: encoder {encoder.name} has only {len(encoder.labels)} classes")
    image = load_image(image_path).image
    panels: list[Panel] = []
    fitted = None
    if options.head is not None:
        from attnviz.heads import head_mode, load_head

        fitted = (head_mode(options.head), load_head(options.head, encoder, head_mode(options.head)))
    modes = list(dict.fromkeys(options.modes))
    if fitted and fitted[0] not in modes:
        modes.append(fitted[0])
    for mode in modes:
        scorer = fitted[1] if fitted and fitted[0] is mode else None
        explainer = Explainer(
            encoder, mode, options.size, query=options.query, scorer=scorer, classify_size=options.classify_size
        )
        targets = [explainer.target_index(t) for t in options.targets]
        wanted = [[t for t in targets if t is not None]] if targets else None
        small = explainer.preprocess_classify(image)
        recognise = None if small is None else small[None]
        maps = explainer.infer_classes(explainer.preprocess(image)[None], wanted, options.topk, recognise)[0]
        for result in maps:
            drawn = explainer.draw(result, image.width, image.height, options.interpolation, options.smooth)
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


# -- eval and fit ------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class EvalOptions:
    modes: tuple[Mode, ...] = tuple(Mode)
    heads: tuple[str, ...] = ()
    gradcam: bool = True
    encoder: str = DEFAULT_ENCODER
    weights: str | None = None
    mosaics: int = 40
    curve_images: int = 20
    seed: int = 0
    size: int = DEFAULT_SIZE
    curve_size: int = 224


def load_folder(folder: str) -> tuple[list[str], list[Image.Image]]:
    """Paths and RGB pictures of every readable image under `folder`; unreadable ones are reported and skipped."""
    import sys

    from attnviz.errors import InputError
    from attnviz.inputs import walk_folder
    from attnviz.singles import MASK_SUFFIX

    if not os.path.isdir(folder):
        raise UsageError(f"{folder}: not a folder")
    paths: list[str] = []
    images: list[Image.Image] = []
    for path in walk_folder(folder):
        if path.endswith(MASK_SUFFIX):  # an object mask beside its photo (eval --singles), not a photo
            continue
        try:
            images.append(load_image(path).image)
            paths.append(path)
        except InputError as exc:
            print(f"attnviz: skipping {exc}", file=sys.stderr)
    return paths, images


def tile_classes(encoder: Encoder, images: Sequence[Image.Image], mosaic_size: int) -> list[int]:
    """Top-1 class of each photo as it appears in a mosaic: a centre square a quarter of the mosaic's area."""
    from attnviz.evaluate import square

    side = mosaic_size // 2
    explainer = Explainer(encoder, Mode.dot, side)
    return [explainer.infer(explainer.preprocess(square(im, side))[None], [None])[0].target.index for im in images]


def run_eval(
    folder: str, options: EvalOptions, progress: Callable[[], None] | None = None
) -> tuple[list[EvalRow], int, int]:
    """Rows of the evaluation table, the number of mosaics and the number of images they rest on."""
    import random

    from attnviz.evaluate import Method, evaluate, plan_mosaics
    from attnviz.heads import head_mode, load_head

    encoder = create_encoder(options.encoder, options.weights)  # draws nothing at random: the caller's RNG stays
    _, images = load_folder(folder)
    if len(images) < 4:
        raise UsageError(f"{folder}: needs at least 4 readable images, found {len(images)}")
    methods = [Method(mode.value, Explainer(encoder, mode, options.size)) for mode in dict.fromkeys(options.modes)]
    for head in options.heads:
        mode = head_mode(head)
        scorer = load_head(head, encoder, mode)
        methods.append(Method(f"{mode.value} {Path(head).name}", Explainer(encoder, mode, options.size, scorer=scorer)))
    if options.gradcam:
        methods.append(Method("grad-cam", Explainer(encoder, Mode.dot, options.size, query=Query.gradient), True))
    classes = tile_classes(encoder, images, options.size)
    mosaics = plan_mosaics(classes, options.mosaics, options.seed)
    if not mosaics:
        raise UsageError(f"{folder}: the photos need at least 4 different top-1 classes to build mosaics")
    curve = random.Random(options.seed).sample(range(len(images)), min(options.curve_images, len(images)))
    rows = evaluate(methods, images, classes, mosaics, sorted(curve), options.curve_size, progress)
    return rows, len(mosaics), len(images)


def run_singles(
    folder: str,
    modes: Sequence[Mode],
    encoder_name: str,
    weights: str | None,
    size: int,
    gradcam: bool,
    as_json: bool,
    min_prob: float,
) -> str:
    """`attnviz eval --singles`: the table (or JSON) of every way of explaining masked single photos."""
    import json
    import sys

    from attnviz.progress import Progress
    from attnviz.singles import format_singles, load_singles, singles_rows

    encoder = create_encoder(encoder_name, weights)
    photos, masked = load_singles(folder, encoder, min_prob, say=lambda m: print(f"attnviz: {m}", file=sys.stderr))
    if not photos:
        raise UsageError(
            f"{folder}: no photo with a mask whose object the encoder recognises on its own "
            f"({masked} with masks; masks come from alpha channels or NAME.mask.png files)"
        )
    rows = singles_rows(encoder, list(dict.fromkeys(modes)), size, gradcam)
    progress = Progress(sys.stderr, len(rows) * len(photos), enabled=sys.stderr.isatty(), unit="maps")
    for row in rows:
        for photo in photos:
            row.rate(photo)
            progress.advance()
    progress.clear()
    if as_json:
        return json.dumps(
            {"folder": folder, "photos": len(photos), "masked": masked, "rows": [r.to_json() for r in rows]}
        )
    return format_singles(rows, len(photos), masked, min_prob)


def run_fit(
    folder: str,
    mode: Mode,
    output: str,
    *,
    steps: int,
    holdout: float,
    seed: int,
    lr: float | None,
    encoder: str,
    weights: str | None,
    size: int,
    overwrite: bool,
    progress: Callable[[str], None] | None = None,
) -> FitReport:
    from attnviz.fit import fit_head
    from attnviz.heads import save_head

    check_target(output, overwrite=overwrite)  # before minutes of work, not after
    if not output.endswith(".safetensors"):
        raise UsageError(f"{output}: heads are saved as .safetensors")
    model = create_encoder(encoder, weights)
    _, images = load_folder(folder)
    if progress:
        progress(f"{len(images)} photos; classifying them")
    classes = tile_classes(model, images, size)
    scorer, report = fit_head(
        model, mode, images, classes, size=size, steps=steps, holdout=holdout, seed=seed, lr=lr, progress=progress
    )
    save_head(scorer, model, output, overwrite=overwrite)
    return report
