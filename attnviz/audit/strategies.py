"""Strategies: SpRAy-style spectral clustering of one class's maps, with the number of clusters from the eigengap,
and a 2-D embedding of every map for the report's scatter.

SpRAy (Lapuschkin et al., Nature Communications 2019) clusters the downsized explanations of one class: images the
model explains the same way fall together, and a small cluster explained by something else (a watermark, a frame)
is a candidate "Clever Hans" shortcut. The affinity is a symmetric k-nearest-neighbour graph with self-tuning
Gaussian weights (Zelnik-Manor & Perona 2004), so no global bandwidth has to be guessed; the number of strategies
is where the normalised Laplacian's sorted eigenvalues jump most.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

#: Most strategies looked for in one class.
MAX_STRATEGIES = 8
#: Fewest images of a class for its maps to be clustered; fewer form one group, marked unclustered.
MIN_IMAGES = 8
#: A class with more images is clustered on an even sample of this many; the rest join the nearest strategy.
MAX_CLUSTERED = 2000
#: Strategies whose mean maps correlate above this are one strategy. Spectral clustering splits a tight group by
#: one-cell shifts of its peak: on the planted shortcut (scripts/shortcut.py) the tag's two halves correlated 0.84,
#: while different strategies of a class correlated below 0.
MERGE_CORRELATION = 0.75
#: The scatter uses t-SNE up to this many maps and PCA beyond, where t-SNE would take minutes.
TSNE_LIMIT = 10_000


@dataclass(frozen=True)
class Strategies:
    labels: np.ndarray  # (N,) strategy of each map, 0 the largest
    centres: np.ndarray  # (K, D) mean feature of each strategy
    distances: np.ndarray  # (N,) Euclidean distance to its own strategy's centre
    eigenvalues: np.ndarray  # the normalised Laplacian's smallest eigenvalues, for the record


def affinity(x: np.ndarray, neighbours: int) -> np.ndarray:
    """(N, D) -> (N, N) symmetric k-NN affinity with self-tuning bandwidths."""
    norms = (x**2).sum(1)
    squared = np.maximum(norms[:, None] + norms[None, :] - 2 * x @ x.T, 0)  # (N, N), without an (N, N, D) temporary
    order = np.argsort(squared, axis=1)
    k = min(neighbours, len(x) - 1)
    scale = np.sqrt(squared[np.arange(len(x)), order[:, k]]) + 1e-12  # distance to the k-th neighbour
    weights = np.exp(-squared / (scale[:, None] * scale[None, :]))
    near = np.zeros_like(weights, dtype=bool)
    near[np.arange(len(x))[:, None], order[:, 1 : k + 1]] = True
    weights = np.where(near | near.T, weights, 0.0)
    np.fill_diagonal(weights, 0.0)
    return weights


def spectral(x: np.ndarray, max_k: int = MAX_STRATEGIES, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(N, D) features -> (labels, smallest eigenvalues), with the number of clusters chosen by the eigengap."""
    from sklearn.cluster import KMeans

    n = len(x)
    a = affinity(x, neighbours=max(5, round(float(np.log2(n))) + 2))
    degree = a.sum(1)
    inv = 1.0 / np.sqrt(np.maximum(degree, 1e-12))
    laplacian = np.eye(n) - inv[:, None] * a * inv[None, :]
    values, vectors = np.linalg.eigh(laplacian)  # ascending
    top = min(max_k, n - 1)
    gaps = np.diff(values[: top + 1])  # gap after the 1st, 2nd, ... eigenvalue
    k = int(np.argmax(gaps)) + 1 if top >= 1 else 1
    if k == 1:
        return np.zeros(n, dtype=int), values[: top + 1]
    embedding = vectors[:, :k]
    embedding = embedding / np.maximum(np.linalg.norm(embedding, axis=1, keepdims=True), 1e-12)
    labels = KMeans(n_clusters=k, n_init=10, random_state=seed).fit_predict(embedding)
    return labels, values[: top + 1]


def strategies(x: np.ndarray, max_k: int = MAX_STRATEGIES) -> Strategies:
    """One class's (N, D) map features -> its strategies, numbered from the largest."""
    n = len(x)
    if n < MIN_IMAGES:
        labels, values = np.zeros(n, dtype=int), np.zeros(0)
    elif n > MAX_CLUSTERED:
        sample = np.linspace(0, n - 1, MAX_CLUSTERED).round().astype(int)
        sample_labels, values = spectral(x[sample], max_k)
        centres = np.stack([x[sample][sample_labels == c].mean(0) for c in np.unique(sample_labels)])
        labels = np.argmin(((x[:, None, :] - centres[None]) ** 2).sum(-1), axis=1)
    else:
        labels, values = spectral(x, max_k)
    labels = merge_alike(x, labels)
    sizes = np.bincount(labels)
    order = np.argsort(-sizes, kind="stable")  # strategy 0 is the largest
    rank = np.empty_like(order)
    rank[order] = np.arange(len(order))
    labels = rank[labels]
    labels = np.unique(labels, return_inverse=True)[1]  # drop emptied ids
    centres = np.stack([x[labels == c].mean(0) for c in range(labels.max() + 1)])
    distances = np.linalg.norm(x - centres[labels], axis=1)
    return Strategies(labels, centres, distances, values)


def merge_alike(x: np.ndarray, labels: np.ndarray, threshold: float = MERGE_CORRELATION) -> np.ndarray:
    """Merge, most alike first, the strategies whose mean maps (mean of the squared features) correlate above
    `threshold`."""
    labels = labels.copy()
    while True:
        ids = np.unique(labels)
        if len(ids) < 2:
            return labels
        means = np.stack([(x[labels == k] ** 2).mean(0) for k in ids])  # (K, D)
        alike = np.corrcoef(means)
        np.fill_diagonal(alike, -1.0)
        a, b = np.unravel_index(int(np.nanargmax(alike)), alike.shape)
        if not alike[a, b] > threshold:
            return labels
        labels[labels == ids[b]] = ids[a]


def embed(x: np.ndarray, seed: int = 0) -> np.ndarray:
    """(N, D) -> (N, 2) for the scatter: t-SNE where it is affordable, PCA beyond; centred, unit scale."""
    n = len(x)
    if n < 4:
        out = np.zeros((n, 2))
    elif n <= TSNE_LIMIT:
        from sklearn.manifold import TSNE

        perplexity = float(min(30.0, (n - 1) / 3))
        out = TSNE(2, perplexity=perplexity, init="pca", random_state=seed).fit_transform(x)
    else:
        from sklearn.decomposition import PCA

        out = PCA(2, random_state=seed).fit_transform(x)
    out = out - out.mean(0) if n else out
    scale = float(np.abs(out).max()) if n else 0.0
    return out / scale if scale > 0 else out
