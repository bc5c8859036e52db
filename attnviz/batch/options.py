"""What `attnviz run` was asked to do, torch-free, and the checks made on it before any work starts."""

from __future__ import annotations

from dataclasses import dataclass

from attnviz.errors import UsageError
from attnviz.options import (
    CLASS_FREE_MODES,
    DEFAULT_ALPHA,
    DEFAULT_COLORMAP,
    DEFAULT_ENCODER,
    DEFAULT_MAX_PIXELS,
    DEFAULT_SIZE,
    DEFAULT_SMOOTH,
    Backend,
    Interpolation,
    Mode,
    Query,
    check_targets,
)

#: `-o -`: the image goes to stdout.
STDOUT = "-"


@dataclass(frozen=True)
class RunOptions:
    mode: Mode | None = None  # None: the --head file's mode, else concat
    encoder: str = DEFAULT_ENCODER
    weights: str | None = None
    labels: str | None = None  # a file of class names
    layer: str | None = None
    head: str | None = None
    query: Query = Query.auto
    size: int = DEFAULT_SIZE
    classify_size: int | None = None  # recognition pass; None: the encoder's trained size
    targets: tuple[str, ...] = ()
    topk: int = 1  # maps per image: its top-k classes (when no targets are given)
    interpolation: Interpolation = Interpolation.bilinear
    smooth: float = DEFAULT_SMOOTH  # Gaussian sigma of the drawn map, share of the shorter side
    colormap: str = DEFAULT_COLORMAP
    alpha: float = DEFAULT_ALPHA
    annotate: bool = False  # a caption band under each overlay: class, probability, mode, colour bar
    output: str | None = None
    format: str = "png"
    overwrite: bool = False
    skip_existing: bool = False
    json: bool = False
    save_scores: bool = False
    record_weights: bool = False  # each JSON record carries the grid's weights (flat, row-major): what audits read
    quiet: bool = False
    fail_fast: bool = False
    null_separated: bool = False
    batch_size: int = 1
    workers: int | None = None  # lanes; None: one per core, at most MAX_LANES
    device: str = "auto"
    max_pixels: int = DEFAULT_MAX_PIXELS
    backend: Backend = Backend.auto  # what runs the network: torch or an inference runtime (see models/runtime.py)
    verbose: bool = False  # say which backend runs the network, and why


def check_run_options(options: RunOptions) -> None:
    """Every check that needs no model, so a mistyped option fails before anything is loaded."""
    check_targets(options.targets, options.topk)
    if options.mode in CLASS_FREE_MODES and (options.targets or options.topk > 1):
        raise UsageError(
            f"--mode {options.mode.value} shows the class token's attention, the same for every class: "
            "--target and --topk do not apply"
        )
    if options.batch_size < 1 or (options.workers is not None and options.workers < 1):
        raise UsageError("--batch-size and --workers must be at least 1")
    if options.skip_existing and options.overwrite:
        raise UsageError("give either --skip-existing (keep outputs) or --overwrite (replace them), not both")
