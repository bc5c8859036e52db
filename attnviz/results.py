"""What an explanation holds: the predictions, the grid's scores and weights, and the drawn map.

An `Explanation` from `Explainer.explain` also keeps the picture it was drawn for (a reference, not a copy), so it
shows itself in a notebook (`_repr_png_`), draws its overlay and saves it (`save`) without being handed the picture
again; `to_tensor` gives the weights where the network ran.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from PIL import Image

from attnviz import render
from attnviz.errors import OutputError, UsageError
from attnviz.record import PredictionRecord

if TYPE_CHECKING:
    from torch import Tensor

    from attnviz.io.pictures import Picture

#: Longer side of the picture a notebook shows (`_repr_png_`): a 12-megapixel photo is not sent to the browser.
DISPLAY_SIDE = 1024


@dataclass(frozen=True)
class Prediction:
    index: int
    label: str
    prob: float

    def to_json(self) -> PredictionRecord:
        return {"index": self.index, "label": self.label, "prob": round(self.prob, 6)}


def prediction_json(prediction: Prediction | None) -> PredictionRecord | None:
    """A map's class as `run --json` writes it: null for a backbone's class-free map."""
    return None if prediction is None else prediction.to_json()


@dataclass
class GridResult:
    """What the network and scorer say about one image, before anything is drawn."""

    input_size: tuple[int, int]  # (w, h) fed to the network for the map
    grid: tuple[int, int]  # (rows, cols)
    scores: np.ndarray  # (H', W') float32 scores (log-weights up to a constant)
    weights: np.ndarray  # (H', W') float32 attention weights, sum 1
    target: Prediction | None  # None: a backbone without a classifier explains no class
    topk: list[Prediction]  # empty for a backbone
    classify_size: tuple[int, int] | None = None  # (w, h) of the pass that chose the classes; None: the same pass
    #: `weights` as the network computed them, on its device (on the CPU the same memory); None when built by hand
    device_weights: Tensor | None = field(default=None, repr=False, compare=False)

    def to_tensor(self) -> Tensor:
        """The (H', W') attention weights as a torch tensor on the model's device, never copied back to the CPU.

        Made under `torch.inference_mode()`, like every map: use it in computations, or `.clone()` it first to
        change it in place or to take gradients through it."""
        if self.device_weights is not None:
            return self.device_weights
        import torch

        return torch.from_numpy(self.weights)


@dataclass(repr=False)
class Explanation(GridResult):
    """A `GridResult` drawn at the picture's own size."""

    heatmap: np.ndarray = field(default_factory=lambda: np.zeros((0, 0), np.float32))  # (H, W) in [0, 1]
    peak: tuple[int, int] = (0, 0)  # (x, y) in input-image pixels
    mode: str | None = None  # the --mode that drew it
    #: The picture the map was drawn for (what `overlay`, `save` and a notebook draw on); not compared or shown.
    picture: Image.Image | None = field(default=None, repr=False, compare=False)
    #: The file the picture was read from, which `save` never writes over.
    source: str | None = field(default=None, repr=False, compare=False)

    def __repr__(self) -> str:
        rows, cols = self.grid
        if self.target is None:
            what = "attention, no class"
        else:
            what = f"{self.target.label.split(',')[0]!r} (#{self.target.index}) p={self.target.prob:.3f}"
        return f"<Explanation {what}, grid {rows}x{cols}, mode {self.mode or '?'}>"

    def overlay(
        self,
        image: Picture | None = None,
        colormap: str = render.DEFAULT_COLORMAP,
        alpha: float = render.DEFAULT_ALPHA,
    ) -> np.ndarray:
        """(H, W, 3) uint8 RGB: the map over `image`, by default the picture it was drawn for."""
        photo = self._photo(image)
        return render.overlay(np.asarray(photo), self.heatmap, colormap, alpha)

    def drawn(
        self,
        image: Picture | None = None,
        *,
        annotate: bool = False,
        colormap: str = render.DEFAULT_COLORMAP,
        alpha: float = render.DEFAULT_ALPHA,
    ) -> Image.Image:
        """The overlay as a Pillow image, with `annotate` the caption band under it (class, probability, mode, colour
        bar), as `attnviz run --annotate` writes it."""
        from attnviz.render.overlay import overlay_image

        picture = overlay_image(self._photo(image), self.heatmap, colormap, alpha)
        if not annotate:
            return picture
        from attnviz.render.annotate import annotate as band
        from attnviz.render.annotate import caption

        return Image.fromarray(band(np.asarray(picture), caption(self.target, self.mode or "?"), colormap))

    def save(
        self,
        path: str | os.PathLike[str],
        image: Picture | None = None,
        *,
        annotate: bool = False,
        overwrite: bool = False,
        colormap: str = render.DEFAULT_COLORMAP,
        alpha: float = render.DEFAULT_ALPHA,
    ) -> Path:
        """Write the overlay (see `drawn`) as .png, .jpg or .webp, by the extension, as `attnviz run` does: whole
        or not at all, never over an existing file unless `overwrite`, never over the picture's own file."""
        from attnviz.io.outputs import check_target, encode_image, image_format, write_bytes

        fmt, options = image_format(path)
        render.check_style(colormap, alpha)
        try:
            check_target(path, inputs=(self.source,) if self.source else (), overwrite=overwrite)
            picture = self.drawn(image, annotate=annotate, colormap=colormap, alpha=alpha)
            try:
                data = encode_image(picture, fmt, options)
            except (ValueError, OSError) as exc:  # e.g. WebP wider than 16383 px
                raise OutputError(f"{os.fspath(path)}: cannot encode as {fmt}: {exc}") from None
            write_bytes(path, data, overwrite=overwrite)
        except OutputError as exc:  # the command line's words, in Python's
            raise OutputError(str(exc).replace("--overwrite", "overwrite=True")) from None
        return Path(path)

    def _repr_png_(self) -> bytes | None:
        """What a notebook shows: the overlay, at most `DISPLAY_SIDE` pixels on its longer side."""
        if self.picture is None:
            return None  # drawn without a picture (`Explainer.draw`): the notebook shows the repr
        from attnviz.io.outputs import encode_image

        picture = self.drawn()
        picture.thumbnail((DISPLAY_SIDE, DISPLAY_SIDE), Image.Resampling.BILINEAR)
        return encode_image(picture, "PNG", {})

    def _photo(self, image: Picture | None) -> Image.Image:
        photo = image if image is not None else self.picture
        if photo is None:
            raise UsageError("this explanation keeps no picture: pass the picture it was drawn for")
        from attnviz.io.pictures import as_picture  # torch-free until a picture is drawn

        photo = as_picture(photo)  # an RGB Pillow image from any picture `explain` takes
        if (photo.height, photo.width) != self.heatmap.shape:
            raise UsageError(
                f"the picture is {photo.width}x{photo.height} but the map was drawn for "
                f"{self.heatmap.shape[1]}x{self.heatmap.shape[0]}"
            )
        return photo
