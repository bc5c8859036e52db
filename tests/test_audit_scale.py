"""The audit's clustering at scale: a sparse k-NN graph, a sparse eigensolver, and no (N, K, D) temporaries."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import sparse

from attnviz.audit import strategies as module
from attnviz.audit.strategies import affinity, distances_to, group_means, nearest, spectral


def points(n: int, seed: int = 0) -> np.ndarray:
    """(n, 12) points around three centres."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(0, 3, (3, 12))
    return centres[rng.integers(0, 3, n)] + rng.normal(0, 0.5, (n, 12))


def test_the_affinity_is_sparse_symmetric_and_keeps_only_neighbours() -> None:
    x = points(400)
    a = affinity(x, neighbours=7)
    assert sparse.issparse(a) and a.shape == (400, 400)
    assert a.nnz <= 2 * 7 * 400 and abs(a - a.T).max() < 1e-12 and a.diagonal().max() == 0
    assert (np.diff(a.indptr) >= 7).all()  # each row keeps at least its own 7 neighbours


def test_the_sparse_eigensolver_finds_what_the_dense_one_does(monkeypatch: pytest.MonkeyPatch) -> None:
    x = points(600, seed=1)
    monkeypatch.setattr(module, "DENSE_LIMIT", 10_000)
    dense_labels, dense_values = spectral(x)
    monkeypatch.setattr(module, "DENSE_LIMIT", 0)
    sparse_labels, sparse_values = spectral(x)
    assert np.allclose(dense_values, sparse_values, atol=1e-6)
    assert len(set(dense_labels)) == 3
    pairs = set(zip(dense_labels.tolist(), sparse_labels.tolist(), strict=True))
    assert len(pairs) == 3  # the same partition, whatever the numbering


def test_assignment_and_means_match_the_plain_formulas_chunk_by_chunk() -> None:
    x = points(1000, seed=2)
    centres = x[[0, 1, 2, 3]]
    plain = np.argmin(((x[:, None, :] - centres[None]) ** 2).sum(-1), axis=1)
    assert (nearest(x, centres, chunk=64) == plain).all()
    means = group_means(x, plain, 4, chunk=64)
    assert np.allclose(means, [x[plain == k].mean(0) for k in range(4)])
    assert np.allclose(group_means(x, plain, 4, power=2, chunk=100), [(x[plain == k] ** 2).mean(0) for k in range(4)])
    assert np.allclose(distances_to(x, means, plain, chunk=64), np.linalg.norm(x - means[plain], axis=1))


def test_a_class_over_the_sample_is_clustered_on_it_and_the_rest_joins(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(module, "MAX_CLUSTERED", 300)
    x = points(3000, seed=3)
    found = module.strategies(x)
    assert found.labels.shape == (3000,) and found.labels.max() == 2
    truth = np.argmin(((x[:, None, :] - found.centres[None]) ** 2).sum(-1), axis=1)
    assert (found.labels == truth).mean() > 0.99
