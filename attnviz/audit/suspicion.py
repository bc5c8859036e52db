"""Which strategy of a class to look at first: the one whose evidence stays put from photo to photo.

An object moves around from photo to photo; a tag, a watermark, a frame or a text strip does not. So each strategy
is scored by how many of its members peak at the same place (within `FIXED_RADIUS` of the strategy's median peak,
in both directions, or in the one across an edge for a strip along it), weighed by how much the class's other
images move, and by how much of its mass lies at the border. The class's strategies are ranked by that score, most
suspicious first, and each gets a sentence saying what sets it apart.

`place` reads where a strategy's peaks sit on the common grid (a spot, a band along an edge, or nowhere), which
`attnviz.audit.strategies.settle` uses to make the first strategy exactly the images whose evidence is there.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

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
#: A share of a strategy's images counts this many more than it holds: any two peaks are near their median, so a
#: strategy of 2 is not wholly fixed (on scripts/planted.py's frame, a pair at the bottom edge outranked the frame's
#: 26 along the left edge; with 2, no other planted case's ranking or figure moved). A deliberate limit: a strategy
#: of 3 scores at most 0.6 by place, so it is flagged only with extra border mass.
FEW = 2
# A strategy's place, and what joins it (`place`, `along`, `joins`; `attnviz.audit.strategies.settle`). The constants
# were measured on the planted cases together (`scripts/planted.py --recipe`, and scripts/shortcut.py's smaller copy
# at --size 224); each comment says what a neighbouring value did there.
#: A row or column of the common grid holding at least this share of a strategy's peaks is part of its place, grown
#: from the one holding most (at 0.05 the strip's place took in rows where animals peak: precision 0.792, recall
#: 0.633; at 0.15 the rare tag's: precision 0.312).
PLACE_SHARE = 0.1
#: A place grows across at most this many empty rows or columns: a coarse grid resampled to 16 leaves rows no peak
#: falls in (the smaller copy's tag, on 7 rows at --size 224, peaks in rows 11 and 14 of 16, none in 12 and 13).
PLACE_GAP = 2
#: A place spans at most this share of the side across (a spot: both ways): a strategy whose peaks spread wider
#: has no place, however evenly they spread (at 0.25 the rare tag's spot, 5 rows high, was none: precision 0.263).
PLACE_WIDTH = 0.3
#: A place is a spot (a tag) when its box holds this share of the strategy's peaks; else a band along an edge (a
#: strip, anywhere along it) when its rows or its columns hold `BAND_SHARE` of them and touch the edge's quarter
#: (at 0.7 the strip: recall 0.433; at 0.9 the disc: precision 0.725).
SPOT_SHARE = 0.75
BAND_SHARE = 0.5
#: A member of the place's strategy peaking outside its place stays while at least this share of its mass is in
#: the place: a tag's peak jitters by a cell (scripts/audit_scale.py's synthetic tag: 10% of its peaks a column off,
#: with 13-27% of their mass on the tag's cell), while the disc's 4 neighbours have 0-10% of theirs on the disc (at
#: 0, all of them stay: precision 0.879).
PLACE_KEEP = 0.1
#: An image of a strategy with no place of its own joins the place's strategy when it peaks in the place with at
#: least this share of its mass there (at 0.5 the strip lost two photos with a third of their mass on it and the rest
#: at the top: recall 0.767). Images of strategies placed elsewhere never do: the smaller copy's cat peaking on the
#: tag (38% of its mass there) stays a cat.
PLACE_MASS = 0.3
#: A band along an edge keeps an inner row (or column) only while it holds at least this share of the peaks of its
#: fullest one: on a strip down the right edge (scripts/planted.py's `side`), 20 of the strategy's photos peaked on
#: column 14 of 16 and 3 objects on column 13, which the place took in.
BAND_LINE = 0.25
#: Any image of the class with at least this share of its mass in a band along an edge joins the band's strategy,
#: wherever it peaks: a watermark strip spans the whole edge, so an object elsewhere does not explain that mass. On
#: the strip planted with its counterfactual pairs, the shortcut photos it added had 0.27-0.34 of their mass there,
#: the class's other photos outside the band at most 0.19 (at 0.3: recall 0.86 on 50 shortcut photos, not 0.90).
BAND_MASS = 0.25
#: A place at most this many rows (or columns) across, at an edge and at least twice as long along it, is a strip or
#: a piece of one.
STRIP_WIDTH = 2
#: A place on the common grid: ((first row, last row), (first column, last column)).
Box = tuple[tuple[int, int], tuple[int, int]]


@dataclass(frozen=True)
class Verdict:
    score: float  # 0 (moves like the class's objects) .. size / (size + FEW) (fixed at an edge in every image)
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
        fixed = both / (size + FEW) * (1.0 if edge_x or edge_y else CENTRE_WEIGHT)
        across, axis = 0, 1  # axis: 1, across a top or bottom edge (y); 0, across a left or right one (x)
        if edge_y:
            across = int(near[:, 1].sum())
        if edge_x and int(near[:, 0].sum()) > across:
            across, axis = int(near[:, 0].sum()), 0
        strip = 0.9 * across / (size + FEW)
        # how much the class's other images move: a class whose every image sits still tells nothing by place; a
        # strip's peaks move along its edge, so only how they move across it counts
        others = rest if len(rest) >= 2 else where
        still = 1.0 - min(1.0, _spread(own) / max(_spread(others), 1e-9))
        still_across = 1.0 - min(1.0, _spread(own[:, [axis]]) / max(_spread(others[:, [axis]]), 1e-9))
        own_border = float(border[inside].mean())
        other_border = float(border[~inside].mean()) if (~inside).any() else float(border.mean())
        extra_border = max(0.0, own_border - other_border)
        score = max(fixed * (0.5 + 0.5 * still), strip * (0.5 + 0.5 * still_across)) + 0.5 * extra_border
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


def _interval(bins: np.ndarray, side: int) -> tuple[int, int]:
    """(first, last) bin of a place along one axis: from the bin holding most peaks, grown to each next bin (across
    `PLACE_GAP` empty ones) that holds at least `PLACE_SHARE` of them, the fuller side first."""
    counts = np.bincount(bins, minlength=side)
    low = high = int(np.argmax(counts))
    least = PLACE_SHARE * len(bins)
    while True:
        below = [b for b in range(low - 1, max(-1, low - 2 - PLACE_GAP), -1) if counts[b]][:1]
        above = [b for b in range(high + 1, min(side, high + 2 + PLACE_GAP)) if counts[b]][:1]
        options = [(int(counts[b]), b) for b in below + above if counts[b] >= least]
        if not options:
            return low, high
        b = max(options)[1]
        low, high = min(low, b), max(high, b)


def place(rows: np.ndarray, cols: np.ndarray, side: int) -> Box | None:
    """A strategy's peak cells (rows, cols on a side x side grid) -> its place, ((first row, last row), (first
    column, last column)): a spot, or a band along an edge; None where its peaks sit in neither."""
    row_range, col_range = _interval(rows, side), _interval(cols, side)
    in_rows = (rows >= row_range[0]) & (rows <= row_range[1])
    in_cols = (cols >= col_range[0]) & (cols <= col_range[1])
    widest = PLACE_WIDTH * side
    narrow_rows, narrow_cols = row_range[1] - row_range[0] < widest, col_range[1] - col_range[0] < widest
    if narrow_rows and narrow_cols and (in_rows & in_cols).sum() >= SPOT_SHARE * len(rows):
        return row_range, col_range
    edge = round(EDGE * side)  # a band touches the outer quarter
    everywhere = (0, side - 1)
    bands = [
        (int(inside.sum()), box)
        for inside, span, narrow, box in (
            (in_rows, row_range, narrow_rows, (row_range, everywhere)),
            (in_cols, col_range, narrow_cols, (everywhere, col_range)),
        )
        if narrow and inside.sum() >= BAND_SHARE * len(rows) and (span[0] < edge or span[1] >= side - edge)
    ]
    return max(bands)[1] if bands else None


def overlap(a: Box | None, b: Box) -> bool:
    return a is not None and a[0][0] <= b[0][1] and b[0][0] <= a[0][1] and a[1][0] <= b[1][1] and b[1][0] <= a[1][1]


def along(box: Box, side: int) -> int | None:
    """The edge a place runs along: 0, the top or bottom edge (a band across the picture, or at most `STRIP_WIDTH`
    rows at it, twice as long as they are high); 1, the left or right edge; None, a spot (a tag)."""
    edge = round(EDGE * side)
    found: tuple[float, int | None] = (0.0, None)
    for axis in (0, 1):  # 0: across rows, along the top or bottom edge; 1: across columns, along the left or right
        low, high = box[axis]
        across, length = high - low + 1, box[1 - axis][1] - box[1 - axis][0] + 1
        if (low < edge or high >= side - edge) and (length == side or (across <= STRIP_WIDTH and length >= 2 * across)):
            found = max(found, (length / across, axis))
    return found[1]


def shallow_edges(box: Box, side: int) -> list[int]:
    """The edges (numbered as `along` numbers them) a spot lies on, or one cell from, while no deeper across them
    than a strip (`STRIP_WIDTH`): a strip's end piece is such a spot, for Lite0's maps of a strip peak on one cell of
    it, often the row inside the edge row."""
    return [axis for axis in (0, 1) if thin(box, axis) and (box[axis][0] <= 1 or box[axis][1] >= side - 2)]


def thin(box: Box, axis: int) -> bool:
    """Whether a place is no deeper across `axis` (0: rows, 1: columns) than a strip (`STRIP_WIDTH`)."""
    return box[axis][1] - box[axis][0] + 1 <= STRIP_WIDTH


def joins(other: Box | None, box: Box, side: int, axis: int | Literal["shape"] | None = "shape") -> bool:
    """Whether a strategy placed at `other` is the same mark as the one at `box`: a spot joins an overlapping spot;
    a strip's pieces, and places reaching across its rows, join the band along its edge. A spot within the strip's
    rows is another mark on that edge (a corner tag beside a text strip), and a strip is no tag. `box` is a band
    along `axis` (None: a spot), or by default what its shape says (`along`): `settle` passes None for a place shaped
    like a strip's piece with no thin piece beside it, which then joins only as a spot does."""
    if other is None or not overlap(other, box):
        return False
    if axis == "shape":
        axis = along(box, side)
    if axis is None:
        return along(other, side) is None
    within = box[axis][0] <= other[axis][0] and other[axis][1] <= box[axis][1]
    return along(other, side) == axis or not within
