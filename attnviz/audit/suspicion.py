"""Which strategy of a class to look at first: the one whose evidence stays put from photo to photo.

An object moves around from photo to photo; a tag, a watermark, a frame or a text strip does not. So each strategy
is scored by how many of its members peak at the same place (within `FIXED_RADIUS` of the strategy's median peak,
in both directions, or in the one across an edge for a strip along it), weighed by how much the class's other
images move, and by how much of its mass lies at the border. The class's strategies are ranked by that score, most
suspicious first, and each gets a sentence saying what sets it apart.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from attnviz.audit.stats import border_mask

#: Two peaks closer than this (Chebyshev, as a share of the picture's side) are at the same place.
FIXED_RADIUS = 0.125
#: A place within this of an edge is at the edge (a corner: of two edges).
EDGE = 0.25
#: A strategy with a score at least this is suspect: its members are flagged `fixed_evidence`.
SUSPECT = 0.6
#: A fixed place away from every edge counts this much: objects are often centred, tags and strips seldom are.
CENTRE_WEIGHT = 0.5


@dataclass(frozen=True)
class Verdict:
    score: float  # 0 (moves like the class's objects) .. about 1 (fixed at an edge in every image)
    why: str


def peaks(maps: np.ndarray) -> np.ndarray:
    """(N, side, side) -> (N, 2) (x, y) of each map's peak cell centre, 0..1."""
    n, side = len(maps), maps.shape[-1]
    flat = np.argmax(maps.reshape(n, -1), axis=1)
    return np.stack([(flat % side + 0.5) / side, (flat // side + 0.5) / side], axis=1)


def place_name(x: float, y: float) -> str:
    """Where (x, y) lies, in words: "the lower-right corner", "the top edge", "the centre"."""
    row = "upper" if y < EDGE else "lower" if y > 1 - EDGE else ""
    col = "left" if x < EDGE else "right" if x > 1 - EDGE else ""
    if row and col:
        return f"the {row}-{col} corner"
    if row:
        return f"the {'top' if row == 'upper' else 'bottom'} edge"
    if col:
        return f"the {col} edge"
    return "the centre"


def _spread(points: np.ndarray) -> float:
    """Mean Chebyshev distance of the points from their median (0 when fewer than 2)."""
    if len(points) < 2:
        return 0.0
    return float(np.abs(points - np.median(points, axis=0)).max(axis=1).mean())


def judge(maps: np.ndarray, labels: np.ndarray) -> list[Verdict]:
    """One class's (N, side, side) maps (summing to 1) and strategy labels -> a verdict per strategy."""
    side = maps.shape[-1]
    where = peaks(maps)  # (N, 2)
    border = maps[:, border_mask(side, side)].sum(axis=1)  # (N,)
    verdicts = []
    for k in range(int(labels.max()) + 1 if len(labels) else 0):
        inside = labels == k
        own, rest = where[inside], where[~inside]
        size = len(own)
        centre = np.median(own, axis=0)
        near = np.abs(own - centre) <= FIXED_RADIUS  # (n, 2): in x, in y
        both = int(near.all(axis=1).sum())
        edge_x = centre[0] < EDGE or centre[0] > 1 - EDGE
        edge_y = centre[1] < EDGE or centre[1] > 1 - EDGE
        # the share fixed at one place; a strip along an edge is fixed only across it
        fixed = both / size * (1.0 if edge_x or edge_y else CENTRE_WEIGHT)
        across = 0
        if edge_y:
            across = max(across, int(near[:, 1].sum()))
        if edge_x:
            across = max(across, int(near[:, 0].sum()))
        strip = 0.9 * across / size
        # how much the class's other images move: a class whose every image sits still tells nothing by place
        moves = _spread(rest) if len(rest) >= 2 else _spread(where)
        still = 1.0 - min(1.0, _spread(own) / max(moves, 1e-9))
        own_border = float(border[inside].mean())
        other_border = float(border[~inside].mean()) if (~inside).any() else float(border.mean())
        extra_border = max(0.0, own_border - other_border)
        score = max(fixed, strip) * (0.5 + 0.5 * still) + 0.5 * extra_border
        if fixed >= strip and 2 * both >= size:
            why = f"evidence fixed in {place_name(*centre)} in {both} of {size} images"
        elif 2 * across >= size:
            edge = place_name(centre[0] if not edge_y else 0.5, centre[1] if edge_y else 0.5)
            why = f"evidence along {edge} in {across} of {size} images"
        else:
            why = f"evidence moves from image to image (its peaks {_spread(own):.2f} of the side from their median)"
        if extra_border >= 0.1:
            why += f"; {own_border:.0%} of its mass at the border, against {other_border:.0%} in the class's others"
        verdicts.append(Verdict(round(float(score), 4), why))
    return verdicts


def ranks(verdicts: list[Verdict], sizes: list[int]) -> list[int]:
    """Each strategy's rank, 0 first: most suspicious first, the smaller first among equals."""
    order = sorted(range(len(verdicts)), key=lambda k: (-verdicts[k].score, sizes[k], k))
    out = [0] * len(verdicts)
    for rank, k in enumerate(order):
        out[k] = rank
    return out
