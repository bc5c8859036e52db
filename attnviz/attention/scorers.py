"""Soft-attention scorers over a CNN's spatial grid (dot, general, concat) and their data-free defaults.

Every scorer maps encoder cells `h` (B, N, C) and a query `q` (B, D) to one score per cell; the base class turns
scores into attention weights (softmax over the N cells) and the context vector `sum_i w_i h_i`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from attnviz.attention.paired import PairedForm, TanhPairs, all_finite, paired_form
from attnviz.errors import ComputeError, UsageError
from attnviz.options import Mode

#: Size of the attention space of the default general and concat scorers.
DEFAULT_ATTN_DIM = 256
#: Largest pre-activation the default concat scorer's tanh units see for a typical input (keeps tanh quadratic).
_CONCAT_REACH = 0.3


#: Overflowing scores are recomputed on features scaled by this power of two, at most this many times
#: (2^-16 eight times spans float32's whole exponent range).
_SHRINK = 2.0**-16
_MAX_SHRINKS = 8


@dataclass(frozen=True)
class Attention:
    scores: Tensor  # (B, N) unnormalised, log-weights up to a constant per row
    weights: Tensor  # (B, N) softmax over the grid, rows sum to 1
    context: Tensor  # (B, C) attention-pooled features


class Scorer(nn.Module):
    """Owns softmax and pooling; subclasses only say how a cell is scored against the query."""

    mode: Mode

    def score(self, h: Tensor, q: Tensor) -> Tensor:
        """(B, N, C) cells, (B, D) query -> (B, N) scores."""
        raise NotImplementedError

    def freeze(self) -> None:
        """Keep what can be derived once from the weights, for a head that nobody changes any more."""

    def forward(self, h: Tensor, q: Tensor) -> Attention:
        if not (all_finite(h) and all_finite(q)):
            raise ComputeError("the encoder's features or the query contain NaN or infinity")
        scores = self.score(h, q)  # (B, N)
        scaled, shrink = h, 0
        while not torch.isfinite(scores).all() and shrink < _MAX_SHRINKS:  # huge features overflow float32 scores
            shrink += 1
            scaled = scaled * _SHRINK  # a power of two: exact, so the ranking of the cells is unchanged
            scores = self.score(scaled, q)
        if not torch.isfinite(scores).all():
            raise ComputeError("attention scores overflow even after rescaling the features")
        weights = torch.softmax(scores, dim=-1)  # (B, N)
        context = torch.bmm(weights.unsqueeze(1).to(h.dtype), h).squeeze(1)  # (B, C) of the features as they are
        return Attention(scores=scores, weights=weights, context=context)


class DotScorer(Scorer):
    """s_i = h_i . q: no parameters; with q a classifier row this is the Class Activation Map."""

    mode = Mode.dot

    def score(self, h: Tensor, q: Tensor) -> Tensor:
        if h.shape[-1] != q.shape[-1]:
            raise UsageError(f"dot attention needs query size == feature size, got {q.shape[-1]} and {h.shape[-1]}")
        return torch.einsum("bnc,bc->bn", h, q)


class GeneralScorer(Scorer):
    """s_i = (W_e h_i) . (W_d q): two bias-free projections into a shared attention space.

    No bias, so that neither side gets a constant offset that would favour every cell alike.
    """

    mode = Mode.general

    def __init__(self, enc_dim: int, query_dim: int, attn_dim: int = DEFAULT_ATTN_DIM) -> None:
        super().__init__()
        self.enc_proj = nn.Linear(enc_dim, attn_dim, bias=False)  # W_e
        self.query_proj = nn.Linear(query_dim, attn_dim, bias=False)  # W_d

    def score(self, h: Tensor, q: Tensor) -> Tensor:
        keys = self.enc_proj(h)  # (B, N, A)
        query = self.query_proj(q)  # (B, A)
        return torch.einsum("bna,ba->bn", keys, query)


class ConcatScorer(Scorer):
    """s_i = v . tanh(W_c [h_i ; q] + b), one hidden layer over each cell concatenated with the query.

    `W_c [h; q]` is computed as `W_h h + W_q q` so the query half is done once per image, not once per cell.
    """

    mode = Mode.concat

    def __init__(self, enc_dim: int, query_dim: int, hidden_dim: int = 4 * DEFAULT_ATTN_DIM) -> None:
        super().__init__()
        self.enc_dim = enc_dim
        self.combine = nn.Linear(enc_dim + query_dim, hidden_dim)  # W_c, b
        self.v = nn.Linear(hidden_dim, 1, bias=False)
        self.frozen: PairedForm | None = None

    def paired(self) -> PairedForm | None:
        """The head's paired form (`attention/paired.py`), or None; the frozen one while there is one."""
        if self.frozen is not None and self.frozen.enc.device == self.combine.weight.device:
            return self.frozen
        return paired_form(self.combine.weight, self.combine.bias, self.v.weight, self.enc_dim)

    def freeze(self) -> None:
        """Check the paired form once and keep it, for a head that nobody changes any more (an explainer's own:
        the data-free head or one loaded from a file). Otherwise it is checked on every call (2.2 ms for Lite0's
        head, about a third of the scoring stage), in case the weights changed. Training undoes it."""
        self.frozen = paired_form(self.combine.weight, self.combine.bias, self.v.weight, self.enc_dim)

    def train(self, mode: bool = True) -> ConcatScorer:
        if mode:
            self.frozen = None
        return super().train(mode)

    def score(self, h: Tensor, q: Tensor) -> Tensor:
        paired = None if self.training or h.device.type == "mps" else self.paired()
        scores = None if paired is None else paired.score(h, q)  # (B, N), None where exp overflows
        if scores is not None:
            return scores
        # At inference tanh and the sum over units run in float64: the data-free head reads a second-order term off
        # tanh units, a cancellation that costs float32 about 1e-3 in the weights. The per-cell product stays
        # float32 (the costly part, N x C x U): its rounding enters each +- pair of units alike and cancels to
        # first order, leaving about 1e-6 in the weights, at half the time of an all-float64 pass.
        wide = torch.float32 if self.training or h.device.type == "mps" else torch.float64
        w_h, w_q = self.combine.weight[:, : self.enc_dim], self.combine.weight[:, self.enc_dim :]  # (U, C), (U, D)
        query_part = q.to(wide) @ w_q.T.to(wide) + self.combine.bias.to(wide)  # (B, U)
        cell_part = h @ w_h.T.to(h.dtype)  # (B, N, U)
        hidden = torch.tanh(cell_part.to(wide) + query_part.unsqueeze(1))  # (B, N, U)
        return (hidden @ self.v.weight.T.to(wide)).squeeze(-1).to(h.dtype)  # (B, N)


def class_subspace(class_vectors: Tensor, attn_dim: int = DEFAULT_ATTN_DIM) -> Tensor:
    """(A, C) orthonormal rows spanning the top-A right singular vectors of the (K, C) classifier matrix; a head
    with fewer than A directions (K < A) gets them all, then a fixed completion orthogonal to them.

    Projecting cells and class vectors onto it keeps the directions the classifier actually uses. The SVD of the
    K x C matrix costs O(K^2 C), where the eigendecomposition of W^T W it replaces cost O(C^3): 52 s for a head on
    RegNetY-128GF's 7392 channels, once per new classifier. Queries from the classifier's rows have no component
    in the completion, so there it changes no score.
    """
    w = class_vectors.detach().double()  # (K, C)
    channels = w.shape[1]
    dim = min(attn_dim, channels)
    basis = torch.linalg.svd(w, full_matrices=False).Vh[:dim]  # (min(K, A), C), largest singular value first
    if len(basis) < dim:  # complete with the first standard directions, made orthogonal to the class directions
        unit = torch.eye(channels, dim, dtype=w.dtype)  # (C, A)
        q, _ = torch.linalg.qr(torch.cat([basis.T, unit], dim=1))  # (C, K + A)
        basis = torch.cat([basis, q[:, len(basis) : dim].T])  # (A, C)
    return basis.float().contiguous()


def default_general(basis: Tensor) -> GeneralScorer:
    """W_e = W_d = P: a low-rank Class Activation Map, the best data-free start for a learned head."""
    dim, channels = basis.shape  # (A, C)
    scorer = GeneralScorer(channels, channels, dim)
    with torch.no_grad():
        scorer.enc_proj.weight.copy_(basis)
        scorer.query_proj.weight.copy_(basis)
    return scorer.requires_grad_(False).eval()  # ready for inference; `attnviz fit` turns training on itself


def tanh_second_derivative(x: float) -> float:
    t = math.tanh(x)
    return -2.0 * t * (1.0 - t * t)


def default_concat(basis: Tensor, feature_bound: float, query_bound: float, bias: float = 0.66) -> ConcatScorer:
    """A concat scorer whose tanh layer computes the general score (P h) . (P q) to second order.

    Per attention dimension k, four tanh units at bias c0 see +-(alpha a_k + beta b_k) and +-(alpha a_k - beta b_k)
    with a = P h, b = P q. Even-order Taylor terms survive the +,+ pairs; v = (+1, +1, -1, -1) / (4 alpha beta
    tanh''(c0)) leaves exactly a_k b_k. alpha and beta keep pre-activations within +-0.3 of c0 for features up to
    `feature_bound` and queries up to `query_bound`, where tanh is close to its quadratic expansion. c0 = 0.66 is
    near where |tanh''| peaks, so the quadratic term is as large as it gets relative to the float error.
    """
    dim, channels = basis.shape  # (A, C)
    alpha = _CONCAT_REACH / 2 / max(feature_bound, 1e-6)
    beta = _CONCAT_REACH / 2 / max(query_bound, 1e-6)
    v = torch.tensor([1.0, 1.0, -1.0, -1.0]).repeat_interleave(dim) / (4 * alpha * beta * tanh_second_derivative(bias))
    scorer = ConcatScorer(channels, channels, 4 * dim)
    with torch.no_grad():
        scorer.combine.weight.copy_(TanhPairs(channels)(alpha * basis, beta * basis))
        scorer.combine.bias.fill_(bias)
        scorer.v.weight.copy_(v.unsqueeze(0))
    return scorer.requires_grad_(False).eval()


def default_scorer(mode: Mode | str, basis: Tensor, feature_bound: float, query_bound: float) -> Scorer:
    """The data-free scorer for a mode: every mode is CAM-faithful out of the box, none is random.

    `basis` (A, C) has orthonormal rows: the class subspace when the head is linear, else the identity.
    """
    mode = Mode(mode)
    if mode is Mode.dot:
        return DotScorer()
    if mode is Mode.general:
        return default_general(basis)
    return default_concat(basis, feature_bound, query_bound)


def class_scorer(
    mode: Mode | str, class_vectors: Tensor, feature_bound: float, attn_dim: int = DEFAULT_ATTN_DIM
) -> Scorer:
    """The default scorer for queries drawn from the rows of a (K, C) classifier matrix."""
    basis = class_subspace(class_vectors, attn_dim)  # (A, C)
    return default_scorer(mode, basis, feature_bound, query_bound(class_vectors, basis))


def query_bound(queries: Tensor, basis: Tensor) -> float:
    """Largest projected query coordinate: what the concat construction must keep inside tanh's quadratic range."""
    return float((queries.detach().float() @ basis.T).abs().max())
