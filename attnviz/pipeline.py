"""From a picture to an explanation: encoder forward pass, class query, attention scores, upsampled map."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from enum import Enum
from functools import lru_cache

import numpy as np
import torch
from PIL import Image
from torch import Tensor

from attnviz import render
from attnviz.cache import cached_tensor, fingerprint
from attnviz.encoders import DEFAULT_ENCODER, DEFAULT_SIZE, Encoder, create_encoder
from attnviz.errors import UsageError
from attnviz.images import load_image
from attnviz.scorers import DEFAULT_ATTN_DIM, DotScorer, Mode, Scorer, class_subspace, default_scorer, query_bound
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


class Query(str, Enum):
    """Where the class query comes from."""

    auto = "auto"  # classifier rows when the head is pool-then-linear, else gradients
    classifier = "classifier"
    gradient = "gradient"


class Explainer:
    """Holds one encoder and its scorer, so a batch of images pays for loading them once."""

    def __init__(
        self,
        encoder: str | Encoder = DEFAULT_ENCODER,
        mode: Mode | str = DEFAULT_MODE,
        size: int = DEFAULT_SIZE,
        topk: int = DEFAULT_TOPK,
        device: str | torch.device = "cpu",
        query: Query | str = Query.auto,
        scorer: Scorer | None = None,
    ) -> None:
        self.encoder = _cached_encoder(encoder) if isinstance(encoder, str) else encoder
        self.mode = Mode(mode)
        self.size = size
        self.topk = max(1, min(topk, len(self.encoder.labels)))
        self.device = torch.device(device)
        self.encoder.to(self.device)
        vectors = self.encoder.class_vectors()
        self.query = Query(query)
        if self.query is Query.auto:
            self.query = Query.gradient if vectors is None else Query.classifier
        if self.query is Query.classifier and vectors is None:
            raise UsageError(
                f"encoder {self.encoder.name}: no classifier vectors for this head or layer; use --query gradient"
            )
        self.scorer: Scorer = (scorer or _cached_scorer(self.encoder, self.mode, self.query)).to(self.device).eval()

    def target_index(self, target: str | int | None) -> int | None:
        return None if target is None else resolve_target(target, self.encoder.labels)

    def preprocess(self, image: Image.Image) -> Tensor:
        return self.encoder.preprocess(image, self.size)  # (3, h, w)

    def infer(self, batch: Tensor, targets: list[int | None]) -> list[GridResult]:
        """(B, 3, h, w) preprocessed images of one size -> one `GridResult` each (target or top-1)."""
        classes = None if all(t is None for t in targets) else [[t] if t is not None else [] for t in targets]
        return [maps[0] for maps in self.infer_classes(batch, classes, top=1)]

    def infer_classes(self, batch: Tensor, classes: list[list[int]] | None, top: int = 1) -> list[list[GridResult]]:
        """One forward pass, then one map per requested class of each image (its top `top` classes when the
        list for it is empty or `classes` is None)."""
        x = batch.to(self.device)
        if self.query is Query.classifier:
            with torch.inference_mode():
                features, logits = self.encoder(x)  # (B, C, H', W'), (B, K)
        else:
            with torch.enable_grad():
                features, logits = self.encoder(x, track_features=True)
        probs = torch.softmax(logits.detach().float(), dim=-1)  # (B, K)
        top_p, top_i = probs.topk(max(self.topk, top), dim=-1)  # (B, k)
        chosen = [(classes[i] if classes and classes[i] else [int(j) for j in top_i[i, :top]]) for i in range(len(x))]
        queries = self.queries(features, logits, chosen)  # (M, C), M = total maps
        rows, cols = features.shape[-2:]
        cells = features.detach().flatten(2).transpose(1, 2).float()  # (B, N, C)
        owner = torch.tensor([i for i, wanted in enumerate(chosen) for _ in wanted], device=cells.device)  # (M,)
        with torch.inference_mode():
            attention = self.scorer(cells[owner], queries.float())  # (M, N)
        scores = attention.scores.reshape(-1, rows, cols).cpu().numpy()
        weights = attention.weights.reshape(-1, rows, cols).cpu().numpy()
        labels = self.encoder.labels
        results: list[list[GridResult]] = []
        m = 0
        for i, wanted in enumerate(chosen):
            topk = [Prediction(int(j), labels[int(j)], float(p)) for p, j in zip(top_p[i], top_i[i], strict=True)]
            maps = []
            for index in wanted:
                maps.append(
                    GridResult(
                        input_size=(x.shape[3], x.shape[2]),
                        grid=(rows, cols),
                        scores=scores[m],
                        weights=weights[m],
                        target=Prediction(index, labels[index], float(probs[i, index])),
                        topk=topk[: self.topk],
                    )
                )
                m += 1
            results.append(maps)
        return results

    def queries(self, features: Tensor, logits: Tensor, chosen: list[list[int]]) -> Tensor:
        """(M, C) queries, one per requested map, in image-then-class order.

        Gradient queries sum d(logit_c)/d(h_i) over the cells: N times Grad-CAM's channel weights, which for a
        pool-then-linear head is exactly the classifier row, so both kinds of query give the same map there.
        """
        if self.query is Query.classifier:
            vectors = self.encoder.class_vectors()
            assert vectors is not None
            flat = torch.tensor([c for wanted in chosen for c in wanted], device=vectors.device)
            return vectors[flat].detach()
        rows = []
        for i, wanted in enumerate(chosen):
            for c in wanted:
                (grad,) = torch.autograd.grad(logits[i, c], features, retain_graph=True)  # (B, C, H', W')
                rows.append(grad[i].sum(dim=(1, 2)))  # (C,)
        return torch.stack(rows).detach()

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


def calibrate(encoder: Encoder, classes: int = 5) -> tuple[float, Tensor]:
    """Largest feature value and a few gradient queries on a fixed synthetic picture (smooth coloured noise).

    Needs no data: it only sets the scale at which the default concat scorer's tanh units work.
    """
    generator = torch.Generator().manual_seed(0)
    noise = torch.rand(1, 3, 14, 14, generator=generator)  # (1, 3, 14, 14)
    picture = torch.nn.functional.interpolate(noise, size=(224, 224), mode="bicubic", align_corners=False)
    mean = torch.tensor(encoder.mean).reshape(1, 3, 1, 1)
    std = torch.tensor(encoder.std).reshape(1, 3, 1, 1)
    x = ((picture.clamp(0, 1) - mean) / std).to(next(encoder.parameters()).device)
    with torch.enable_grad():
        features, logits = encoder(x, track_features=True)
        rows = []
        for c in logits[0].topk(classes).indices.tolist():
            (grad,) = torch.autograd.grad(logits[0, c], features, retain_graph=True)
            rows.append(grad[0].sum(dim=(1, 2)))
    return float(features.detach().abs().max()), torch.stack(rows).detach().cpu()


@lru_cache(maxsize=8)
def _cached_scorer(encoder: Encoder, mode: Mode, query: Query = Query.classifier) -> Scorer:
    return data_free_scorer(encoder, mode, query)


def data_free_scorer(encoder: Encoder, mode: Mode, query: Query = Query.classifier) -> Scorer:
    """The default scorer of a mode for this encoder: CAM-faithful, no training, nothing random."""
    if mode is Mode.dot:
        return DotScorer()
    vectors = encoder.class_vectors()
    feature_bound = encoder.feature_bound
    if vectors is not None:
        vectors = vectors.detach().cpu()  # (K, C)
        key = f"subspace-{encoder.name}-{fingerprint(vectors)}-{DEFAULT_ATTN_DIM}"
        basis = cached_tensor(key, lambda: class_subspace(vectors))  # (A, C)
        samples = vectors if query is Query.classifier else None
    else:
        basis = torch.eye(encoder.channels)  # no class subspace to project on: general is dot
        samples = None
    if feature_bound is None or samples is None:
        measured, gradient_queries = calibrate(encoder)
        feature_bound = feature_bound or 3.0 * measured
        samples = samples if samples is not None else 3.0 * gradient_queries
    return default_scorer(mode, basis, feature_bound, query_bound(samples, basis))


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


__all__ = ["Explainer", "Explanation", "GridResult", "Prediction", "Query", "explain"]
