"""`attnviz fit`: learn a general or concat head on a user's own photos, the encoder frozen.

Objective, needing no labels. Photos are tiled into 2 x 2 mosaics of four different top-1 classes (the encoder's
own predictions on each photo). For each tile's class query:
  - localisation: -log of the attention mass that falls on that tile (the energy pointing game as a loss);
  - faithfulness: cross-entropy of the classifier applied to the attention-pooled context against that class,
    so the cells the head attends to must still carry the evidence the network uses.
Training starts from the data-free head (which already matches CAM), so a fit can only move away from a good start
if the photos ask for it. Encoder features of the training mosaics are computed once and cached in memory.
"""

from __future__ import annotations

import math
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from PIL import Image
from torch import Tensor
from torch.nn.utils import parametrize

from attnviz.attention.datafree import data_free_scorer
from attnviz.attention.scorers import ConcatScorer, Scorer, TanhPairs
from attnviz.errors import UsageError
from attnviz.explainer import Explainer
from attnviz.models.base import Encoder
from attnviz.options import Mode
from attnviz.quality.evaluate import Method, PointingScore, mosaic_pointing
from attnviz.quality.mosaics import TILE_ORIGINS, Mosaic, compose, plan_mosaics, square, tile_region

FAITHFULNESS_WEIGHT = 0.5
#: Default Adam step, relative to each tensor's RMS. A concat head trains its two projections inside the paired
#: tanh form (`TanhPairs`), which makes it as stable as a general head at the same step.
DEFAULT_LR = {Mode.general: 0.01, Mode.concat: 0.01}


@dataclass
class FitReport:
    train_images: int
    heldout_images: int
    train_mosaics: int
    heldout_mosaics: int
    steps: int
    seconds: float
    before: PointingScore
    after: PointingScore

    @property
    def helped(self) -> bool:
        return (self.after.pointing, self.after.mean_energy) > (self.before.pointing, self.before.mean_energy)

    def to_json(self) -> dict[str, object]:
        return {
            "train_images": self.train_images,
            "heldout_images": self.heldout_images,
            "train_mosaics": self.train_mosaics,
            "heldout_mosaics": self.heldout_mosaics,
            "steps": self.steps,
            "seconds": round(self.seconds, 1),
            "heldout_before": {
                "pointing": self.before.pointing,
                "energy": self.before.mean_energy,
                "queries": self.before.queries,
            },
            "heldout_after": {
                "pointing": self.after.pointing,
                "energy": self.after.mean_energy,
                "queries": self.after.queries,
            },
            "helped": self.helped,
        }


def split(classes: Sequence[int], holdout: float, seed: int) -> tuple[list[int], list[int]]:
    order = list(range(len(classes)))
    random.Random(seed).shuffle(order)
    cut = max(4, round(len(order) * holdout))
    heldout, train = order[:cut], order[cut:]
    for part, name in ((train, "training"), (heldout, "held-out")):
        if len({classes[i] for i in part}) < 4:
            raise UsageError(
                f"the {name} part needs photos of at least 4 different top-1 classes; got "
                f"{len({classes[i] for i in part})} (add photos, or change --holdout)"
            )
    return train, heldout


def tile_masks(rows: int, cols: int) -> Tensor:
    """(4, N) booleans: which grid cells belong to each tile, in TILE_ORIGINS order."""
    masks = torch.zeros(4, rows, cols, dtype=torch.bool)
    for tile in range(len(TILE_ORIGINS)):
        masks[(tile, *tile_region(tile, rows, cols))] = True
    return masks.flatten(1)


def mosaic_features(encoder: Encoder, pictures: Sequence[Image.Image], size: int) -> Tensor:
    """(M, N, C) encoder cells of each mosaic, computed once."""
    cells = []
    with torch.inference_mode():
        for picture in pictures:
            features, _ = encoder(encoder.preprocess(picture, size)[None])
            cells.append(features.flatten(2).transpose(1, 2)[0])  # (N, C)
    return torch.stack(cells)


def heldout_pointing(
    encoder: Encoder, scorer: Scorer, size: int, images: Sequence[Image.Image], mosaics: Sequence[Mosaic]
) -> PointingScore:
    method = Method("head", Explainer(encoder, scorer.mode, size, scorer=scorer))
    side = size // 2
    score = PointingScore()
    for mosaic in mosaics:
        picture = compose([square(images[i], side) for i in mosaic.members], side)
        mosaic_pointing(method, picture, mosaic.classes, score)
    return score


def fit_head(
    encoder: Encoder,
    mode: Mode,
    images: Sequence[Image.Image],
    classes: Sequence[int],
    *,
    size: int = 448,
    steps: int = 200,
    holdout: float = 0.25,
    seed: int = 0,
    lr: float | None = None,
    batch: int = 8,
    progress: Callable[[str], None] | None = None,
) -> tuple[Scorer, FitReport]:
    if mode is Mode.dot:
        raise UsageError("the dot scorer has no parameters to fit; use --mode general or concat")
    vectors = encoder.class_vectors()
    bias = getattr(encoder.classifier(), "bias", None)
    if vectors is None:
        raise UsageError(f"encoder {encoder.name}: fitting needs a pool-then-linear head at the last layer")
    start = time.monotonic()  # every random draw below has its own seeded generator: the caller's RNG is untouched
    train, heldout = split(classes, holdout, seed)
    train_mosaics = plan_mosaics([classes[i] for i in train], max(32, 2 * len(train)), seed)
    train_mosaics = [m.renumbered(train) for m in train_mosaics]
    test_mosaics = plan_mosaics([classes[i] for i in heldout], max(8, len(heldout)), seed + 1)
    test_mosaics = [m.renumbered(heldout) for m in test_mosaics]
    side = size // 2
    tiles = {i: square(images[i], side) for m in train_mosaics for i in m.members}
    if progress:
        progress(f"caching features of {len(train_mosaics)} training mosaics")
    cells = mosaic_features(encoder, [compose([tiles[i] for i in m.members], side) for m in train_mosaics], size)
    cells_per_side = math.isqrt(cells.shape[1])  # the mosaic is square, so is its grid
    masks = tile_masks(cells_per_side, cells_per_side)  # (4, N)
    targets = torch.tensor([m.classes for m in train_mosaics])  # (M, 4)

    scorer = data_free_scorer(encoder, mode)
    before = heldout_pointing(encoder, scorer, size, images, test_mosaics)
    scorer.train()
    scorer.requires_grad_(True)
    if isinstance(scorer, ConcatScorer):  # train the projections; the tanh pairs, bias and v keep their form
        parametrize.register_parametrization(scorer.combine, "weight", TanhPairs(scorer.enc_dim))
        scorer.combine.bias.requires_grad_(False)
        scorer.v.weight.requires_grad_(False)
    # `lr` is relative: each tensor moves by about lr x its own RMS per step, whatever the scale it works at.
    lr = DEFAULT_LR[mode] if lr is None else lr
    trained = [p for p in scorer.parameters() if p.requires_grad]
    groups = [{"params": [p], "lr": lr * float(p.detach().pow(2).mean().sqrt().clamp_min(1e-6))} for p in trained]
    optimiser = torch.optim.Adam(groups)
    w = vectors.detach()
    b = bias.detach() if bias is not None else torch.zeros(w.shape[0])
    generator = torch.Generator().manual_seed(seed)
    for step in range(steps):
        pick = torch.randint(len(train_mosaics), (batch,), generator=generator)  # (b,)
        h = cells[pick].repeat_interleave(4, dim=0)  # (4b, N, C)
        c = targets[pick].reshape(-1)  # (4b,)
        mask = masks.repeat(batch, 1)  # (4b, N)
        attention = scorer(h, w[c])
        on_tile = (attention.weights * mask).sum(-1).clamp_min(1e-8)  # (4b,)
        localisation = -on_tile.log().mean()
        faithfulness = torch.nn.functional.cross_entropy(attention.context @ w.T + b, c)
        loss = localisation + FAITHFULNESS_WEIGHT * faithfulness
        optimiser.zero_grad()
        loss.backward()  # type: ignore[no-untyped-call]
        optimiser.step()
        if progress and (step % 10 == 0 or step == steps - 1):
            progress(f"step {step + 1}/{steps}  loss {loss.item():.4f}  (tile mass {on_tile.mean().item():.3f})")
    if isinstance(scorer, ConcatScorer):
        parametrize.remove_parametrizations(scorer.combine, "weight", leave_parametrized=True)
    scorer.eval()
    scorer.requires_grad_(False)
    after = heldout_pointing(encoder, scorer, size, images, test_mosaics)
    report = FitReport(
        len(train), len(heldout), len(train_mosaics), len(test_mosaics), steps, time.monotonic() - start, before, after
    )
    return scorer, report
