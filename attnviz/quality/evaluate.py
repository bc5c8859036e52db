"""Map quality on mosaics: pointing, energy, deletion and insertion, with a Grad-CAM row for reference."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from attnviz import render
from attnviz.explainer import Explainer
from attnviz.quality.mosaics import TILE_ORIGINS, Mosaic, compose, square, tile_region


@dataclass
class PointingScore:
    queries: int = 0
    hits: int = 0
    energy: float = 0.0

    @property
    def pointing(self) -> float:
        return self.hits / self.queries if self.queries else float("nan")

    @property
    def mean_energy(self) -> float:
        return self.energy / self.queries if self.queries else float("nan")


@dataclass
class Method:
    """A row of the evaluation table: an attention scorer, or Grad-CAM (ReLU of the gradient-weighted map)."""

    name: str
    explainer: Explainer
    gradcam: bool = False

    def grid(self, batch: torch.Tensor, targets: list[int]) -> list[tuple[np.ndarray, np.ndarray]]:
        """Per target (all of the one image in `batch`): (H', W') map to rank cells by, and (H', W') distribution
        of its mass (sums to 1). One forward pass for all targets."""
        out = []
        for result in self.explainer.infer_classes(batch, [list(targets)])[0]:
            if self.gradcam:
                positive = np.maximum(result.scores, 0.0)
                total = float(positive.sum())
                mass = positive / total if total > 0 else np.full_like(positive, 1.0 / positive.size)
                out.append((positive, mass))
            else:
                out.append((result.scores, result.weights))
        return out


def mosaic_pointing(method: Method, picture: Image.Image, classes: Sequence[int], score: PointingScore) -> None:
    """Query a mosaic with each tile's class: was the map's peak (at the picture's resolution) in that tile, and
    what share of the map's mass lies there? Adds the answers to `score`."""
    batch = method.explainer.preprocess(picture)[None]
    for tile, (ranking, mass) in enumerate(method.grid(batch, list(classes))):
        if method.gradcam:  # drawn as pytorch-grad-cam draws it
            heat = render.upsample(render.display_map(ranking), picture.width, picture.height)
        else:  # drawn as `attnviz run` draws it
            heat = render.draw_map(ranking, picture.width, picture.height)
        x, y = render.peak(heat)
        col, row = TILE_ORIGINS[tile]
        score.queries += 1
        score.hits += int((x >= picture.width // 2) == bool(col) and (y >= picture.height // 2) == bool(row))
        score.energy += float(mass[tile_region(tile, *mass.shape)].sum())


@dataclass
class CurveScore:
    images: int = 0
    deletion: float = 0.0
    insertion: float = 0.0

    @property
    def mean_deletion(self) -> float:
        return self.deletion / self.images if self.images else float("nan")

    @property
    def mean_insertion(self) -> float:
        return self.insertion / self.images if self.images else float("nan")


def _blur(x: torch.Tensor) -> torch.Tensor:
    """(3, h, w) -> heavily blurred copy: the 'nothing inserted yet' start of the insertion curve."""
    small = F.interpolate(x[None], scale_factor=1 / 16, mode="area")
    return F.interpolate(small, size=x.shape[1:], mode="bilinear", align_corners=False)[0]


def deletion_insertion(method: Method, x: torch.Tensor, target: int, steps: int = 16) -> tuple[float, float]:
    """RISE's curves (Petsiuk et al. 2018): remove (insert) pixels most salient first, average the class probability.

    Deleted pixels take the dataset mean (0 after normalisation); insertion starts from a blurred picture.
    Lower deletion and higher insertion are better.
    """
    ranking, _ = method.grid(x[None], [target])[0]
    h, w = x.shape[1:]
    span = float(ranking.max() - ranking.min()) or 1.0
    heat = render.upsample((ranking - ranking.min()) / span, w, h)  # full range: no ties below the median
    order = torch.from_numpy(np.argsort(-heat.ravel(), kind="stable").copy())  # most salient first
    counts = [round(k * h * w / steps) for k in range(steps + 1)]
    blurred = _blur(x)
    deleted, inserted = [], []
    for count in counts:
        mask = torch.zeros(h * w, dtype=torch.bool)
        mask[order[:count]] = True
        mask2d = mask.reshape(1, h, w)
        deleted.append(torch.where(mask2d, torch.zeros_like(x), x))
        inserted.append(torch.where(mask2d, x, blurred))
    encoder = method.explainer.encoder
    device = method.explainer.device
    with torch.inference_mode():
        curves = []
        for stack in (deleted, inserted):
            _, logits = encoder(torch.stack(stack).to(device))
            curves.append(torch.softmax(logits.float(), dim=-1)[:, target].cpu().numpy())
    return float(np.trapezoid(curves[0]) / steps), float(np.trapezoid(curves[1]) / steps)


def _figure(value: float) -> float | None:
    return None if np.isnan(value) else round(value, 4)


@dataclass
class EvalRow:
    method: str
    pointing: PointingScore
    curves: CurveScore

    def to_json(self) -> dict[str, object]:
        """Figures rounded to 4 places; one with nothing to average over (`--images 0`) is null, not NaN."""
        return {
            "method": self.method,
            "pointing": _figure(self.pointing.pointing),
            "energy": _figure(self.pointing.mean_energy),
            "deletion_auc": _figure(self.curves.mean_deletion),
            "insertion_auc": _figure(self.curves.mean_insertion),
            "queries": self.pointing.queries,
            "auc_images": self.curves.images,
        }


def evaluate(
    methods: Sequence[Method],
    images: Sequence[Image.Image],
    classes: Sequence[int],
    mosaics: Sequence[Mosaic],
    curve_images: Sequence[int],
    curve_size: int,
    progress: Callable[[], None] | None = None,
) -> list[EvalRow]:
    """Pointing and energy on `mosaics`; deletion and insertion on the images indexed by `curve_images`."""
    rows = []
    side = methods[0].explainer.size // 2 if methods else 224
    tiles = {i: square(images[i], side) for m in mosaics for i in m.members}
    for method in methods:
        pointing = PointingScore()
        for mosaic in mosaics:
            picture = compose([tiles[i] for i in mosaic.members], side)
            mosaic_pointing(method, picture, mosaic.classes, pointing)
            if progress is not None:
                progress()
        curves = CurveScore()
        for index in curve_images:
            x = method.explainer.encoder.preprocess(images[index], curve_size)
            deletion, insertion = deletion_insertion(method, x, classes[index])
            curves.images += 1
            curves.deletion += deletion
            curves.insertion += insertion
            if progress is not None:
                progress()
        rows.append(EvalRow(method.name, pointing, curves))
    return rows


def format_table(rows: Sequence[EvalRow], mosaics: int, images: int) -> str:
    width = max([len("method"), *(len(r.method) for r in rows)])
    lines = [
        f"{'method':<{width}} {'pointing':>8} {'energy':>7} {'deletion':>9} {'insertion':>10}",
        *(
            f"{r.method:<{width}} {r.pointing.pointing:>8.3f} {r.pointing.mean_energy:>7.3f} "
            f"{r.curves.mean_deletion:>9.3f} {r.curves.mean_insertion:>10.3f}"
            for r in rows
        ),
        f"pointing/energy: {rows[0].pointing.queries if rows else 0} queries on {mosaics} mosaics; "
        f"deletion/insertion (lower/higher is better): {rows[0].curves.images if rows else 0} images of {images}",
    ]
    return "\n".join(lines)
