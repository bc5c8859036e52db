"""`attnviz eval` and `attnviz fit` on a folder of the user's photos."""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from PIL import Image

from attnviz.errors import InputError, UsageError
from attnviz.explainer import Explainer
from attnviz.io.images import load_image
from attnviz.io.outputs import check_target
from attnviz.models.base import Encoder
from attnviz.models.registry import create_encoder
from attnviz.options import CLASS_FREE_MODES, DEFAULT_ENCODER, DEFAULT_SIZE, SCORER_MODES, Mode, Query

if TYPE_CHECKING:
    from attnviz.quality.evaluate import EvalRow
    from attnviz.quality.fit import FitReport
    from attnviz.quality.sanity import SanityReport


@dataclass(frozen=True)
class EvalOptions:
    modes: tuple[Mode, ...] = SCORER_MODES
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
    from attnviz.io.inputs import walk_folder
    from attnviz.quality.singles import MASK_SUFFIX

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
    from attnviz.quality.mosaics import square

    side = mosaic_size // 2
    explainer = Explainer(encoder, Mode.dot, side)
    found = [explainer.infer(explainer.preprocess(square(im, side))[None], [None])[0].target for im in images]
    return [-1 if target is None else target.index for target in found]


def run_eval(
    folder: str, options: EvalOptions, progress: Callable[[], None] | None = None
) -> tuple[list[EvalRow], int, int]:
    """Rows of the evaluation table, the number of mosaics and the number of images they rest on."""
    import random

    from attnviz.attention.heads import head_mode, load_head
    from attnviz.quality.evaluate import Method, evaluate
    from attnviz.quality.mosaics import plan_mosaics

    encoder = create_encoder(options.encoder, options.weights)  # draws nothing at random: the caller's RNG stays
    _needs_classes(encoder, "eval's mosaics are told apart by their tiles' classes: use --singles")
    _, images = load_folder(folder)
    if len(images) < 4:
        raise InputError(f"{folder}: needs at least 4 readable images, found {len(images)}")
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

    from attnviz.batch.progress import Progress
    from attnviz.quality.singles import format_singles, load_singles, singles_rows

    encoder = create_encoder(encoder_name, weights)
    photos, masked = load_singles(folder, encoder, min_prob, say=lambda m: print(f"attnviz: {m}", file=sys.stderr))
    if not photos:
        raise UsageError(
            f"{folder}: no photo with a mask whose object the encoder recognises on its own "
            f"({masked} with masks; masks come from alpha channels or NAME.mask.png files)"
        )
    modes = modes or (CLASS_FREE_MODES if encoder.headless else SCORER_MODES)  # a backbone draws those alone
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


def run_sanity(
    folder: str, modes: Sequence[Mode], encoder_name: str, weights: str | None, size: int, images: int, seed: int
) -> list[SanityReport]:
    """`attnviz eval --sanity`: the MPRT and random-logit tests (quality/sanity.py) of each mode, on `images` photos
    of `folder` drawn with `seed` (which also seeds the randomised layers and the random classes)."""
    import random
    import sys

    from attnviz.batch.progress import Progress
    from attnviz.quality.sanity import cascade, check, layer_order, mode_map

    if images < 1:
        raise UsageError("--sanity needs --images of at least 1")
    encoder = create_encoder(encoder_name, weights)
    _needs_classes(encoder, "the sanity checks explain its classes")
    _, pictures = load_folder(folder)
    if not pictures:
        raise UsageError(f"{folder}: no readable photos")
    chosen = sorted(random.Random(seed).sample(range(len(pictures)), min(images, len(pictures))))
    tensors = [encoder.preprocess(pictures[i], size) for i in chosen]
    modes = list(dict.fromkeys(modes))
    steps = 1 + len(cascade(len(layer_order(encoder, tensors[0][None]))))  # the random logit, then the cascade
    progress = Progress(sys.stderr, len(modes) * steps * len(tensors), enabled=sys.stderr.isatty(), unit="maps")
    reports = [check(mode.value, mode_map(mode, size), encoder, tensors, seed, progress.advance) for mode in modes]
    progress.clear()
    return reports


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
    from attnviz.attention.heads import save_head
    from attnviz.quality.fit import fit_head

    check_target(output, overwrite=overwrite)  # before minutes of work, not after
    if not output.endswith(".safetensors"):
        raise UsageError(f"{output}: heads are saved as .safetensors")
    model = create_encoder(encoder, weights)
    _needs_classes(model, "fit trains a head queried by classes")
    _, images = load_folder(folder)
    if progress:
        progress(f"{len(images)} photos; classifying them")
    classes = tile_classes(model, images, size)
    scorer, report = fit_head(
        model, mode, images, classes, size=size, steps=steps, holdout=holdout, seed=seed, lr=lr, progress=progress
    )
    save_head(scorer, model, output, overwrite=overwrite)
    return report


def _needs_classes(encoder: Encoder, why: str) -> None:
    if encoder.headless:
        raise UsageError(f"encoder {encoder.name} has no classifier (a backbone without a head): {why}")
