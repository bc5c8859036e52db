"""Default scorers that need no data: CAM-faithful heads built from the classifier, nothing random."""

from __future__ import annotations

from functools import lru_cache

import torch
from torch import Tensor

from attnviz.attention.cache import cached_tensor, fingerprint
from attnviz.attention.scorers import DEFAULT_ATTN_DIM, DotScorer, Scorer, class_subspace, default_scorer, query_bound
from attnviz.models.base import Encoder
from attnviz.options import TRAINED_SIZE, Mode, Query

#: Version of the derivation of the class subspace; part of its cache key, so a changed algorithm never reads an
#: old entry.
SUBSPACE_VERSION = 2
#: The calibration picture is one synthetic photo, and real photos can reach further than it does: the tanh units
#: are scaled for this many times its largest feature and its largest gradient query, so that they stay in their
#: near-quadratic range on brighter or busier photos (used only when the encoder declares no feature bound).
CALIBRATION_MARGIN = 3.0
#: The calibration picture: smooth noise, this many cells of colour per side, at the trained size.
_CALIBRATION_CELLS = 14


@lru_cache(maxsize=8)
def calibrate(encoder: Encoder, classes: int = 5) -> tuple[float, Tensor]:
    """Largest feature value and a few gradient queries on a fixed synthetic picture (smooth coloured noise).

    Needs no data: it only sets the scale at which the default concat scorer's tanh units work.
    """
    generator = torch.Generator().manual_seed(0)
    noise = torch.rand(1, 3, _CALIBRATION_CELLS, _CALIBRATION_CELLS, generator=generator)  # (1, 3, 14, 14)
    side = encoder.trained_size or TRAINED_SIZE
    picture = torch.nn.functional.interpolate(noise, size=(side, side), mode="bicubic", align_corners=False)
    mean = torch.tensor(encoder.mean).reshape(1, 3, 1, 1)
    std = torch.tensor(encoder.std).reshape(1, 3, 1, 1)
    x = ((picture.clamp(0, 1) - mean) / std).to(next(encoder.parameters()).device)
    with torch.enable_grad():
        features, logits = encoder(x, track_features=True)
        rows = []
        for c in logits[0].topk(min(classes, logits.shape[-1])).indices.tolist():
            (grad,) = torch.autograd.grad(logits[0, c], features, retain_graph=True)
            rows.append(grad[0].sum(dim=(1, 2)))
    return float(features.detach().abs().max()), torch.stack(rows).detach().cpu()


@lru_cache(maxsize=8)
def cached_scorer(encoder: Encoder, mode: Mode, query: Query = Query.classifier) -> Scorer:
    """The data-free head, shared by explainers (which copy it for another device) and changed by none."""
    scorer = data_free_scorer(encoder, mode, query)
    scorer.freeze()
    return scorer


def data_free_scorer(encoder: Encoder, mode: Mode, query: Query = Query.classifier) -> Scorer:
    """The default scorer of a mode for this encoder: CAM-faithful, no training, nothing random."""
    with torch.random.fork_rng(devices=[]):  # new layers draw initial weights: the caller's generator is untouched
        return _data_free_scorer(encoder, mode, query)


def _data_free_scorer(encoder: Encoder, mode: Mode, query: Query) -> Scorer:
    if mode is Mode.dot:
        return DotScorer()
    vectors = encoder.class_vectors()
    feature_bound = encoder.feature_bound
    if vectors is not None:
        vectors = vectors.detach().cpu()  # (K, C)
        key = f"subspace-v{SUBSPACE_VERSION}-{encoder.name}-{fingerprint(vectors)}-{DEFAULT_ATTN_DIM}"
        basis = cached_tensor(key, lambda: class_subspace(vectors))  # (A, C)
        samples = vectors if query is Query.classifier else None
    else:
        basis = torch.eye(encoder.channels)  # no class subspace to project on: general is dot
        samples = None
    if feature_bound is None or samples is None:
        measured, gradient_queries = calibrate(encoder)
        feature_bound = feature_bound or CALIBRATION_MARGIN * measured
        samples = samples if samples is not None else CALIBRATION_MARGIN * gradient_queries
    return default_scorer(mode, basis, feature_bound, query_bound(samples, basis))
