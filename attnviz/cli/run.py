"""`attnviz run` and `attnviz compare`: parse, then hand off to the library."""

from __future__ import annotations

import importlib
import sys
from typing import Annotated

import typer

from attnviz.cli.options import (
    AlphaOption,
    BackendOption,
    BatchSizeOption,
    ClassifySizeOption,
    ColormapOption,
    DeviceOption,
    EncoderOption,
    EngineOption,
    HeadOption,
    InterpolationOption,
    LabelsOption,
    LayerOption,
    MaxPixelsOption,
    ModeOption,
    NullOption,
    OverwriteOption,
    QueryOption,
    QuietOption,
    RayAddressOption,
    SizeOption,
    SmoothOption,
    TargetOption,
    TopkOption,
    WeightsOption,
)
from attnviz.cli.process import own_pixel_limit, ray_token
from attnviz.errors import UsageError
from attnviz.options import (
    COMPARE_MODES,
    DEFAULT_ALPHA,
    DEFAULT_COLORMAP,
    DEFAULT_ENCODER,
    DEFAULT_MAX_PIXELS,
    DEFAULT_SIZE,
    DEFAULT_SMOOTH,
    Backend,
    Device,
    Engine,
    Format,
    Interpolation,
    Mode,
    Query,
)


def run(
    inputs: Annotated[
        list[str],
        typer.Argument(
            metavar="INPUT",
            help="Image files, folders (searched recursively) and '-' to read paths from stdin.",
            show_default=False,
        ),
    ],
    mode: ModeOption = None,
    target: TargetOption = None,
    topk: TopkOption = 1,
    encoder: EncoderOption = DEFAULT_ENCODER,
    weights: WeightsOption = None,
    labels: LabelsOption = None,
    layer: LayerOption = None,
    query: QueryOption = Query.auto,
    head: HeadOption = None,
    size: SizeOption = DEFAULT_SIZE,
    classify_size: ClassifySizeOption = None,
    output: Annotated[
        str | None,
        typer.Option(
            "--output",
            "-o",
            metavar="PATH",
            help="Output file (one input; '-' for stdout) or folder (several inputs). "
            "Default: NAME.attn-MODE.png in the current folder, mirroring input folders.",
        ),
    ] = None,
    format: Annotated[
        Format, typer.Option("--format", "-f", help="Image format when naming outputs in a folder.")
    ] = Format.png,
    interpolation: InterpolationOption = Interpolation.bilinear,
    smooth: SmoothOption = DEFAULT_SMOOTH,
    colormap: ColormapOption = DEFAULT_COLORMAP,
    alpha: AlphaOption = DEFAULT_ALPHA,
    annotate: Annotated[
        bool,
        typer.Option("--annotate", help="Add a band under each map: class, probability, mode and colour bar."),
    ] = False,
    overwrite: OverwriteOption = False,
    skip_existing: Annotated[
        bool, typer.Option("--skip-existing", help="Skip inputs whose output exists (resume a run).")
    ] = False,
    json: Annotated[bool, typer.Option("--json", help="Print one JSON object per input on stdout.")] = False,
    save_scores: Annotated[
        bool, typer.Option("--save-scores", help="Also save the grid's attention weights as float32 .npy.")
    ] = False,
    null: NullOption = False,
    quiet: QuietOption = False,
    fail_fast: Annotated[bool, typer.Option("--fail-fast", help="Stop at the first input that fails.")] = False,
    batch_size: BatchSizeOption = 1,
    workers: Annotated[
        int | None,
        typer.Option(
            "--workers",
            metavar="N",
            min=1,
            help="Images in flight at once, each on its own thread [default: one per CPU core, at most 4]; with "
            "--engine ray, actors [default: one per CPU of the cluster].",
            show_default=False,
        ),
    ] = None,
    device: DeviceOption = Device.auto,
    max_pixels: MaxPixelsOption = DEFAULT_MAX_PIXELS,
    engine: EngineOption = Engine.local,
    ray_address: RayAddressOption = None,
    backend: BackendOption = Backend.auto,
    verbose: Annotated[
        bool, typer.Option("--verbose", "-v", help="Say which backend runs the network, and why.")
    ] = False,
) -> None:
    """Draw where the encoder finds the evidence for a class, as a heat map over each input image."""
    if ray_address is not None and engine is not Engine.ray:
        raise UsageError("--ray-address needs --engine ray")
    if engine is Engine.ray:  # without the extra: one line naming it, before any model is loaded
        if ray_address is None:
            ray_token()
        importlib.import_module("attnviz.ray")
    own_pixel_limit()
    from attnviz.batch.options import RunOptions

    options = RunOptions(
        mode=mode,
        encoder=encoder,
        weights=weights,
        labels=labels,
        layer=layer,
        head=head,
        query=query,
        size=size,
        classify_size=classify_size,
        targets=tuple(target or ()),
        topk=topk,
        interpolation=interpolation,
        smooth=smooth,
        colormap=colormap,
        alpha=alpha,
        annotate=annotate,
        output=output,
        format=format.value,
        overwrite=overwrite,
        skip_existing=skip_existing,
        json=json,
        save_scores=save_scores,
        quiet=quiet,
        fail_fast=fail_fast,
        null_separated=null,
        batch_size=batch_size,
        workers=workers,
        device=device.value,
        max_pixels=max_pixels,
        backend=backend,
        verbose=verbose,
    )
    if engine is Engine.ray:
        from attnviz.ray.engine import run as run_ray

        raise typer.Exit(run_ray(inputs, options, ray_address))
    from attnviz.batch.runner import run as run_local

    raise typer.Exit(run_local(inputs, options))


def compare(
    image: Annotated[str, typer.Argument(metavar="IMAGE", help="The photo to explain.", show_default=False)],
    output: Annotated[
        str | None,
        typer.Option(
            "--output", "-o", metavar="PATH", help="Figure file: .png, .pdf or .svg. Default: NAME.compare.png"
        ),
    ] = None,
    mode: Annotated[
        list[Mode] | None,
        typer.Option(
            "--mode",
            "-m",
            help="Scorers to show (repeat). Default: dot and concat (without a fitted head, general draws what concat "
            "does), plus the --head file's mode.",
        ),
    ] = None,
    target: TargetOption = None,
    topk: TopkOption = 1,
    encoder: EncoderOption = DEFAULT_ENCODER,
    weights: WeightsOption = None,
    labels: LabelsOption = None,
    layer: LayerOption = None,
    query: QueryOption = Query.auto,
    size: SizeOption = DEFAULT_SIZE,
    classify_size: ClassifySizeOption = None,
    interpolation: InterpolationOption = Interpolation.bilinear,
    smooth: SmoothOption = DEFAULT_SMOOTH,
    colormap: ColormapOption = DEFAULT_COLORMAP,
    alpha: AlphaOption = DEFAULT_ALPHA,
    columns: Annotated[int | None, typer.Option("--columns", metavar="N", min=1, help="Panels per row.")] = None,
    head: Annotated[
        str | None, typer.Option("--head", metavar="FILE", help="Fitted head, used for the panel of its mode.")
    ] = None,
    overwrite: OverwriteOption = False,
    backend: BackendOption = Backend.auto,
) -> None:
    """One figure for a paper or a lesson: the photo, then one overlay per mode (and class), with a colour bar."""
    own_pixel_limit()
    from attnviz.commands.compare import CompareOptions
    from attnviz.commands.compare import compare as draw_comparison

    options = CompareOptions(
        modes=tuple(mode or COMPARE_MODES),
        targets=tuple(target or ()),
        topk=topk,
        encoder=encoder,
        weights=weights,
        labels=labels,
        layer=layer,
        query=query,
        size=size,
        classify_size=classify_size,
        interpolation=interpolation,
        smooth=smooth,
        colormap=colormap,
        alpha=alpha,
        columns=columns,
        overwrite=overwrite,
        head=head,
        backend=backend,
    )
    written = draw_comparison(image, output, options)
    print(f"wrote {written}", file=sys.stderr)
