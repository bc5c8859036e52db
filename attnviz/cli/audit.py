"""`attnviz audit`: parse, then hand off to `attnviz.commands.audit`."""

from __future__ import annotations

import importlib
import shlex
import sys
from typing import Annotated

import typer

from attnviz.cli.options import (
    AlphaOption,
    BackendOption,
    ClassifySizeOption,
    ColormapOption,
    DeviceOption,
    EncoderOption,
    EngineOption,
    HeadOption,
    LabelsOption,
    LayerOption,
    MaxPixelsOption,
    ModeOption,
    QueryOption,
    RayAddressOption,
    SizeOption,
    SmoothOption,
    WeightsOption,
)
from attnviz.cli.process import own_pixel_limit, ray_token
from attnviz.errors import UsageError
from attnviz.options import (
    DEFAULT_ALPHA,
    DEFAULT_COLORMAP,
    DEFAULT_ENCODER,
    DEFAULT_MAX_PIXELS,
    DEFAULT_SIZE,
    DEFAULT_SMOOTH,
    Backend,
    Device,
    Engine,
    Query,
)


def audit(
    inputs: Annotated[
        list[str] | None,
        typer.Argument(
            metavar="INPUT",
            help="Image files, folders (searched recursively) and '-' to read paths from stdin.",
            show_default=False,
        ),
    ] = None,
    output: Annotated[
        str, typer.Option("--output", "-o", metavar="DIR", help="The audit's folder: report, records, pictures.")
    ] = "audit",
    source: Annotated[
        str | None,
        typer.Option(
            "--from",
            metavar="RECORDS",
            help="Analyse the records of an earlier audit or a Ray run (records.jsonl, .parquet or their folder) "
            "instead of explaining images.",
        ),
    ] = None,
    mode: ModeOption = None,
    encoder: EncoderOption = DEFAULT_ENCODER,
    weights: WeightsOption = None,
    labels: LabelsOption = None,
    layer: LayerOption = None,
    query: QueryOption = Query.auto,
    head: HeadOption = None,
    size: SizeOption = DEFAULT_SIZE,
    classify_size: ClassifySizeOption = None,
    smooth: SmoothOption = DEFAULT_SMOOTH,
    colormap: ColormapOption = DEFAULT_COLORMAP,
    alpha: AlphaOption = DEFAULT_ALPHA,
    overwrite: Annotated[
        bool, typer.Option("--overwrite", help="Explain every image again instead of resuming the folder's audit.")
    ] = False,
    null: Annotated[
        bool, typer.Option("-0", "--null", help="Paths on stdin are NUL-separated (find -print0).")
    ] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="Print nothing on stderr but errors.")] = False,
    batch_size: Annotated[int, typer.Option("--batch-size", metavar="N", min=1, help="Images per forward pass.")] = 1,
    workers: Annotated[
        int | None,
        typer.Option(
            "--workers",
            metavar="N",
            min=1,
            help="Images in flight at once; with --engine ray, actors [default: one per CPU of the cluster].",
            show_default=False,
        ),
    ] = None,
    device: DeviceOption = Device.auto,
    max_pixels: MaxPixelsOption = DEFAULT_MAX_PIXELS,
    backend: BackendOption = Backend.auto,
    engine: EngineOption = Engine.local,
    ray_address: RayAddressOption = None,
) -> None:
    """Which strategies the model uses for each class across a dataset: one report.html that opens anywhere.

    Explains every image (resuming an earlier audit of the same folder), clusters each class's maps into
    strategies, flags border peaks, small strategies (possible shortcuts), low probabilities and outliers.
    """
    if ray_address is not None and engine is not Engine.ray:
        raise UsageError("--ray-address needs --engine ray")
    if engine is Engine.ray and source is not None:
        raise UsageError("--from analyses records with no network: it needs no --engine")
    if engine is Engine.ray:  # without the extra: one line naming it, before any model is loaded
        if ray_address is None:
            ray_token()
        importlib.import_module("attnviz.ray")
    own_pixel_limit()
    from attnviz.batch.options import RunOptions
    from attnviz.commands.audit import AuditOptions
    from attnviz.commands.audit import audit as run_audit

    run = RunOptions(
        mode=mode,
        encoder=encoder,
        weights=weights,
        labels=labels,
        layer=layer,
        head=head,
        query=query,
        size=size,
        classify_size=classify_size,
        smooth=smooth,
        colormap=colormap,
        alpha=alpha,
        overwrite=overwrite,
        quiet=quiet,
        null_separated=null,
        batch_size=batch_size,
        workers=workers,
        device=device.value,
        max_pixels=max_pixels,
        backend=backend,
    )
    command = shlex.join(["attnviz", *sys.argv[1:]]) if sys.argv[1:2] == ["audit"] else "attnviz audit"
    options = AuditOptions(
        out_dir=output, source=source, run=run, command=command, engine=engine.value, ray_address=ray_address
    )
    raise typer.Exit(run_audit(list(inputs or []), options))
