"""Pictures in, explanations out: what `Explainer.explain` and `Explainer.explain_batch` run.

A batch is checked whole before any network runs (every picture readable, every target a class of the encoder),
then explained in chunks of `batch_size` pictures, in order: within a chunk, the pictures that preprocess to one
size share each forward pass (those of a (B, 3, H, W) tensor always do). The network and the scorer treat each
image of a batch on its own, so each map is the one `explain` draws for its picture alone (tested to 1e-5).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np
import torch
from PIL import Image
from torch import Tensor

from attnviz.errors import UsageError
from attnviz.io.pictures import Pictures, Targets, as_pictures, source_path
from attnviz.options import Interpolation, choose
from attnviz.results import Explanation, GridResult

if TYPE_CHECKING:
    from attnviz.explainer import Explainer


def explain_pictures(
    explainer: Explainer, images: Pictures, target: Targets, interpolation: str, batch_size: int = 16
) -> list[Explanation]:
    """One `Explanation` per picture, in order, each keeping its picture (a reference) to draw and save."""
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise UsageError(f"batch_size must be a whole number of at least 1, got {batch_size!r}")
    choose(Interpolation, interpolation, "interpolation")  # before any work, as a UsageError
    pictures = as_pictures(images)
    sources = [source_path(image) for image in images] if isinstance(images, Sequence) else [None] * len(pictures)
    targets = per_picture(target, len(pictures))
    classes = [explainer.check_targets([] if t is None else [t]) for t in targets]  # every one, before any work
    explained: list[Explanation] = []
    for start in range(0, len(pictures), batch_size):
        chunk = range(start, min(start + batch_size, len(pictures)))
        maps = infer_pictures(explainer, [pictures[i] for i in chunk], [classes[i] for i in chunk])
        for i, (result,) in zip(chunk, maps, strict=True):
            drawn = explainer.draw(result, pictures[i].width, pictures[i].height, interpolation)
            drawn.picture, drawn.source = pictures[i], sources[i]
            explained.append(drawn)
    return explained


def per_picture(target: Targets, count: int) -> list[str | int | None]:
    """One target for each of `count` pictures: the one given for all, or the list of one each."""
    if isinstance(target, (Tensor, np.ndarray)):
        if target.ndim > 1:
            raise UsageError(f"targets as a tensor or array must be (B,) class indices, got {tuple(target.shape)}")
        target = target.tolist()  # a 0-d one gives one number
    if target is None or isinstance(target, (str, int, np.integer)):
        return [_one(target)] * count
    if not isinstance(target, Sequence):
        raise UsageError(f"target must be a class index or name, or a list of one per picture; got {target!r}")
    if len(target) != count:
        raise UsageError(f"{len(target)} targets for {count} pictures: give one target for all, or one per picture")
    return [_one(t) for t in target]


def _one(target: object) -> str | int | None:
    if isinstance(target, (Tensor, np.ndarray)) and target.ndim == 0:  # `labels[i]` of a tensor of labels
        target = target.item()
    if target is None or isinstance(target, str):
        return target
    if isinstance(target, (int, np.integer)) and not isinstance(target, bool):
        return int(target)
    raise UsageError(f"a target is a class index or name (or None for the top class), not {target!r}")


def infer_pictures(
    explainer: Explainer, pictures: list[Image.Image], classes: list[list[int]], top: int = 1
) -> list[list[GridResult]]:
    """The maps of each picture for its classes (its top `top` when the list is empty), one forward pass per size."""
    tensors = [explainer.preprocess(picture) for picture in pictures]  # (3, h, w) each
    smalls = [explainer.preprocess_classify(picture) for picture in pictures]  # (3, h', w') each, or None
    groups: dict[tuple[tuple[int, ...], tuple[int, ...]], list[int]] = {}
    for i, (tensor, small) in enumerate(zip(tensors, smalls, strict=True)):
        groups.setdefault((tuple(tensor.shape), () if small is None else tuple(small.shape)), []).append(i)
    found: dict[int, list[GridResult]] = {}
    for members in groups.values():
        batch = torch.stack([tensors[i] for i in members])  # (B, 3, h, w)
        recognised = [small for i in members if (small := smalls[i]) is not None]
        recognise = torch.stack(recognised) if recognised else None  # (B, 3, h', w'): the two-pass ranking
        maps = explainer.infer_classes(batch, [classes[i] for i in members], top, recognise)
        found.update(zip(members, maps, strict=True))
    return [found[i] for i in range(len(pictures))]
