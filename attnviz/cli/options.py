"""Options shared by several commands, declared once, and each command's examples. Torch-free: help is instant."""

from __future__ import annotations

import errno
import re
import sys
from collections.abc import Callable
from typing import Annotated, Any, TypeVar

import typer

try:  # Typer 0.2x vendors its own click; older releases use the click package
    from typer._click import core as click_core
except ImportError:  # pragma: no cover
    from click import core as click_core  # type: ignore[no-redef]
from typer.core import TyperCommand, TyperGroup

from attnviz.options import (
    MIN_SIZE,
    Backend,
    Device,
    Engine,
    Interpolation,
    Mode,
    Query,
)

T = TypeVar("T")


class ClosedPipe(Exception):
    """stdout was closed early (`| head`). Not an OSError: Typer turns that one into a silent exit 1, where a shell
    expects 141, as from any program a closed pipe stops."""


def _closing_pipe(make: Callable[[], T]) -> T:
    """`make()`, with a closed stdout raised as `ClosedPipe`: in a command's work, and in making its context, where
    help and --version are printed (`attnviz --help | head -1`)."""
    try:
        return make()
    except OSError as exc:
        if exc.errno == errno.EPIPE:
            raise ClosedPipe() from exc
        raise


class Group(TyperGroup):
    """The `attnviz` group: a closed stdout while its help or version is printed told apart, as in `Command`."""

    def make_context(
        self, info_name: str | None, args: list[str], parent: click_core.Context | None = None, **extra: Any
    ) -> click_core.Context:
        return _closing_pipe(lambda: super(Group, self).make_context(info_name, args, parent, **extra))


class Command(TyperCommand):
    """Help without Python type names (`<list[str]>`): the metavars and the text say what to give; Ctrl-C said in
    one line; a closed stdout told apart from other failures."""

    def invoke(self, ctx: click_core.Context) -> object:
        """Typer turns Ctrl-C into a silent exit 130; a run interrupted before its own handler (while a model
        loads, say) says so too."""
        try:
            return _closing_pipe(lambda: super(Command, self).invoke(ctx))
        except KeyboardInterrupt:
            print("attnviz: interrupted", file=sys.stderr)
            raise

    def make_context(
        self, info_name: str | None, args: list[str], parent: click_core.Context | None = None, **extra: Any
    ) -> click_core.Context:
        return _closing_pipe(lambda: super(Command, self).make_context(info_name, args, parent, **extra))

    def get_help(self, ctx: click_core.Context) -> str:
        text = re.sub(r" <(?:list\[str\]|str)>", lambda m: " " * len(m.group(0)), super().get_help(ctx))
        text = re.sub(
            r"<list\[([^\]]+)\]>", r"<\1>", text
        )  # a repeatable choice: `<list[dot|concat]>` -> `<dot|concat>`
        text = text.replace("[[TEXT]]", "[TEXT]")  # an optional argument whose metavar already says so
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
    "attnviz run photos/ -o maps/ --engine ray --json  # on Ray Data (pip install 'attnviz[ray]')",
)


COMPARE_EXAMPLES = _examples(
    "attnviz compare photo.jpg                 # -> photo.compare.png: dot and concat",
    "attnviz compare photo.jpg -k 2 -o fig.pdf",
    "attnviz compare photo.jpg -m dot -t cup -t espresso",
)


AUDIT_EXAMPLES = _examples(
    "attnviz audit photos/ -o audit/            # -> audit/report.html and audit/records.jsonl",
    "attnviz audit photos/ -o audit/ -e timm:resnet50 -w my.safetensors --labels classes.txt",
    "attnviz audit --from ray_out/ -o audit/    # re-analyse records without a network",
    "xdg-open audit/report.html                 # opens from disk: no server, no network",
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


LabelsOption = Annotated[
    str | None,
    typer.Option(
        "--labels",
        metavar="FILE",
        help="Class names for the encoder's outputs: one per line, or JSON (a list, or index -> name).",
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
    int, typer.Option("--size", "-s", metavar="PIXELS", min=MIN_SIZE, help="Mosaic side fed to the network.")
]


SizeOption = Annotated[
    int,
    typer.Option(
        "--size",
        "-s",
        min=MIN_SIZE,
        metavar="PIXELS",
        help="Shorter side of the pass that draws the map, pixels: at least two cells of the encoder's stride "
        "(64 for the default encoder, stride 32).",
    ),
]
TargetOption = Annotated[
    list[str] | None,
    typer.Option(
        "--target",
        "-t",
        metavar="CLASS",
        help="Class index or name (unique part of it); repeat for several maps. Default: the top-1 class.",
    ),
]
TopkOption = Annotated[int, typer.Option("--topk", "-k", metavar="K", help="One map for each of the top K classes.")]
InterpolationOption = Annotated[
    Interpolation, typer.Option("--interpolation", help="How the grid is upsampled to the picture.")
]
ColormapOption = Annotated[str, typer.Option("--colormap", "-c", metavar="NAME", help="Any matplotlib colormap.")]
AlphaOption = Annotated[
    float, typer.Option("--alpha", "-a", metavar="0-1", help="Opacity of the hottest part of the map.")
]
OverwriteOption = Annotated[bool, typer.Option("--overwrite", help="Replace existing output files.")]
JsonOption = Annotated[bool, typer.Option("--json", help="Print JSON on stdout.")]
EngineOption = Annotated[
    Engine,
    typer.Option(
        "--engine",
        help="Where the work is done: attnviz's own lanes, or Ray Data actors on a local Ray started for the run "
        "or on --ray-address (needs pip install 'attnviz[ray]').",
    ),
]
RayAddressOption = Annotated[
    str | None,
    typer.Option(
        "--ray-address",
        metavar="ADDR",
        help="With --engine ray: an existing cluster, HOST:6379 (its GCS port), ray://HOST[:PORT], or auto (the one "
        "running on this machine, as `ray start` began it), instead of a Ray started for the run; its workers must see "
        "the same paths. RAY_ADDRESS is not read.",
    ),
]
BackendOption = Annotated[
    Backend,
    typer.Option(
        "--backend",
        help="What runs the network: torch, or its exported graph under an inference runtime on the CPU "
        "(pip install 'attnviz[runtime]'). auto: a runtime where one is installed and applies (classifier queries, "
        "CPU), else torch.",
    ),
]
ModeOption = Annotated[
    Mode | None,
    typer.Option(
        "--mode",
        "-m",
        help="Attention mode: dot, general, concat; cls, rollout, grad-rollout or legrad for ViT-family "
        "transformers; the CAM family "
        "(gradcam, gradcam++, layercam, scorecam, eigencam) on any encoder "
        "[default: concat, or the --head file's mode].",
        show_default=False,
    ),
]
HeadOption = Annotated[
    str | None,
    typer.Option("--head", metavar="FILE", help="Fitted general/concat head (.safetensors from `attnviz fit`)."),
]
NullOption = Annotated[bool, typer.Option("-0", "--null", help="Paths on stdin are NUL-separated (find -print0).")]
QuietOption = Annotated[bool, typer.Option("--quiet", "-q", help="Print nothing on stderr but errors.")]
BatchSizeOption = Annotated[int, typer.Option("--batch-size", metavar="N", min=1, help="Images per forward pass.")]
DeviceOption = Annotated[Device, typer.Option("--device", help="Where the network runs.")]
MaxPixelsOption = Annotated[
    int,
    typer.Option("--max-pixels", metavar="N", min=1, help="Refuse images with more pixels (decompression bombs)."),
]
