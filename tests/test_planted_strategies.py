"""A shortcut's strategy settled by its place (issue 23): a strip cut into pieces along its edge is one strategy, and
a tag's strategy leaves out the images peaking a row beside it. Synthetic maps on Lite0's 14 x 19 grid at --size
448, as sharp as its maps of the planted cases (scripts/planted.py): one or two cells."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from test_audit import blob

from attnviz.audit.stats import common_map, features, resample
from attnviz.audit.strategies import place, settle, strategies
from attnviz.audit.suspicion import SUSPECT, judge, ranks


def moving(k: int, rows: int = 14, cols: int = 19) -> np.ndarray:
    """An object's map: its peak wanders over the middle of the picture (4 cells from each edge) from image to
    image."""
    rng = np.random.default_rng(k)
    return blob(rows, cols, rng.uniform(4, rows - 5), rng.uniform(4, cols - 5), spread=1.2, seed=k)


def first_strategy(maps: list[np.ndarray], settled: bool = True) -> tuple[set[int], float, str]:
    """(the members of the class's first-ranked strategy, its score, its card's words)."""
    x = features(np.stack([common_map(m) for m in maps]))
    plain = np.stack([resample(m) for m in maps]).astype(np.float32)
    found = strategies(x, plain if settled else None)
    verdicts = judge(plain, found.labels)
    top = ranks(verdicts, list(np.bincount(found.labels))).index(0)
    return set(np.flatnonzero(found.labels == top).tolist()), verdicts[top].score, verdicts[top].why


def test_a_strip_cut_into_pieces_along_its_edge_is_one_strategy_ranked_first() -> None:
    """24 photos whose evidence sits on a strip along the bottom edge, each peaking wherever along it (scripts/
    planted.py's text strip: Lite0 peaks on one cell of it), beside 40 moving objects and 8 objects peaking three
    rows above the strip. The spectral clustering cuts the strip by where along it each peaks: before its place
    settled it, the first strategy held 8 to 16 of the 24 (seeds 0-9 of this setup); now the 24 and nothing else
    (10 of 10 seeds)."""
    rng = np.random.default_rng(0)
    strip = [blob(14, 19, 12, int(rng.integers(0, 19)), 0.4, 100 + k) for k in range(24)]
    above = [blob(14, 19, int(rng.integers(8, 10)), int(rng.integers(3, 16)), 0.5, 200 + k) for k in range(8)]
    maps = strip + above + [moving(k) for k in range(40)]
    members, score, why = first_strategy(maps)
    assert members == set(range(24)) and score >= SUSPECT, (sorted(members), score)  # first, and flagged
    assert why.startswith("evidence along the bottom edge in 24 of 24 images"), why
    unsettled, _, _ = first_strategy(maps, settled=False)
    assert len(unsettled & set(range(24))) < 20  # without the place, the strip is in pieces


def test_a_tags_strategy_leaves_out_the_images_peaking_a_row_beside_it() -> None:
    """scripts/planted.py's disc: 29 photos peak on the tag's three rows and columns, and 2 "other" photos peak on
    the row above it; blurred by two cells, the clustering put them with the tag (precision 29 of 33 with 2 more).
    Here too, before: the two in the tag's strategy, now left out (10 of 10 seeds of this setup)."""
    rng = np.random.default_rng(0)
    tag = [blob(14, 19, int(rng.integers(1, 4)), int(rng.integers(1, 4)), 0.4, 100 + k) for k in range(24)]
    beside = [blob(14, 19, 0, int(rng.integers(1, 4)), 0.4, 200 + k) for k in range(2)]
    maps = tag + beside + [moving(k) for k in range(40)]
    assert first_strategy(maps, settled=False)[0] == set(range(26))  # before: the two beside it in the tag's
    members, score, why = first_strategy(maps)
    assert members == set(range(24)) and score >= SUSPECT, (sorted(members), score)
    assert why.startswith("evidence fixed in the upper-left corner in 24 of 24 images"), why


def test_a_place_is_a_spot_a_band_along_an_edge_or_nothing() -> None:
    side = 16
    spot = place(np.array([13, 14, 14, 14, 15, 14]), np.array([13, 14, 14, 15, 14, 14]), side)
    assert spot == ((13, 15), (13, 15))
    stray = place(np.array([14] * 9 + [3]), np.array([14] * 9 + [3]), side)  # one peak in ten elsewhere: left out
    assert stray == ((14, 14), (14, 14))
    band = place(np.array([14] * 8), np.array([0, 2, 5, 7, 9, 11, 13, 15]), side)  # along the bottom, anywhere
    assert band == ((14, 14), (0, 15))
    assert place(np.array([2, 5, 8, 11, 13, 7]), np.array([3, 12, 6, 9, 1, 14]), side) is None  # it moves


def test_a_strips_corner_piece_takes_the_strip_not_the_side_edge() -> None:
    """scripts/planted.py's strip with a head trained on 150 photos per kind: the strip's first strategy held its 12
    photos peaking at the bottom-left corner (a place one column wide and two rows high, which could run along the
    left edge as well as the bottom one), and became the left edge's band, so the pieces along the bottom stayed
    apart (precision 0.688, recall 0.367). The corner piece now takes the edge whose pieces hold most images."""
    rng = np.random.default_rng(0)
    corner = [blob(14, 19, float(rng.choice([12.4, 13])), 1.3, 0.4, 100 + k) for k in range(12)]  # rows 14-15, column 1
    along = [blob(14, 19, 13, int(rng.integers(7, 19)), 0.4, 200 + k) for k in range(14)]
    left = [blob(14, 19, int(rng.integers(2, 9)), 0, 0.5, 300 + k) for k in range(8)]  # objects at the left edge
    maps = corner + along + left + [moving(k) for k in range(30)]
    members, score, why = first_strategy(maps)
    assert members == set(range(26)) and score >= SUSPECT, (sorted(members), score)
    assert why.startswith("evidence along the bottom edge in 26 of 26 images"), why


#: The "animal" class's maps (Lite0, --size 448, 14 x 19) of two planted cases, recorded by
#: `python scripts/planted.py /tmp/paired50 --held-out 50` (the frame: `/tmp/paired`, 30 per kind; the side strip:
#: `--cases side`, 30 per kind), with which photos carry the mark (float16, 56 KB).
RECORDED = Path(__file__).with_name("planted_maps.npz")


def recorded_first_strategy(case: str) -> tuple[float, float, str]:
    """(precision, recall within the class, words) of the first-ranked strategy on a recorded case."""
    with np.load(RECORDED) as data:
        maps, shortcut = data[f"{case}_maps"].astype(np.float64), data[f"{case}_shortcut"]
    members, _, why = first_strategy(list(maps / maps.sum(axis=(1, 2), keepdims=True)))
    hits = int(shortcut[sorted(members)].sum())
    return hits / len(members), hits / int(shortcut.sum()), why


def test_a_corner_tag_taller_than_wide_stays_a_tag_beside_objects_along_its_edge() -> None:
    """The rare tag (a checker in the lower-left corner on 10% of the class), 104 maps of which 9 carry it: the tag's
    photos peak in a place four rows high and two columns wide, which read as a piece of a strip along the left
    edge, and the animals peaking anywhere along that edge joined it (precision 0.36). Only pieces as thin as a strip
    now make a band: the tag stays a spot. Two animals peaking on the tag's cells stay in it (0.82, under issue
    23's 0.9)."""
    precision, recall, why = recorded_first_strategy("rare")
    assert recall == 1.0 and precision >= 0.8, (precision, recall)
    assert why.startswith("evidence fixed in the lower-left corner"), why


def test_a_strip_takes_in_photos_with_a_quarter_of_their_evidence_on_it_wherever_they_peak() -> None:
    """The text strip along the bottom edge, 109 maps of which 49 carry it: Lite0 peaks on the strip's inner row
    (row 14 of 16 on the common grid), whose one-cell corner piece was not seen as at the edge, so the strip stayed
    in two strategies (precision 0.885, recall 0.46, ranked second); and 4 shortcut photos peaking on an object keep
    27-34% of their mass on the strip (the class's others: at most 19%). A band now reaches its edge, and takes in
    every image with `BAND_MASS` of its mass on it."""
    precision, recall, why = recorded_first_strategy("strip")
    assert precision >= 0.9 and recall >= 0.9, (precision, recall)
    assert why.startswith("evidence along the bottom edge"), why


def test_two_images_at_one_place_do_not_take_the_first_card() -> None:
    """The frame, 67 maps of which 30 carry it: a strategy of 2 images, both peaking at the bottom edge, scored as
    fixed as the 26 along the left edge (0.95) and took the first card; the frame's strategy (18 of its photos) was
    second and not flagged. Any two peaks are near their median: a share now counts `FEW` more images than the
    strategy holds. The frame is still not found (precision 0.69, recall 0.60: its maps peak anywhere)."""
    precision, recall, _ = recorded_first_strategy("frame")
    assert recall >= 0.5 and precision >= 0.65, (precision, recall)


def test_a_band_is_as_deep_as_the_lines_its_peaks_pile_up_on() -> None:
    """The translucent strip down the right edge (`side`, added after the rules were tuned), 67 maps of which 30
    carry it: 20 of the first strategy's photos peaked on column 14 of 16 and 3 objects on column 13, so the band
    took in column 13 and the objects peaking there (precision 0.750). An inner line now stays only with a quarter of
    the fullest line's peaks."""
    precision, recall, why = recorded_first_strategy("side")
    assert recall == 1.0 and precision >= 0.85, (precision, recall)
    assert why.startswith("evidence along the right edge"), why


def test_a_band_three_rows_from_its_edge_does_not_take_in_broad_maps_above_it() -> None:
    """A band reaches its edge only from a cell away. Stretched to the edge from the quarter's inner row, a one-row
    band became a quarter of the picture, which a broad map covers with `BAND_MASS` of its mass wherever it peaks
    (the review of stop 29: 24 of 30 broad objects peaking just above such a band joined it). On the 16 x 16 grid:
    20 sharp peaks along row 12, 30 broad maps peaking on rows 9-10, 20 moving objects."""
    rng = np.random.default_rng(0)
    band = [blob(16, 16, 12, int(rng.integers(0, 16)), 0.4, 100 + k) for k in range(20)]
    broad = [blob(16, 16, float(rng.uniform(9, 10.4)), float(rng.uniform(3, 13)), 2.5, 200 + k) for k in range(30)]
    maps = np.stack(band + broad + [moving(k, 16, 16) for k in range(20)])
    labels = np.array([0] * 20 + [1] * 30 + [2] * 20)
    x = features(np.stack([common_map(m) for m in maps]))
    settled = settle(x, maps.astype(np.float32), labels)
    assert (settled[20:50] != settled[0]).all() and (settled[:20] == settled[0]).all(), settled
