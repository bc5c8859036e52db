"""`attnviz encoders`, `labels`, `eval` and `fit`: parse, then hand off to the library."""

from __future__ import annotations

import sys
from typing import Annotated

import typer

from attnviz.cli.options import EncoderOption, LabelsOption, MosaicSizeOption, WeightsOption
from attnviz.cli.process import own_pixel_limit
from attnviz.options import DEFAULT_ENCODER, DEFAULT_SIZE, SCORER_MODES, FitMode, Mode


def encoders() -> None:
    """List the encoders: feature channels, stride, and whether their weights are available right now."""
    from attnviz.commands.listing import encoder_rows, format_encoder_rows

    print(format_encoder_rows(encoder_rows()))


def labels(
    query: Annotated[
        str | None, typer.Argument(metavar="[TEXT]", help="Show only classes whose name contains this.")
    ] = None,
    encoder: EncoderOption = DEFAULT_ENCODER,
    weights: WeightsOption = None,
    labels_file: LabelsOption = None,
) -> None:
    """List or search the class names of the encoder's label set (what --target accepts)."""
    from attnviz.commands.listing import labels as find_labels

    found = find_labels(query, encoder, weights, labels_file)
    for index, label in found:
        print(f"{index}\t{label}")
    if not found:
        print(f"attnviz: no class name of {encoder} contains {query!r}", file=sys.stderr)
        raise typer.Exit(1)


def evaluate(
    folder: Annotated[
        str, typer.Argument(metavar="DIR", help="A folder of photos (searched recursively).", show_default=False)
    ],
    mode: Annotated[
        list[Mode] | None, typer.Option("--mode", "-m", help="Modes to rate (repeat). Default: dot, general, concat.")
    ] = None,
    head: Annotated[
        list[str] | None, typer.Option("--head", metavar="FILE", help="Fitted heads to rate too (repeat).")
    ] = None,
    mosaics: Annotated[
        int, typer.Option("--mosaics", metavar="N", min=1, help="2 x 2 mosaics for the pointing game.")
    ] = 40,
    images: Annotated[
        int,
        typer.Option(
            "--images", metavar="N", min=0, help="Photos for the deletion/insertion curves (--sanity: photos checked)."
        ),
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
    sanity: Annotated[
        bool,
        typer.Option(
            "--sanity",
            help="Instead of rating the maps, check that they depend on the model and the class (Adebayo et al.): "
            "the model's layers randomised from the top down, and a random class, on --images photos.",
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

    own_pixel_limit()
    if sanity:
        _sanity(
            folder,
            tuple(mode or SCORER_MODES),
            bool(head) or singles,
            gradcam,
            encoder,
            weights,
            size,
            images,
            seed,
            json,
        )
        return
    if singles:
        from attnviz.commands.quality import run_singles

        print(run_singles(folder, tuple(mode or ()), encoder, weights, size, gradcam, json, min_prob))
        return

    from attnviz.batch.progress import Progress
    from attnviz.commands.quality import EvalOptions, run_eval
    from attnviz.quality.evaluate import format_table

    options = EvalOptions(
        modes=tuple(mode or SCORER_MODES),
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


def _sanity(
    folder: str,
    modes: tuple[Mode, ...],
    unsupported: bool,
    gradcam: bool,
    encoder: str,
    weights: str | None,
    size: int,
    images: int,
    seed: int,
    as_json: bool,
) -> None:
    import json as json_module

    from attnviz.commands.quality import run_sanity
    from attnviz.errors import UsageError
    from attnviz.quality.sanity import format_sanity

    if unsupported:
        raise UsageError("--sanity checks modes: it takes neither --head nor --singles")
    if gradcam and Mode.gradcam not in modes:
        modes = (*modes, Mode.gradcam)
    reports = run_sanity(folder, modes, encoder, weights, size, images, seed)
    if as_json:
        rows = [{"method": r.name, "sanity": r.to_json()} for r in reports]
        print(json_module.dumps({"folder": folder, "seed": seed, "images": reports[0].photos, "rows": rows}))
    else:
        print(format_sanity(reports))


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

    own_pixel_limit()
    from attnviz.commands.quality import run_fit

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
