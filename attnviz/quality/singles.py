"""Map quality on single photos of objects with masks: the photos users bring, not mosaics.

Each photo comes with an object mask, from its alpha channel or a `NAME.mask.png` beside it. Its reference class is
what the network says about the object alone (cut out over white, padded square, at the encoder's trained scale),
kept only when the network is confident; so no class labels are needed, only masks. Each way of explaining the
photo is then rated on:

* recognition: its top-1 class is the reference class;
* pointing: the peak of its map for the reference class lies inside the mask (Zhang et al. 2016);
* energy: the share of the drawn map's intensity inside the mask (the picture the user sees, for every row alike);
* regions: connected regions of the drawn map above half its maximum; one reads as one object, several as islands.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from attnviz import render
from attnviz.errors import InputError, UsageError
from attnviz.explainer import Explainer
from attnviz.io.images import load_image
from attnviz.models.base import Encoder
from attnviz.options import Mode, Query

#: The network must give the cut-out alone at least this probability for the photo to count.
MIN_REFERENCE_PROB = 0.5
#: A photo's mask file is its name with this ending instead of its extension: `cup.jpg` -> `cup.mask.png`.
MASK_SUFFIX = ".mask.png"
#: Mask threshold on alpha or mask-file grey levels.
_MASK_LEVEL = 127
#: Regions are counted on the drawn map reduced to about this shorter side (islands smaller than that don't read).
_REGION_SIDE = 96


@dataclass(frozen=True)
class Single:
    path: str
    image: Image.Image  # RGB photo (a cut-out with alpha is drawn over white)
    mask: np.ndarray  # (H, W) bool, the object
    reference: int  # the class the network gives the object alone
    prob: float


def read_mask(path: str, image_size: tuple[int, int]) -> np.ndarray | None:
    """The object mask of an image: `NAME.mask.png` beside it, else its alpha channel, else None."""
    stem = Path(path)
    mask_file = stem.with_name(stem.stem + MASK_SUFFIX)
    if mask_file.is_file():
        mask = Image.open(mask_file).convert("L")
    else:
        with Image.open(path) as raw:
            if "A" not in raw.getbands() and "transparency" not in raw.info:
                return None
            mask = raw.convert("RGBA").getchannel("A")
    if mask.size != image_size:
        raise InputError(f"{mask_file if mask_file.is_file() else path}: mask size {mask.size} != image {image_size}")
    return np.asarray(mask) > _MASK_LEVEL


def cut_out(image: Image.Image, mask: np.ndarray, side: int) -> Image.Image:
    """The object alone: its bounding box over white, padded to a square with a margin, `side` pixels wide."""
    rows, cols = np.nonzero(mask)
    top, bottom, left, right = rows.min(), rows.max() + 1, cols.min(), cols.max() + 1
    pixels = np.asarray(image)[top:bottom, left:right].copy()
    pixels[~mask[top:bottom, left:right]] = 255
    box = int(max(bottom - top, right - left) * 1.1)
    canvas = Image.new("RGB", (box, box), "white")
    canvas.paste(Image.fromarray(pixels), ((box - (right - left)) // 2, (box - (bottom - top)) // 2))
    return canvas.resize((side, side), Image.Resampling.BICUBIC)


def reference_class(encoder: Encoder, image: Image.Image, mask: np.ndarray) -> tuple[int, float]:
    """Top-1 class and probability of the object alone at the encoder's trained scale."""
    side = encoder.trained_size
    x = encoder.preprocess(cut_out(image, mask, side), side)[None]  # (1, 3, side, side)
    with torch.inference_mode():
        _, logits = encoder(x.to(next(encoder.parameters()).device))
    prob, index = torch.softmax(logits.float(), dim=-1)[0].max(dim=0)
    return int(index), float(prob)


def load_singles(
    folder: str, encoder: Encoder, min_prob: float = MIN_REFERENCE_PROB, say: Callable[[str], None] | None = None
) -> tuple[list[Single], int]:
    """Masked photos under `folder` whose object the network recognises alone; also how many had a mask."""
    from attnviz.io.inputs import walk_folder

    if not os.path.isdir(folder):
        raise UsageError(f"{folder}: not a folder")
    singles: list[Single] = []
    masked = 0
    for path in walk_folder(folder):
        if path.endswith(MASK_SUFFIX):
            continue
        try:
            image = load_image(path).image
            mask = read_mask(path, image.size)
        except InputError as exc:
            if say:
                say(f"skipping {exc}")
            continue
        if mask is None or not mask.any():
            continue
        masked += 1
        # a backbone has no classes: every masked photo is rated, on its map alone
        index, prob = (-1, 1.0) if encoder.headless else reference_class(encoder, image, mask)
        if prob >= min_prob:
            singles.append(Single(path, image, mask, index, prob))
    return singles, masked


@dataclass
class SinglesRow:
    """One way of explaining a photo, and its tallies over the photos."""

    name: str
    explain: Callable[[Image.Image, int], tuple[int, np.ndarray]] = field(repr=False)  # -> top-1, (H, W) heat
    photos: int = 0
    classed: int = 0
    recognised: int = 0
    hits: int = 0
    energy: float = 0.0
    regions: int = 0

    def rate(self, single: Single) -> None:
        top1, heat = self.explain(single.image, single.reference)
        x, y = render.peak(heat)
        self.photos += 1
        self.classed += int(single.reference >= 0)  # a backbone's photos have no class to recognise
        self.recognised += int(single.reference >= 0 and top1 == single.reference)
        self.hits += int(single.mask[y, x])
        total = float(heat.sum())
        self.energy += float(heat[single.mask].sum()) / total if total > 0 else 0.0
        self.regions += count_regions(heat)

    def to_json(self) -> dict[str, object]:
        n = max(1, self.photos)
        return {
            "method": self.name,
            "photos": self.photos,
            "recognition": round(self.recognised / self.classed, 4) if self.classed else None,
            "pointing": round(self.hits / n, 4),
            "energy": round(self.energy / n, 4),
            "regions": round(self.regions / n, 3),
        }


def count_regions(heat: np.ndarray, level: float = 0.5) -> int:
    """Connected regions (4-neighbour) where the map is above `level` times its maximum, at a reduced size."""
    h, w = heat.shape
    step = max(1, min(h, w) // _REGION_SIDE)
    small = heat[::step, ::step]
    top = float(small.max())
    if top <= 0:
        return 0
    above = small >= level * top
    labels = np.zeros(above.shape, np.int32)
    count = 0
    for start in zip(*np.nonzero(above), strict=True):
        if labels[start]:
            continue
        count += 1
        stack = [start]
        labels[start] = count
        while stack:
            r, c = stack.pop()
            for nr, nc in ((r - 1, c), (r + 1, c), (r, c - 1), (r, c + 1)):
                if 0 <= nr < above.shape[0] and 0 <= nc < above.shape[1] and above[nr, nc] and not labels[nr, nc]:
                    labels[nr, nc] = count
                    stack.append((nr, nc))
    return count


def explainer_row(name: str, explainer: Explainer) -> SinglesRow:
    """A row for an attention explainer as `attnviz run` uses it: its own passes, its own drawing."""

    def explain(image: Image.Image, reference: int) -> tuple[int, np.ndarray]:
        wanted = [reference] if reference >= 0 else None  # -1: a backbone's photo, with no class
        result = explainer.explain_classes(image, wanted)[0]
        heat = render.draw_map(result.scores, image.width, image.height)
        return (result.topk[0].index if result.topk else -1), heat

    return SinglesRow(name, explain)


def gradcam_row(encoder: Encoder, side: int = 224) -> SinglesRow:
    """Grad-CAM as pytorch-grad-cam's README uses it: the photo squashed to side x side, ReLU, min-max, bilinear."""
    explainer = Explainer(encoder, Mode.dot, side, query=Query.gradient, classify_size=side)

    def explain(image: Image.Image, reference: int) -> tuple[int, np.ndarray]:
        x = encoder.preprocess(image.resize((side, side), Image.Resampling.BILINEAR), side)[None]
        result = explainer.infer_classes(x, [[reference]])[0][0]
        cam = np.maximum(result.scores, 0.0)
        span = float(cam.max() - cam.min())
        grid = (cam - cam.min()) / span if span > 0 else np.zeros_like(cam)
        return result.topk[0].index, render.upsample(grid, image.width, image.height)

    return SinglesRow(f"grad-cam {side}x{side}", explain)


def singles_rows(encoder: Encoder, modes: Sequence[Mode], size: int, gradcam: bool) -> list[SinglesRow]:
    """Per mode: the defaults (classes at the trained scale, map at `size`), the trained scale alone, `size` alone."""
    trained = encoder.trained_size
    rows = []
    for mode in modes:
        rows.append(explainer_row(f"{mode.value} (defaults)", Explainer(encoder, mode, size)))
        if encoder.headless:  # one pass, no classes: the defaults are the map's size alone
            continue
        rows.append(
            explainer_row(f"{mode.value} {trained} only", Explainer(encoder, mode, trained, classify_size=trained))
        )
        rows.append(explainer_row(f"{mode.value} {size} only", Explainer(encoder, mode, size, classify_size=size)))
    if gradcam and not encoder.headless:
        rows.append(gradcam_row(encoder))
    return rows


def format_singles(rows: Sequence[SinglesRow], kept: int, masked: int, min_prob: float = MIN_REFERENCE_PROB) -> str:
    width = max([len("method"), *(len(r.name) for r in rows)])
    lines = [f"{'method':<{width}} {'recognition':>11} {'pointing':>8} {'energy':>7} {'regions':>7}"]
    for r in rows:
        j = r.to_json()
        recognition = "-" if j["recognition"] is None else f"{j['recognition']:.3f}"
        figures = f"{recognition:>11} {j['pointing']:>8.3f} {j['energy']:>7.3f} {j['regions']:>7.2f}"
        lines.append(f"{r.name:<{width}} {figures}")
    lines.append(
        f"{kept} photos of {masked} with masks (the object alone recognised with p >= {min_prob}); "
        "regions: connected areas above half the map's maximum"
    )
    return "\n".join(lines)
