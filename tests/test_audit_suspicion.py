"""The audit's ranking of strategies: evidence that stays put (a tag, a strip) comes first, whatever its size."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from test_audit import blob, record

from attnviz.audit.analysis import analyse, class_json
from attnviz.audit.records import RECORDS, AuditRecord
from attnviz.audit.stats import common_map, features, resample
from attnviz.audit.suspicion import judge, place_name, ranks

from helpers import run


def moving(k: int, rows: int = 14, cols: int = 19) -> np.ndarray:
    """An object's map: its peak wanders over the middle of the picture from image to image."""
    rng = np.random.default_rng(k)
    return blob(rows, cols, rng.uniform(3, rows - 4), rng.uniform(3, cols - 4), spread=1.2, seed=k)


def test_places_have_names() -> None:
    assert place_name(0.9, 0.9) == "the lower-right corner"
    assert place_name(0.1, 0.1) == "the upper-left corner"
    assert place_name(0.5, 0.95) == "the bottom edge"
    assert place_name(0.05, 0.5) == "the left edge"
    assert place_name(0.5, 0.5) == "the centre"


def test_a_fixed_corner_ranks_first_even_as_the_largest_strategy() -> None:
    """The issue's case: the shortcut is the class's largest strategy, so `small_strategy` cannot point at it."""
    corner = [blob(14, 19, 12.5, 17.5, 0.5, k) for k in range(20)]
    objects = [moving(k) for k in range(14)]
    maps = np.stack([resample(m) for m in corner + objects])
    labels = np.array([0] * 20 + [1] * 7 + [2] * 7)
    verdicts = judge(maps, labels)
    assert ranks(verdicts, [20, 7, 7])[0] == 0
    assert verdicts[0].why.startswith("evidence fixed in the lower-right corner in 20 of 20 images")
    assert all(v.score < verdicts[0].score / 2 for v in verdicts[1:])


def test_a_strip_along_an_edge_is_fixed_across_it() -> None:
    strip = [blob(14, 19, 13, 1 + k % 17, 0.5, k) for k in range(12)]  # along the bottom, anywhere left to right
    objects = [moving(k) for k in range(12)]
    maps = np.stack([resample(m) for m in strip + objects])
    verdicts = judge(maps, np.array([0] * 12 + [1] * 12))
    assert verdicts[0].why.startswith("evidence along the bottom edge in 12 of 12 images"), verdicts[0]
    assert verdicts[0].score > verdicts[1].score
    assert "moves from image to image" in verdicts[1].why


def test_row_and_column_sums_make_peaks_along_one_edge_alike() -> None:
    """Two sharp peaks far apart on the bottom edge are nearer each other than either is to a peak in the middle
    (by the blurred maps alone, the two on the edge are the farthest apart)."""
    left, right, middle = (common_map(blob(14, 19, y, x, 0.3)) for y, x in ((13, 2), (13, 16), (7, 9)))
    x = features(np.stack([left, right, middle]))
    assert x.shape == (3, 16 * 16 + 2 * 16)
    along = np.linalg.norm(x[0] - x[1])
    assert along < np.linalg.norm(x[0] - x[2]) and along < np.linalg.norm(x[1] - x[2])  # without the sums: farther


def test_the_report_lists_the_suspect_strategy_first_and_flags_its_images() -> None:
    records: list[AuditRecord] = [record(f"tag{k:02d}.jpg", blob(14, 19, 12.5, 17.5, 0.5, k)) for k in range(24)]
    records += [record(f"obj{k:02d}.jpg", moving(k)) for k in range(16)]
    found = analyse(records)
    cats = found[0]
    data = class_json(cats, {})
    first = data["strategies"][0]  # type: ignore[index]
    tagged = {r["id"] for r in records if str(r["input"]).startswith("tag")}
    top = next(s for s in cats.strategies if s.rank == 0)
    assert set(top.members) == tagged and first["id"] == top.id and first["suspect"]
    assert "lower-right corner in 24 of 24 images" in first["why"]
    assert top.id == 0 and not top.small  # the largest strategy: size alone would never point at it
    for r in records:
        flags = r["flags"]
        assert isinstance(flags, list)
        assert ("fixed_evidence" in flags) == (r["id"] in tagged), r


def test_the_written_report_carries_the_ranking_and_its_words(capsysbinary, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    records = [record(f"tag{k:02d}.jpg", blob(14, 19, 12.5, 17.5, 0.5, k)) for k in range(24)]
    records += [record(f"obj{k:02d}.jpg", moving(k)) for k in range(16)]
    source = tmp_path / "records.jsonl"
    source.write_text("".join(json.dumps(r) + "\n" for r in records))
    code, _, err = run(capsysbinary, "audit", "--from", source, "-o", tmp_path / "audit")
    assert code == 0, err
    written = [json.loads(line) for line in (tmp_path / "audit" / RECORDS).read_text().splitlines()]
    assert all(("fixed_evidence" in r["flags"]) == r["input"].startswith("tag") for r in written)
    page = (tmp_path / "audit" / "report.html").read_text()
    assert "evidence fixed in the lower-right corner in 24 of 24 images" in page and '"suspect":true' in page
