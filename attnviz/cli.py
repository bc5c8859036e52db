"""Command line: parse options, hand them to the library, turn its errors into one line and an exit status."""

from __future__ import annotations

import re
import sys
import warnings
from enum import Enum
from typing import Annotated

import typer

try:  # Typer 0.2x vendors its own click; older releases use the click package
    from typer._click import exceptions as click_exceptions
except ImportError:  # pragma: no cover
    from click import exceptions as click_exceptions  # type: ignore[no-redef]
try:
    from typer._click import core as click_core
except ImportError:  # pragma: no cover
    from click import core as click_core  # type: ignore[no-redef]
from typer.core import TyperCommand

from attnviz import __version__
from attnviz.allocator import tune_allocator
from attnviz.encoders import DEFAULT_ENCODER, DEFAULT_SIZE
from attnviz.errors import AttnvizError
from attnviz.images import DEFAULT_MAX_PIXELS, use_own_pixel_limit
from attnviz.pipeline import Query
from attnviz.render import DEFAULT_ALPHA, DEFAULT_COLORMAP, DEFAULT_SMOOTH, Interpolation
from attnviz.scorers import Mode


class Command(TyperCommand):
    """Help without Python type names (`<list[str]>`): the metavars and the text say what to give."""

    def get_help(self, ctx: click_core.Context) -> str:
        text = re.sub(r" <(?:list\[str\]|str)>", lambda m: " " * len(m.group(0)), super().get_help(ctx))
        return re.sub(r"\{([A-Z]+)\}", r"\1", text)  # usage line: `{INPUT}...` -> `INPUT...`


def _examples(*lines: str) -> str:
    """An epilog of example commands, kept as written (click rewraps paragraphs without the \\b marker)."""
    return "\b\nExamples:\n" + "\n".join(f"  {line}" for line in lines)


RUN_EXAMPLES = _examples(
    "attnviz run photo.jpg                        # -> photo.attn-concat.png, top-1 class",
    "attnviz run photo.jpg -m dot -t tabby -o map.png",
    "attnviz run photo.jpg -k 3 --annotate         # three maps, each labelled",
    "attnviz run photos/ -o maps/ --skip-existing  # a folder; resume an interrupted run",
    "find . -name '*.jpg' | attnviz run - -o maps/ --json | jq -r .target.label",
)
COMPARE_EXAMPLES = _examples(
    "attnviz compare photo.jpg                 # -> photo.compare.png, all three modes",
    "attnviz compare photo.jpg -k 2 -o fig.pdf",
    "attnviz compare photo.jpg -m dot -t cup -t espresso",
)
ENCODERS_EXAMPLES = _examples(
    "attnviz encoders",
)
LABELS_EXAMPLES = _examples(
    'attnviz labels cat          # classes whose name contains "cat"',
    "attnviz labels -e timm:resnet50 -w my.safetensors",
)
EVAL_EXAMPLES = _examples(
    "attnviz eval my_photos/                # mosaics: pointing, energy, deletion, insertion",
    "attnviz eval my_objects/ --singles     # photos with masks: recognition, pointing, energy",
    "attnviz eval my_photos/ --json --no-gradcam",
)
FIT_EXAMPLES = _examples(
    "attnviz fit my_photos/ -m general -o head.safetensors",
    "attnviz run photo.jpg --head head.safetensors",
)


app = typer.Typer(
    name="attnviz",
    add_completion=True,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
    context_settings={"help_option_names": ["-h", "--help"]},
)


ENCODER_HELP = "Encoder: efficientnet_lite0 (embedded), a torchvision name (see `attnviz encoders`) or timm:NAME."


# Options shared by several commands, declared once.
EncoderOption = Annotated[str, typer.Option("--encoder", "-e", metavar="NAME", help=ENCODER_HELP)]
WeightsOption = Annotated[
    str | None,
    typer.Option("--weights", "-w", metavar="FILE", help="Local state dict (.safetensors or .pth) for the encoder."),
]
LayerOption = Annotated[
    str | None,
    typer.Option("--layer", metavar="LAYER", help="Feature map to attend over, by module name. Default: the last."),
]
QueryOption = Annotated[Query, typer.Option("--query", help="Class query: classifier row or class-score gradient.")]
SmoothOption = Annotated[
    float,
    typer.Option(
        "--smooth",
        min=0.0,
        max=0.5,
        metavar="SHARE",
        help="Blur of the drawn map: Gaussian sigma as a share of the shorter side; 0 (or --interpolation "
        "nearest) draws the cells as they are.",
    ),
]
ClassifySizeOption = Annotated[
    int | None,
    typer.Option(
        "--classify-size",
        metavar="PIXELS",
        min=32,
        help="Shorter side of the pass that picks the classes and their probabilities "
        "[default: the encoder's trained size, 224 for the default]. Equal to --size: one pass.",
        show_default=False,
    ),
]
MosaicSizeOption = Annotated[
    int, typer.Option("--size", "-s", metavar="PIXELS", min=64, help="Mosaic side fed to the network.")
]


class Device(str, Enum):
    auto = "auto"
    cpu = "cpu"
    cuda = "cuda"
    mps = "mps"


class FitMode(str, Enum):
    """The scorers with parameters to fit."""

    general = "general"
    concat = "concat"


class Format(str, Enum):
    png = "png"
    jpg = "jpg"
    webp = "webp"


def _version(value: bool) -> None:
    if value:
        print(f"attnviz {__version__}")
        raise typer.Exit()


@app.callback()
def main_options(
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Print the version and exit.")
    ] = False,
) -> None:
    """Where does a CNN look? Soft-attention heat maps over a pretrained encoder, for one photo or a million.

    \b
    Examples:
      attnviz run photo.jpg                     # -> photo.attn-concat.png
      attnviz run photos/ -o maps/ --json       # a folder, one JSON line per photo
      attnviz compare photo.jpg -o fig.pdf      # a figure for a paper
      attnviz COMMAND --help                    # each command's options and examples
    """


@app.command(cls=Command, epilog=RUN_EXAMPLES)
def run(
    inputs: Annotated[
        list[str],
        typer.Argument(
            metavar="INPUT",
            help="Image files, folders (searched recursively) and '-' to read paths from stdin.",
            show_default=False,
        ),
    ],
    mode: Annotated[
        Mode | None,
        typer.Option(
            "--mode", "-m", help="Attention scorer [default: concat, or the --head file's mode].", show_default=False
        ),
    ] = None,
    target: Annotated[
        list[str] | None,
        typer.Option(
            "--target",
            "-t",
            metavar="CLASS",
            help="Class index or name (unique part of it); repeat for several maps. Default: top-1.",
        ),
    ] = None,
    topk: Annotated[
        int, typer.Option("--topk", "-k", metavar="K", min=1, help="One map for each of the top K classes.")
    ] = 1,
    encoder: EncoderOption = DEFAULT_ENCODER,
    weights: WeightsOption = None,
    layer: LayerOption = None,
    query: QueryOption = Query.auto,
    head: Annotated[
        str | None,
        typer.Option("--head", metavar="FILE", help="Fitted general/concat head (.safetensors from `attnviz fit`)."),
    ] = None,
    size: Annotated[
        int, typer.Option("--size", "-s", metavar="PIXELS", min=32, help="Shorter side fed to the network, pixels.")
    ] = DEFAULT_SIZE,
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
    interpolation: Annotated[
        Interpolation, typer.Option("--interpolation", help="How the grid is upsampled to the picture.")
    ] = Interpolation.bilinear,
    smooth: SmoothOption = DEFAULT_SMOOTH,
    colormap: Annotated[
        str, typer.Option("--colormap", "-c", metavar="NAME", help="Any matplotlib colormap name.")
    ] = DEFAULT_COLORMAP,
    alpha: Annotated[
        float,
        typer.Option("--alpha", "-a", metavar="0-1", min=0.0, max=1.0, help="Opacity of the hottest part of the map."),
    ] = DEFAULT_ALPHA,
    annotate: Annotated[
        bool,
        typer.Option("--annotate", help="Add a band under each map: class, probability, mode and colour bar."),
    ] = False,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace existing output files.")] = False,
    skip_existing: Annotated[
        bool, typer.Option("--skip-existing", help="Skip inputs whose output exists (resume a run).")
    ] = False,
    json: Annotated[bool, typer.Option("--json", help="Print one JSON object per input on stdout.")] = False,
    save_scores: Annotated[
        bool, typer.Option("--save-scores", help="Also save the grid's attention weights as float32 .npy.")
    ] = False,
    null: Annotated[
        bool, typer.Option("-0", "--null", help="Paths on stdin are NUL-separated (find -print0).")
    ] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="Print nothing on stderr but errors.")] = False,
    fail_fast: Annotated[bool, typer.Option("--fail-fast", help="Stop at the first input that fails.")] = False,
    batch_size: Annotated[int, typer.Option("--batch-size", metavar="N", min=1, help="Images per forward pass.")] = 1,
    workers: Annotated[
        int | None,
        typer.Option(
            "--workers",
            metavar="N",
            min=1,
            help="Images in flight at once, each on its own thread [default: one per CPU core, at most 4].",
            show_default=False,
        ),
    ] = None,
    device: Annotated[Device, typer.Option("--device", help="Where the network runs.")] = Device.auto,
    max_pixels: Annotated[
        int,
        typer.Option("--max-pixels", metavar="N", min=1, help="Refuse images with more pixels (decompression bombs)."),
    ] = DEFAULT_MAX_PIXELS,
) -> None:
    """Draw where the encoder finds the evidence for a class, as a heat map over each input image."""
    from attnviz.batch import RunOptions
    from attnviz.batch import run as run_batch

    options = RunOptions(
        mode=mode,
        encoder=encoder,
        weights=weights,
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
    )
    raise typer.Exit(run_batch(inputs, options))


@app.command(cls=Command, epilog=COMPARE_EXAMPLES)
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
    target: Annotated[
        list[str] | None,
        typer.Option("--target", "-t", metavar="CLASS", help="Class index or name; repeat for several."),
    ] = None,
    topk: Annotated[
        int, typer.Option("--topk", "-k", metavar="K", min=1, help="One panel per top-K class and mode.")
    ] = 1,
    encoder: EncoderOption = DEFAULT_ENCODER,
    weights: WeightsOption = None,
    layer: LayerOption = None,
    query: QueryOption = Query.auto,
    size: Annotated[
        int, typer.Option("--size", "-s", metavar="PIXELS", min=32, help="Shorter side fed to the network.")
    ] = DEFAULT_SIZE,
    classify_size: ClassifySizeOption = None,
    interpolation: Annotated[Interpolation, typer.Option("--interpolation")] = Interpolation.bilinear,
    smooth: SmoothOption = DEFAULT_SMOOTH,
    colormap: Annotated[
        str, typer.Option("--colormap", "-c", metavar="NAME", help="Any matplotlib colormap.")
    ] = DEFAULT_COLORMAP,
    alpha: Annotated[
        float, typer.Option("--alpha", "-a", metavar="0-1", min=0.0, max=1.0, help="Peak opacity.")
    ] = DEFAULT_ALPHA,
    columns: Annotated[int | None, typer.Option("--columns", metavar="N", min=1, help="Panels per row.")] = None,
    head: Annotated[
        str | None, typer.Option("--head", metavar="FILE", help="Fitted head, used for the panel of its mode.")
    ] = None,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace an existing figure.")] = False,
) -> None:
    """One figure for a paper or a lesson: the photo, then one overlay per mode (and class), with a colour bar."""
    from attnviz.commands import COMPARE_MODES, CompareOptions
    from attnviz.commands import compare as draw_comparison

    options = CompareOptions(
        modes=tuple(mode or COMPARE_MODES),
        targets=tuple(target or ()),
        topk=topk,
        encoder=encoder,
        weights=weights,
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
    )
    written = draw_comparison(image, output, options)
    print(f"wrote {written}", file=sys.stderr)


@app.command(cls=Command, epilog=ENCODERS_EXAMPLES)
def encoders() -> None:
    """List the encoders: feature channels, stride, and whether their weights are available right now."""
    from attnviz.commands import encoder_rows, format_encoder_rows

    print(format_encoder_rows(encoder_rows()))


@app.command(cls=Command, epilog=LABELS_EXAMPLES)
def labels(
    query: Annotated[
        str | None, typer.Argument(metavar="[TEXT]", help="Show only classes whose name contains this.")
    ] = None,
    encoder: EncoderOption = DEFAULT_ENCODER,
    weights: WeightsOption = None,
) -> None:
    """List or search the class names of the encoder's label set (what --target accepts)."""
    from attnviz.commands import labels as find_labels

    found = find_labels(query, encoder, weights)
    for index, label in found:
        print(f"{index}\t{label}")
    if not found:
        print(f"attnviz: no class name of {encoder} contains {query!r}", file=sys.stderr)
        raise typer.Exit(1)


@app.command(name="eval", cls=Command, epilog=EVAL_EXAMPLES)
def evaluate(
    folder: Annotated[
        str, typer.Argument(metavar="DIR", help="A folder of photos (searched recursively).", show_default=False)
    ],
    mode: Annotated[
        list[Mode] | None, typer.Option("--mode", "-m", help="Scorers to rate (repeat). Default: all.")
    ] = None,
    head: Annotated[
        list[str] | None, typer.Option("--head", metavar="FILE", help="Fitted heads to rate too (repeat).")
    ] = None,
    mosaics: Annotated[
        int, typer.Option("--mosaics", metavar="N", min=1, help="2 x 2 mosaics for the pointing game.")
    ] = 40,
    images: Annotated[
        int, typer.Option("--images", metavar="N", min=0, help="Photos for the deletion/insertion curves.")
    ] = 20,
    seed: Annotated[
        int, typer.Option("--seed", metavar="N", help="Fixes mosaics and samples: same folder, same numbers.")
    ] = 0,
    encoder: EncoderOption = DEFAULT_ENCODER,
    weights: WeightsOption = None,
    size: MosaicSizeOption = DEFAULT_SIZE,
    gradcam: Annotated[bool, typer.Option("--gradcam/--no-gradcam", help="Add Grad-CAM as a reference row.")] = True,
    json: Annotated[bool, typer.Option("--json", help="Print the figures as one JSON object.")] = False,
    singles: Annotated[
        bool,
        typer.Option(
            "--singles",
            help="Rate single photos with object masks (alpha channel or NAME.mask.png) instead of mosaics: "
            "recognition, pointing, energy and regions. -s is then the map's size, as in `run`.",
        ),
    ] = False,
    min_prob: Annotated[
        float,
        typer.Option(
            "--min-prob",
            min=0.0,
            max=1.0,
            metavar="P",
            help="With --singles: keep photos whose object alone the encoder names with at least this probability.",
        ),
    ] = 0.5,
) -> None:
    """Rate the maps on your own photos, no labels needed: mosaic pointing game, energy, deletion and insertion.

    With --singles, rate them on photos of single objects with masks: does the default run name the object's own
    class, and does its map peak on the object?
    """
    import json as json_module

    if singles:
        from attnviz.commands import run_singles

        print(run_singles(folder, tuple(mode or Mode), encoder, weights, size, gradcam, json, min_prob))
        return

    from attnviz.commands import EvalOptions, run_eval
    from attnviz.evaluate import format_table
    from attnviz.progress import Progress

    options = EvalOptions(
        modes=tuple(mode or Mode),
        heads=tuple(head or ()),
        gradcam=gradcam,
        encoder=encoder,
        weights=weights,
        mosaics=mosaics,
        curve_images=images,
        seed=seed,
        size=size,
    )
    methods = len(options.modes) + len(options.heads) + int(gradcam)
    progress = Progress(sys.stderr, methods * (mosaics + images), enabled=sys.stderr.isatty(), unit="steps")
    rows, used_mosaics, used_images = run_eval(folder, options, progress.advance)
    progress.clear()
    if json:
        print(
            json_module.dumps(
                {
                    "folder": folder,
                    "seed": seed,
                    "mosaics": used_mosaics,
                    "images": used_images,
                    "rows": [r.to_json() for r in rows],
                }
            )
        )
    else:
        print(format_table(rows, used_mosaics, used_images))


@app.command(cls=Command, epilog=FIT_EXAMPLES)
def fit(
    folder: Annotated[
        str,
        typer.Argument(metavar="DIR", help="A folder of your own photos (a few dozen or more).", show_default=False),
    ],
    mode: Annotated[
        FitMode, typer.Option("--mode", "-m", help="Scorer to fit (dot has no parameters).")
    ] = FitMode.general,
    output: Annotated[
        str, typer.Option("--output", "-o", metavar="PATH", help="Head file to write (.safetensors).")
    ] = "head.safetensors",
    steps: Annotated[
        int, typer.Option("--steps", metavar="N", min=1, help="Optimisation steps (8 mosaics x 4 queries each).")
    ] = 200,
    holdout: Annotated[
        float, typer.Option("--holdout", metavar="SHARE", min=0.05, max=0.9, help="Share of photos held out.")
    ] = 0.25,
    seed: Annotated[int, typer.Option("--seed", metavar="N", help="Fixes the split, mosaics and batches.")] = 0,
    lr: Annotated[
        float | None,
        typer.Option("--lr", metavar="RATE", min=0.0, help="Adam step relative to each tensor's RMS. Default: 0.01."),
    ] = None,
    encoder: EncoderOption = DEFAULT_ENCODER,
    weights: WeightsOption = None,
    size: MosaicSizeOption = DEFAULT_SIZE,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace an existing head file.")] = False,
    json: Annotated[bool, typer.Option("--json", help="Print the report as one JSON object.")] = False,
) -> None:
    """Fit a general or concat head to your photos (encoder frozen); reports held-out pointing before and after."""
    import json as json_module

    from attnviz.commands import run_fit

    def say(message: str) -> None:
        print(f"attnviz fit: {message}", file=sys.stderr)

    report = run_fit(
        folder,
        Mode(mode.value),
        output,
        steps=steps,
        holdout=holdout,
        seed=seed,
        lr=lr,
        encoder=encoder,
        weights=weights,
        size=size,
        overwrite=overwrite,
        progress=say,
    )
    if json:
        print(json_module.dumps({"head": output, **report.to_json()}))
    b, a = report.before, report.after
    say(
        f"held-out pointing {b.pointing:.3f} -> {a.pointing:.3f}, energy {b.mean_energy:.3f} -> {a.mean_energy:.3f} "
        f"({a.queries} queries on {report.heldout_mosaics} mosaics of {report.heldout_images} held-out photos)"
    )
    say(
        f"wrote {output}"
        if report.helped
        else f"wrote {output}, but the fit did NOT help on held-out photos: keep using the default head"
    )


def _one_line_warning(
    message: Warning | str,
    category: type[Warning],
    filename: str,
    lineno: int,
    file: object = None,
    line: object = None,
) -> None:
    print(f"attnviz: warning: {message}".replace("\n", " "), file=sys.stderr)


def main(argv: list[str] | None = None) -> int:
    """Entry point: every expected failure is one line on stderr and an exit status, never a traceback."""
    if hasattr(sys.stderr, "reconfigure"):
        sys.stderr.reconfigure(errors="backslashreplace")  # file names that are not UTF-8
    # the command line may tune its own process; the library never does
    tune_allocator()
    use_own_pixel_limit()
    warnings.showwarning = _one_line_warning
    try:
        # Without standalone mode click returns the status of `typer.Exit` instead of exiting.
        status = app(args=argv, prog_name="attnviz", standalone_mode=False)
        return status if isinstance(status, int) else 0
    except typer.Exit as exc:
        return int(exc.exit_code or 0)
    except click_exceptions.NoArgsIsHelpError as exc:  # bare `attnviz`: the help, as written, not an error line
        print(exc.ctx.get_help() if exc.ctx else exc.format_message())
        return 0
    except click_exceptions.UsageError as exc:
        hint = f" (see attnviz {exc.ctx.info_name} --help)" if exc.ctx and exc.ctx.parent else ""
        message = exc.format_message().replace("Value error, ", "")  # Typer's pydantic prefix says nothing
        print(f"attnviz: error: {message}{hint}".replace("\n", " "), file=sys.stderr)
        return 2
    except typer.Abort:
        print("attnviz: interrupted", file=sys.stderr)
        return 130
    except KeyboardInterrupt:
        print("attnviz: interrupted", file=sys.stderr)
        return 130
    except AttnvizError as exc:
        print(f"attnviz: error: {exc}".replace("\n", "\\n"), file=sys.stderr)
        return exc.exit_code
    except BrokenPipeError:
        return 141


if __name__ == "__main__":
    sys.exit(main())
