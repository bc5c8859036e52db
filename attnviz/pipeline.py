"""From a picture to an explanation: encoder forward pass, class query, attention scores, upsampled map."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from functools import lru_cache

import numpy as np
import torch
from PIL import Image
from torch import Tensor

from attnviz import render
from attnviz.cache import cached_tensor, fingerprint
from attnviz.encoders import DEFAULT_ENCODER, DEFAULT_SIZE, Encoder, create_encoder
from attnviz.images import LoadedImage, load_image
from attnviz.scorers import DEFAULT_ATTN_DIM, Mode, Scorer, class_subspace, default_scorer
from attnviz.targets import resolve_target

DEFAULT_MODE = Mode.concat
DEFAULT_TOPK = 5


@dataclass(frozen=True)
class Prediction:
    index: int
    label: str
    prob: float

    def to_json(self) -> dict[str, object]:
        return {"index": self.index, "label": self.label, "prob": round(self.prob, 6)}


@dataclass
class GridResult:
    """What the network and scorer say about one image, before anything is drawn."""

    input_size: tuple[int, int]  # (w, h) fed to the network
    grid: tuple[int, int]  # (rows, cols)
    scores: np.ndarray  # (H', W') float32 scores (log-weights up to a constant)
    weights: np.ndarray  # (H', W') float32 attention weights, sum 1
    target: Prediction
    topk: list[Prediction]


@dataclass
class Explanation(GridResult):
    """A `GridResult` drawn at the picture's own size."""

    heatmap: np.ndarray = field(default_factory=lambda: np.zeros((0, 0), np.float32))  # (H, W) in [0, 1]
    peak: tuple[int, int] = (0, 0)  # (x, y) in input-image pixels

    def overlay(
        self, image: Image.Image, colormap: str = render.DEFAULT_COLORMAP, alpha: float = render.DEFAULT_ALPHA
    ) -> np.ndarray:
        return render.overlay(np.asarray(image.convert("RGB")), self.heatmap, colormap, alpha)


class Explainer:
    """Holds one encoder and its scorers, so a batch of images pays for loading them once."""

    def __init__(
        self,
        encoder: str | Encoder = DEFAULT_ENCODER,
        mode: Mode | str = DEFAULT_MODE,
        size: int = DEFAULT_SIZE,
        topk: int = DEFAULT_TOPK,
        device: str | torch.device = "cpu",
    ) -> None:
        self.encoder = _cached_encoder(encoder) if isinstance(encoder, str) else encoder
        self.mode = Mode(mode)
        self.size = size
        self.topk = max(1, min(topk, len(self.encoder.labels)))
        self.device = torch.device(device)
        self.encoder.to(self.device)
        self.scorer: Scorer = _cached_scorer(self.encoder, self.mode).to(self.device)

    def target_index(self, target: str | int | None) -> int | None:
        return None if target is None else resolve_target(target, self.encoder.labels)

    def preprocess(self, image: Image.Image) -> Tensor:
        return self.encoder.preprocess(image, self.size)  # (3, h, w)

    @torch.inference_mode()
    def infer(self, batch: Tensor, targets: list[int | None]) -> list[GridResult]:
        """(B, 3, h, w) preprocessed images of one size -> one `GridResult` each; one forward pass for all."""
        features, logits = self.encoder(batch.to(self.device))  # (B, C, H', W'), (B, K)
        b, _c, rows, cols = features.shape
        cells = features.flatten(2).transpose(1, 2)  # (B, N, C)
        probs = torch.softmax(logits.float(), dim=-1)  # (B, K)
        top_p, top_i = probs.topk(self.topk, dim=-1)  # (B, k)
        chosen = torch.tensor(
            [int(top_i[i, 0]) if t is None else t for i, t in enumerate(targets)], device=logits.device
        )  # (B,)
        queries = self.encoder.class_vectors()[chosen]  # (B, C)
        attention = self.scorer(cells.float(), queries.float())
        labels = self.encoder.labels
        results = []
        for i in range(b):
            index = int(chosen[i])
            results.append(
                GridResult(
                    input_size=(batch.shape[3], batch.shape[2]),
                    grid=(rows, cols),
                    scores=attention.scores[i].reshape(rows, cols).cpu().numpy(),
                    weights=attention.weights[i].reshape(rows, cols).cpu().numpy(),
                    target=Prediction(index, labels[index], float(probs[i, index])),
                    topk=[
                        Prediction(int(j), labels[int(j)], float(p)) for p, j in zip(top_p[i], top_i[i], strict=True)
                    ],
                )
            )
        return results

    def draw(
        self, result: GridResult, width: int, height: int, interpolation: render.Interpolation | str
    ) -> Explanation:
        heat = render.upsample(render.display_map(result.scores), width, height, interpolation)  # (H, W)
        return Explanation(**vars(result), heatmap=heat, peak=render.peak(heat))

    def explain(
        self,
        image: Image.Image,
        target: str | int | None = None,
        interpolation: render.Interpolation | str = render.Interpolation.bilinear,
    ) -> Explanation:
        image = image.convert("RGB")
        result = self.infer(self.preprocess(image)[None], [self.target_index(target)])[0]
        return self.draw(result, image.width, image.height, interpolation)


@lru_cache(maxsize=4)
def _cached_encoder(name: str) -> Encoder:
    return create_encoder(name)


@lru_cache(maxsize=8)
def _cached_scorer(encoder: Encoder, mode: Mode) -> Scorer:
    vectors = encoder.class_vectors().detach()  # (K, C)
    if mode is Mode.dot:
        return default_scorer(mode, vectors, encoder.feature_bound)
    key = f"subspace-{encoder.name}-{fingerprint(vectors)}-{DEFAULT_ATTN_DIM}"
    basis = cached_tensor(key, lambda: class_subspace(vectors))  # (A, C)
    return default_scorer(mode, vectors, encoder.feature_bound, basis)


def explain(
    image: str | os.PathLike[str] | Image.Image,
    mode: Mode | str = DEFAULT_MODE,
    target: str | int | None = None,
    encoder: str | Encoder = DEFAULT_ENCODER,
    size: int = DEFAULT_SIZE,
    interpolation: render.Interpolation | str = render.Interpolation.bilinear,
) -> Explanation:
    """Explain one picture: where `encoder` finds the evidence for `target` (default: its top-1 class).

    `image` is a path or a Pillow image. The result holds the (H', W') attention weights, the map upsampled to the
    picture's size, the target with its probability, and the top-k predictions.
    """
    picture = image if isinstance(image, Image.Image) else load_image(image).image
    return Explainer(encoder, mode, size).explain(picture, target, interpolation)


__all__ = ["Explainer", "Explanation", "GridResult", "LoadedImage", "Prediction", "explain"]
