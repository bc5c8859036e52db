"""What a user can choose, torch-free: the enums and defaults shared by the command line and the library.

Importing this module costs no torch, numpy or Pillow, so `attnviz --help` answers at once.
"""

from __future__ import annotations

import numbers
from collections.abc import Mapping
from enum import Enum
from typing import TypeVar

from attnviz.errors import UsageError

DEFAULT_ENCODER = "efficientnet_lite0"
#: Shorter side of the pass that draws the map: a 4:3 photo gives a 14 x 19 grid at stride 32.
DEFAULT_SIZE = 448
#: Shorter side of the pictures most ImageNet classifiers were trained on: where they recognise best.
TRAINED_SIZE = 224
#: Smallest --size the command line accepts; the explainer further asks for 2 cells of the encoder's stride.
MIN_SIZE = 32
#: Turbo: a rainbow made perceptually smooth (unlike jet), and its blue-to-red reads on warm and cool photos alike.
DEFAULT_COLORMAP = "turbo"
DEFAULT_ALPHA = 0.7
#: Default smoothing of the drawn map: Gaussian sigma as a share of the picture's shorter side (see render.maps).
DEFAULT_SMOOTH = 0.04
#: Refuse images larger than this many pixels unless told otherwise (about 16k x 16k).
DEFAULT_MAX_PIXELS = 268_000_000
DEFAULT_TOPK = 5


class Mode(str, Enum):
    """How the grid is scored: a soft-attention scorer queried by a class (dot, general, concat), or a
    transformer's own attention: with no class (cls: the class token's attention in the last block; rollout:
    attention rollout across the blocks), or weighted by a class score's gradient (grad-rollout: Chefer et al.'s
    gradient-weighted rollout; legrad: LeGrad, each layer's attention gradient of its own class score)."""

    dot = "dot"
    general = "general"
    concat = "concat"
    cls = "cls"
    rollout = "rollout"
    grad_rollout = "grad-rollout"
    legrad = "legrad"
    gradcam = "gradcam"
    gradcam_pp = "gradcam++"
    layercam = "layercam"
    scorecam = "scorecam"
    eigencam = "eigencam"


#: The soft-attention scorers: every classifier has them.
SCORER_MODES = (Mode.dot, Mode.general, Mode.concat)
#: A transformer's own attention: only encoders with attention blocks and a class token.
ATTENTION_MODES = (Mode.cls, Mode.rollout, Mode.grad_rollout, Mode.legrad)
#: The attention modes that are the same for every class: the only ones a backbone without a classifier draws.
CLASS_FREE_MODES = (Mode.cls, Mode.rollout)
#: Class activation maps over the feature map (`attention/cams.py`): every encoder the scorers run on.
CAM_MODES = (Mode.gradcam, Mode.gradcam_pp, Mode.layercam, Mode.scorecam, Mode.eigencam)
#: The CAMs that differentiate a class score by the features.
GRADIENT_CAM_MODES = (Mode.gradcam, Mode.gradcam_pp, Mode.layercam)


class FitMode(str, Enum):
    """The scorers with parameters to fit."""

    general = "general"
    concat = "concat"


class Query(str, Enum):
    """Where the class query comes from."""

    auto = "auto"  # classifier rows when the head is pool-then-linear, else gradients
    classifier = "classifier"
    gradient = "gradient"


class Backend(str, Enum):
    """What runs the encoder's forward pass: torch, or its exported graph under an inference runtime (CPU)."""

    auto = "auto"  # a runtime when one is installed and the export checks out, for classifier queries on the CPU
    torch = "torch"
    onnxruntime = "onnxruntime"
    openvino = "openvino"


class Interpolation(str, Enum):
    nearest = "nearest"
    bilinear = "bilinear"
    bicubic = "bicubic"


class Device(str, Enum):
    auto = "auto"
    cpu = "cpu"
    cuda = "cuda"
    mps = "mps"


class Engine(str, Enum):
    """Where `run`'s work is done: attnviz's own lanes, or Ray Data actors (the `ray` extra)."""

    local = "local"
    ray = "ray"


class Format(str, Enum):
    png = "png"
    jpg = "jpg"
    webp = "webp"


DEFAULT_MODE = Mode.concat
#: compare's default panels. The data-free general and concat heads draw the same map (correlation 0.9999: concat
#: is built to reproduce general), so a default figure shows dot and concat; a fitted --head adds its own mode.
COMPARE_MODES = (Mode.dot, Mode.concat)


def check_targets(targets: tuple[str, ...], topk: int) -> None:
    """`--target` and `--topk` choose the maps two ways; one of them at a time (run and compare alike)."""
    if topk < 1:
        raise UsageError("--topk must be at least 1")
    if targets and topk > 1:
        raise UsageError("give either --target (one or more) or --topk, not both")


Choice = TypeVar("Choice", bound=Enum)


def choose(kind: type[Choice], value: Choice | str, what: str) -> Choice:
    """`value` as a member of `kind`, or a UsageError naming the choices: a library caller's `mode="nope"` is told
    what the command line would tell `--mode nope`, not Enum's bare ValueError."""
    try:
        return kind(value)
    except ValueError:
        allowed = ", ".join(str(member.value) for member in kind)
        raise UsageError(f"{what}={value!r} is not one of: {allowed}") from None


def check_choices(
    mode: Mode | str | None, query: Query | str, backend: Backend | str, topk: int, sizes: Mapping[str, object]
) -> tuple[Mode | None, Query, Backend]:
    """A library caller's choices as the command line's options are checked: each a UsageError naming the choices.
    `sizes`: name -> a whole number of pixels (or None)."""
    for name, value in {"topk": topk, **sizes}.items():
        if value is not None and (isinstance(value, bool) or not isinstance(value, numbers.Integral)):
            raise UsageError(f"{name}={value!r}: a whole number")
    if topk < 1:
        raise UsageError(f"topk={topk}: at least 1 prediction per image")
    return (
        None if mode is None else choose(Mode, mode, "mode"),
        choose(Query, query, "query"),
        choose(Backend, backend, "backend"),
    )
