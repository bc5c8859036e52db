"""Strategies: SpRAy-style spectral clustering of one class's maps, with the number of clusters from the eigengap,
and a 2-D embedding of every map for the report's scatter.

SpRAy (Lapuschkin et al., Nature Communications 2019) clusters the downsized explanations of one class: images the
model explains the same way fall together, and a small cluster explained by something else (a watermark, a frame)
is a candidate "Clever Hans" shortcut. The affinity is a symmetric k-nearest-neighbour graph with self-tuning
Gaussian weights (Zelnik-Manor & Perona 2004), so no global bandwidth has to be guessed; the number of strategies
is where the normalised Laplacian's sorted eigenvalues jump most.

A shortcut's evidence stays in one place, so the class's most suspicious strategy (`attnviz.audit.suspicion`) is then
settled by its place (`settle`): the spectral strategies cut a strip along an edge by where along it each photo
peaks (its left half, its right half), and a corner's strategy takes in images peaking a row beside the tag, which
blurred maps cannot tell apart; the place joins the strip's pieces and leaves the neighbours out.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import sparse
from scipy.sparse.linalg import eigsh

from attnviz.audit.suspicion import (
    BAND_LINE,
    BAND_MASS,
    PLACE_KEEP,
    PLACE_MASS,
    SUSPECT,
    along,
    joins,
    judge,
    place,
    ranks,
    shallow_edges,
    thin,
)

#: Most strategies looked for in one class.
MAX_STRATEGIES = 8
#: Fewest images of a class for its maps to be clustered; fewer form one group, marked unclustered.
MIN_IMAGES = 8
#: A class with more images is clustered on an even sample of this many; the rest join the nearest strategy.
MAX_CLUSTERED = 2000
#: Up to this many images the eigenvectors come from the dense solver; beyond, from the sparse one.
DENSE_LIMIT = 1000
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


def affinity(x: np.ndarray, neighbours: int) -> sparse.csr_matrix:
    """(N, D) -> (N, N) sparse symmetric k-NN affinity with self-tuning bandwidths: O(N k) memory."""
    from sklearn.neighbors import NearestNeighbors

    n = len(x)
    k = min(neighbours, n - 1)
    found, index = NearestNeighbors(n_neighbors=k + 1).fit(x).kneighbors(x)  # (N, k + 1), self first (mostly)
    scale = found[:, k] + 1e-12  # distance to the k-th neighbour
    rows = np.repeat(np.arange(n), k + 1)
    cols = index.ravel()
    weights = np.exp(-(found.ravel() ** 2) / (scale[rows] * scale[cols]))
    weights[rows == cols] = 0.0
    a = sparse.csr_matrix((weights, (rows, cols)), shape=(n, n))
    a.eliminate_zeros()
    return a.maximum(a.T).tocsr()  # an edge either way; its weight is symmetric


def spectral(x: np.ndarray, max_k: int = MAX_STRATEGIES, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(N, D) features -> (labels, smallest eigenvalues), with the number of clusters chosen by the eigengap.

    The normalised Laplacian's smallest eigenvalues are 1 minus the largest of D^-1/2 A D^-1/2, which a sparse
    Lanczos solver finds without an (N, N) array; small classes take the dense solver (the same numbers)."""
    from sklearn.cluster import KMeans

    n = len(x)
    a = affinity(x, neighbours=max(5, round(float(np.log2(n))) + 2))
    inv = 1.0 / np.sqrt(np.maximum(np.asarray(a.sum(1)).ravel(), 1e-12))
    m = sparse.diags(inv) @ a @ sparse.diags(inv)
    top = min(max_k, n - 1)
    if n <= DENSE_LIMIT:
        high, vectors = np.linalg.eigh(m.toarray())
        high, vectors = high[::-1][: top + 1], vectors[:, ::-1][:, : top + 1]
    else:
        v0 = np.random.default_rng(seed).uniform(0.5, 1.0, n)
        high, vectors = eigsh(m, k=top + 1, which="LA", v0=v0, tol=1e-8)
        order = np.argsort(-high)
        high, vectors = high[order], vectors[:, order]
    values = 1.0 - high  # ascending
    gaps = np.diff(values)  # gap after the 1st, 2nd, ... eigenvalue
    k = int(np.argmax(gaps)) + 1 if top >= 1 else 1
    if k == 1:
        return np.zeros(n, dtype=int), values
    embedding = vectors[:, :k]
    embedding = embedding / np.maximum(np.linalg.norm(embedding, axis=1, keepdims=True), 1e-12)
    labels = KMeans(n_clusters=k, n_init=10, random_state=seed).fit_predict(embedding)
    return labels, values


def nearest(x: np.ndarray, centres: np.ndarray, chunk: int = 65536) -> np.ndarray:
    """(N, D), (K, D) -> (N,) index of each row's nearest centre, a chunk at a time (no (N, K, D) temporary)."""
    out = np.empty(len(x), dtype=np.int64)
    squares = (centres**2).sum(1)
    for start in range(0, len(x), chunk):
        part = x[start : start + chunk]
        out[start : start + chunk] = np.argmin(squares[None, :] - 2 * part @ centres.T, axis=1)
    return out


def group_means(x: np.ndarray, labels: np.ndarray, count: int, power: int = 1, chunk: int = 65536) -> np.ndarray:
    """(N, D), (N,) labels in 0..count-1 -> (count, D) mean of each group's rows (to `power`), a chunk at a time."""
    sums = np.zeros((count, x.shape[1]))
    for start in range(0, len(x), chunk):
        part = x[start : start + chunk] ** power
        onehot = sparse.csr_matrix(
            (np.ones(len(part)), (labels[start : start + chunk], np.arange(len(part)))), shape=(count, len(part))
        )
        sums += onehot @ part
    return sums / np.maximum(np.bincount(labels, minlength=count), 1)[:, None]


def distances_to(x: np.ndarray, centres: np.ndarray, labels: np.ndarray, chunk: int = 65536) -> np.ndarray:
    """(N,) Euclidean distance of each row to its own centre, a chunk at a time."""
    out = np.empty(len(x))
    for start in range(0, len(x), chunk):
        part = x[start : start + chunk]
        out[start : start + chunk] = np.linalg.norm(part - centres[labels[start : start + chunk]], axis=1)
    return out


def strategies(x: np.ndarray, maps: np.ndarray | None = None, max_k: int = MAX_STRATEGIES) -> Strategies:
    """One class's (N, D) map features -> its strategies, numbered from the largest; with its (N, side, side) plain
    maps (summing to 1), its most suspicious strategy settled by its place (`settle`)."""
    n = len(x)
    if n < MIN_IMAGES:
        labels, values = np.zeros(n, dtype=int), np.zeros(0)
    elif n > MAX_CLUSTERED:
        sample = np.linspace(0, n - 1, MAX_CLUSTERED).round().astype(int)
        sample_labels, values = spectral(x[sample], max_k)
        sample_labels = np.unique(sample_labels, return_inverse=True)[1]
        labels = nearest(x, group_means(x[sample], sample_labels, int(sample_labels.max()) + 1))
    else:
        labels, values = spectral(x, max_k)
    labels = merge_alike(x, labels)
    if maps is not None and n >= MIN_IMAGES:
        labels = settle(x, maps, labels)
    sizes = np.bincount(labels)
    order = np.argsort(-sizes, kind="stable")  # strategy 0 is the largest
    rank = np.empty_like(order)
    rank[order] = np.arange(len(order))
    labels = rank[labels]
    labels = np.unique(labels, return_inverse=True)[1]  # drop emptied ids
    centres = group_means(x, labels, int(labels.max()) + 1)
    distances = distances_to(x, centres, labels)
    return Strategies(labels, centres, distances, values)


def merge_alike(x: np.ndarray, labels: np.ndarray, threshold: float = MERGE_CORRELATION) -> np.ndarray:
    """Merge, most alike first, the strategies whose mean maps (mean of the squared features) correlate above
    `threshold`."""
    labels = labels.copy()
    while True:
        ids, dense = np.unique(labels, return_inverse=True)
        if len(ids) < 2:
            return labels
        means = group_means(x, dense, len(ids), power=2)  # (K, D)
        alike = np.corrcoef(means)
        np.fill_diagonal(alike, -1.0)
        a, b = np.unravel_index(int(np.nanargmax(alike)), alike.shape)
        if not alike[a, b] > threshold:
            return labels
        labels[labels == ids[b]] = ids[a]


def settle(x: np.ndarray, maps: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """The class's most suspicious strategy (ranked first, scored at least `SUSPECT`) settled by its place
    (`attnviz.audit.suspicion.place`): a piece of a strip becomes the band along its edge when other pieces lie
    across the same rows; the strategies at the same mark join it (`joins`), and so do the images of strategies with
    no place of their own peaking in it with `PLACE_MASS` of their mass there, and, on a band as thin as a strip, every
    image with `BAND_MASS` of its mass on it, wherever it peaks and whatever its own strategy's place (a corner tag
    within the strip's rows too); its members peaking outside it with less than `PLACE_KEEP` of their mass in it leave
    for the nearest other strategy (or form one). Otherwise images of strategies placed elsewhere stay: a cat whose
    map peaks on the tag's corner is not the tag."""
    labels = np.unique(labels, return_inverse=True)[1]  # merged ids dropped
    verdicts = judge(maps, labels)
    sizes = np.bincount(labels, minlength=len(verdicts))
    top = ranks(verdicts, list(sizes)).index(0)
    if verdicts[top].score < SUSPECT:
        return labels
    n, side = len(maps), maps.shape[-1]
    flat = np.argmax(maps.reshape(n, -1), axis=1)
    rows, cols = flat // side, flat % side
    places = [place(rows[labels == k], cols[labels == k], side) for k in range(len(sizes))]
    box = places[top]
    if box is None:
        return labels
    # a piece of a strip becomes the band along its edge when other pieces, as thin as a strip, lie along it across
    # the same rows; a corner piece (a spot as shallow as a strip, or a piece that could run along either edge) takes
    # the edge whose pieces hold the most images. Objects peaking along an edge spread wider across it than a strip:
    # a tag beside them stays a tag
    spans = box[0] == (0, side - 1) or box[1] == (0, side - 1)
    joined, best, kind = 0, box, along(box, side) if spans else None  # a band already, or a spot so far
    for axis in sorted({a for a in (along(box, side), *shallow_edges(box, side)) if a is not None}):
        band = (box[0], (0, side - 1)) if axis == 0 else ((0, side - 1), box[1])
        pieces = sum(
            int(sizes[k])
            for k, p in enumerate(places)
            if k != top and p is not None and along(p, side) == axis and thin(p, axis) and joins(p, band, side)
        )
        if pieces > joined:
            joined, best, kind = pieces, band, axis
    box = best  # a band along the edge `kind`, or (no thin piece beside it) a spot, whatever its shape
    if kind is not None:  # a band a cell from its edge reaches it: a strip's photos peak on its inner row or the edge's
        low, high = box[kind]
        low, high = 0 if low <= 1 else low, side - 1 if high >= side - 2 else high
        # and it is as deep as the lines its peaks pile up on: an inner line holding few of them is objects beside it
        counts = np.bincount((rows if kind == 0 else cols)[labels == top], minlength=side)
        most = counts[low : high + 1].max()
        while low == 0 and high > low and counts[high] < BAND_LINE * most:
            high -= 1
        while high == side - 1 and low < high and counts[low] < BAND_LINE * most:
            low += 1
        box = ((low, high), box[1]) if kind == 0 else (box[0], (low, high))
    strip = kind is not None and thin(box, kind)
    joining = np.array([k == top or joins(p, box, side, kind) for k, p in enumerate(places)])
    placeless = np.array([p is None for p in places])
    (r0, r1), (c0, c1) = box
    mass = maps[:, r0 : r1 + 1, c0 : c1 + 1].sum(axis=(1, 2))
    inside = (rows >= r0) & (rows <= r1) & (cols >= c0) & (cols <= c1)
    inside &= joining[labels] | (placeless[labels] & (mass >= PLACE_MASS))
    inside |= (labels == top) & (mass >= PLACE_KEEP)
    if strip:  # a strip runs along a whole edge: an image with `BAND_MASS` of its evidence on it leans on it
        inside |= mass >= BAND_MASS
    out = labels.copy()
    leaving = (labels == top) & ~inside
    others = np.flatnonzero((sizes > 0) & (np.arange(len(sizes)) != top))
    if leaving.any():
        if len(others):
            centres = group_means(x, labels, len(sizes))[others]
            out[leaving] = others[nearest(x[leaving], centres)]
        else:
            out[leaving] = len(sizes)
    out[inside] = top
    return np.unique(out, return_inverse=True)[1]


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
