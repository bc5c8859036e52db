"""From a picture to an explanation: encoder forward pass, class query, attention scores, upsampled map."""

from __future__ import annotations

import copy
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
#: Fewest grid cells along the shorter side of the network input.
MIN_CELLS = 2


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

    input_size: tuple[int, int]  # (w, h) fed to the network for the map
    grid: tuple[int, int]  # (rows, cols)
    scores: np.ndarray  # (H', W') float32 scores (log-weights up to a constant)
    weights: np.ndarray  # (H', W') float32 attention weights, sum 1
    target: Prediction
    topk: list[Prediction]
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


class Query(str, Enum):
    """Where the class query comes from."""

    auto = "auto"  # classifier rows when the head is pool-then-linear, else gradients
    classifier = "classifier"
    gradient = "gradient"


class Explainer:
    """Holds one encoder and its scorer, so a batch of images pays for loading them once.

    `encoder` is a registry name (with `weights`, a local state dict) or an `Encoder`; `head` is a file from
    `attnviz fit`, whose mode is used when `mode` is not given. `device="auto"` picks CUDA, then MPS, then the CPU,
    as the command line does. Named encoders are cached per name and weights; a non-CPU device gets its own copy,
    so one explainer never moves another's network.
    """

    def __init__(
        self,
        encoder: str | Encoder = DEFAULT_ENCODER,
        mode: Mode | str | None = None,
        size: int = DEFAULT_SIZE,
        topk: int = DEFAULT_TOPK,
        device: str | torch.device = "auto",
        query: Query | str = Query.auto,
        scorer: Scorer | None = None,
        classify_size: int | None = None,
        *,
        weights: str | None = None,
        head: str | os.PathLike[str] | None = None,
    ) -> None:
        self.device = torch.device(pick_device(str(device)))
        if isinstance(encoder, str):
            encoder = _cached_encoder(encoder, weights)
            if self.device.type != "cpu":
                encoder = copy.deepcopy(encoder)
        self.encoder = encoder
        if head is not None:
            from attnviz.heads import head_mode, load_head

            fitted = head_mode(head)
            if mode is not None and Mode(mode) is not fitted:
                raise UsageError(f"{os.fspath(head)}: this head is for --mode {fitted.value}, not {Mode(mode).value}")
            mode, scorer = fitted, load_head(head, self.encoder, fitted)
        self.mode = Mode(mode) if mode is not None else DEFAULT_MODE
        self.size = size
        #: Shorter side of the pass that ranks the classes: the encoder's trained scale unless told otherwise.
        #: A network recognises best at the scale it was trained at, and draws a finer map at a larger one.
        self.classify_size = classify_size or self.encoder.trained_size
        stride = self.encoder.stride
        for option, value in (("--size", size), ("--classify-size", self.classify_size)):
            if value < MIN_CELLS * stride:  # a 1-cell grid has no "where": the aspect ratio would be lost too
                raise UsageError(
                    f"{option} {value} is under {MIN_CELLS} cells of encoder {self.encoder.name}'s stride {stride}; "
                    f"use at least {MIN_CELLS * stride}"
                )
        self.topk = max(1, min(topk, len(self.encoder.labels)))
        self.encoder.to(self.device)
        vectors = self.encoder.class_vectors()
        self.query = Query(query)
        if self.query is Query.auto:
            self.query = Query.gradient if vectors is None else Query.classifier
        if self.query is Query.classifier and vectors is None:
            raise UsageError(
                f"encoder {self.encoder.name}: no classifier vectors for this head or layer; use --query gradient"
            )
        scorer = scorer or _cached_scorer(self.encoder, self.mode, self.query)
        if self.device.type != "cpu" and scorer is _cached_scorer(self.encoder, self.mode, self.query):
            scorer = copy.deepcopy(scorer)  # the cached one stays on the CPU for other explainers
        self.scorer: Scorer = scorer.to(self.device).eval()

    def target_index(self, target: str | int | None) -> int | None:
        return None if target is None else resolve_target(target, self.encoder.labels)

    @property
    def two_pass(self) -> bool:
        return self.classify_size != self.size

    def preprocess(self, image: Image.Image) -> Tensor:
        return self.encoder.preprocess(image, self.size)  # (3, h, w)

    def preprocess_classify(self, image: Image.Image) -> Tensor | None:
        """The picture at the recognition scale, or None when that is the map's own pass."""
        return self.encoder.preprocess(image, self.classify_size) if self.two_pass else None  # (3, h', w')

    def infer(self, batch: Tensor, targets: list[int | None], recognise: Tensor | None = None) -> list[GridResult]:
        """(B, 3, h, w) preprocessed images of one size -> one `GridResult` each (target or top-1)."""
        classes = None if all(t is None for t in targets) else [[t] if t is not None else [] for t in targets]
        return [maps[0] for maps in self.infer_classes(batch, classes, top=1, recognise=recognise)]

    def infer_classes(
        self, batch: Tensor, classes: list[list[int]] | None, top: int = 1, recognise: Tensor | None = None
    ) -> list[list[GridResult]]:
        """One map per requested class of each image (its top `top` classes when the list for it is empty or
        `classes` is None).

        `recognise` is the same pictures at the recognition scale (`preprocess_classify`): when given, the classes
        and probabilities come from a pass over it, and the maps from the pass over `batch`.
        """
        x = batch.to(self.device)
        if self.query is Query.classifier:
            with torch.inference_mode():
                features, logits = self.encoder(x)  # (B, C, H', W'), (B, K)
        else:
            with torch.enable_grad():
                features, logits = self.encoder(x, track_features=True)
        classify_size = None
        ranking = logits.detach()
        if recognise is not None:
            classify_size = (int(recognise.shape[3]), int(recognise.shape[2]))
            with torch.inference_mode():
                _, ranking = self.encoder(recognise.to(self.device))  # (B, K)
        probs = torch.softmax(ranking.float(), dim=-1)  # (B, K)
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
                        classify_size=classify_size,
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
        self,
        result: GridResult,
        width: int,
        height: int,
        interpolation: render.Interpolation | str = render.Interpolation.bilinear,
        smooth: float = render.DEFAULT_SMOOTH,
    ) -> Explanation:
        heat = render.draw_map(result.scores, width, height, interpolation, smooth)  # (H, W)
        return Explanation(**vars(result), heatmap=heat, peak=render.peak(heat))

    def explain(
        self,
        image: Picture,
        target: str | int | None = None,
        interpolation: render.Interpolation | str = render.Interpolation.bilinear,
    ) -> Explanation:
        """Where the encoder finds the evidence for `target` (default: its top-1 class) in one picture: a path, a
        Pillow image, an (H, W, 3) or (H, W) numpy array, or a (3, H, W) tensor (uint8, or floats in [0, 1])."""
        image = as_picture(image)
        small = self.preprocess_classify(image)
        recognise = None if small is None else small[None]
        result = self.infer(self.preprocess(image)[None], [self.target_index(target)], recognise)[0]
        return self.draw(result, image.width, image.height, interpolation)


@lru_cache(maxsize=4)
def _cached_encoder(name: str, weights: str | None = None) -> Encoder:
    return create_encoder(name, weights)


Picture = str | os.PathLike[str] | Image.Image | np.ndarray | Tensor


def as_picture(image: Picture) -> Image.Image:
    """An RGB Pillow image from any of the forms `Explainer.explain` takes."""
    if isinstance(image, Image.Image):
        return image.convert("RGB")
    if isinstance(image, (str, os.PathLike)):
        return load_image(image).image
    if isinstance(image, Tensor):
        tensor = image.detach().cpu()
        if tensor.dim() == 4 and tensor.shape[0] == 1:
            tensor = tensor[0]
        if tensor.dim() != 3 or tensor.shape[0] not in (1, 3):
            raise UsageError(f"a tensor picture must be (3, H, W) or (1, H, W), got {tuple(image.shape)}")
        image = tensor.permute(1, 2, 0).numpy()  # (H, W, 3)
    array = np.asarray(image)
    if array.ndim == 3 and array.shape[2] == 1:
        array = array[..., 0]
    if array.ndim not in (2, 3) or (array.ndim == 3 and array.shape[2] not in (3, 4)):
        raise UsageError(f"a numpy picture must be (H, W), (H, W, 3) or (H, W, 4), got {array.shape}")
    if array.dtype != np.uint8:
        if not np.issubdtype(array.dtype, np.floating):
            raise UsageError(f"a picture array must be uint8, or floats in [0, 1]; got {array.dtype}")
        array = (np.clip(np.nan_to_num(array), 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)
    return Image.fromarray(np.ascontiguousarray(array)).convert("RGB")


def pick_device(name: str) -> str:
    """`auto`: CUDA, then Apple's MPS, then the CPU. A named device that is missing is a usage error."""
    mps = hasattr(torch.backends, "mps") and torch.backends.mps.is_available()
    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "mps" if mps else "cpu"
    kind = name.split(":")[0]
    if (kind == "cuda" and not torch.cuda.is_available()) or (kind == "mps" and not mps):
        raise UsageError(f"--device {name}: no {kind.upper()} device is available")
    return name


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
    image: Picture,
    mode: Mode | str | None = None,
    target: str | int | None = None,
    encoder: str | Encoder = DEFAULT_ENCODER,
    size: int = DEFAULT_SIZE,
    interpolation: render.Interpolation | str = render.Interpolation.bilinear,
    device: str = "auto",
) -> Explanation:
    """Explain one picture: where `encoder` finds the evidence for `target` (default: its top-1 class).

    `image` is a path, a Pillow image, a numpy array or a tensor (see `Explainer.explain`). The result holds the
    (H', W') attention weights, the map upsampled to the picture's size, the target with its probability, and the
    top-k predictions, ranked at the encoder's trained scale.
    """
    return Explainer(encoder, mode, size, device=device).explain(image, target, interpolation)


__all__ = ["Explainer", "Explanation", "GridResult", "Prediction", "Query", "explain"]
