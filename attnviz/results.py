"""What an explanation holds: the predictions, the grid's scores and weights, and the drawn map."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from PIL import Image

from attnviz import render
from attnviz.record import PredictionRecord


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


@dataclass
class Explanation(GridResult):
    """A `GridResult` drawn at the picture's own size."""

    heatmap: np.ndarray = field(default_factory=lambda: np.zeros((0, 0), np.float32))  # (H, W) in [0, 1]
    peak: tuple[int, int] = (0, 0)  # (x, y) in input-image pixels

    def overlay(
        self, image: Image.Image, colormap: str = render.DEFAULT_COLORMAP, alpha: float = render.DEFAULT_ALPHA
    ) -> np.ndarray:
        return render.overlay(np.asarray(image.convert("RGB")), self.heatmap, colormap, alpha)
