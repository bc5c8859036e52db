"""Which object turns an encoder's features into maps for a mode: a scorer queried by a class, a transformer's
own attention, or a CAM (what `Explainer` holds as `scorer`, `attention` or `cam`)."""

from __future__ import annotations

import copy

import torch

from attnviz.attention.datafree import cached_scorer
from attnviz.attention.scorers import Scorer
from attnviz.errors import UsageError
from attnviz.models.base import Encoder
from attnviz.options import ATTENTION_MODES, CAM_MODES, GRADIENT_CAM_MODES, Mode, Query


def mode_scorer(
    encoder: Encoder, mode: Mode, query: Query, given: Scorer | None, device: torch.device
) -> tuple[Scorer, Query]:
    """The given or data-free scorer for this mode and query, on `device`, and the query made definite."""
    vectors = encoder.class_vectors()
    if query is Query.auto:
        query = Query.gradient if vectors is None else Query.classifier
    if query is Query.classifier and vectors is None:
        raise UsageError(f"encoder {encoder.name}: no classifier vectors for this head or layer; use --query gradient")
    scorer = given or cached_scorer(encoder, mode, query)
    if device.type != "cpu" and scorer is cached_scorer(encoder, mode, query):
        scorer = copy.deepcopy(scorer)  # the cached one stays on the CPU for other explainers
    return scorer.to(device).eval(), query


def cam_query(mode: Mode) -> Query:
    """A CAM's pass: features a class score is differentiated by (`gradient`), or a plain forward (`classifier`)."""
    return Query.gradient if mode in GRADIENT_CAM_MODES else Query.classifier


def torch_only(mode: Mode) -> str | None:
    """Why a mode's maps need torch rather than an inference runtime, or None when a runtime may serve it."""
    if mode in ATTENTION_MODES:
        return "reads attention inside torch's blocks"
    if mode in CAM_MODES:
        return "reads torch's feature layer (its gradients, or its channels as masks)"
    return None
