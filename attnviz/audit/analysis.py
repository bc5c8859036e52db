"""From records to findings: each image's statistics, its class's strategies, the scatter and the flags.

Images are grouped by the class their map explains (`target`). Each record gains `id`, `cluster` (its strategy
within its class, -1 when the class has too few images to cluster), `xy`, `stats` and `flags`; each class gains
its strategies, numbered from the largest, with their sizes, members and exemplars.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field

import numpy as np

from attnviz.audit.records import AuditRecord
from attnviz.audit.stats import (
    COMMON_GRID,
    LOW_PROB,
    SMALL_OF_LARGEST,
    SMALL_SHARE,
    common_maps,
    features,
    grid_of,
    map_stats,
    outliers,
    resample,
)
from attnviz.audit.strategies import MIN_IMAGES, embed, strategies
from attnviz.audit.suspicion import SUSPECT, judge, ranks

#: Exemplars shown per strategy: the members closest to its centre.
EXEMPLARS = 4
#: Up to this many maps the features are float64; beyond, float32 (the weights hold 7 decimals).
FLOAT64_LIMIT = 200_000
#: Maps turned into features at a time.
CHUNK = 10_000


@dataclass
class Strategy:
    id: int
    members: list[int]  # record ids, closest to the centre first
    share: float
    small: bool
    rank: int = 0  # 0: the class's most suspicious strategy, the first card
    suspicion: float = 0.0
    why: str = ""

    @property
    def size(self) -> int:
        return len(self.members)


@dataclass
class ClassFindings:
    index: int
    label: str
    members: list[int]
    clustered: bool
    strategies: list[Strategy] = field(default_factory=list)


#: The group of a backbone's maps, which explain no class (`"target": null`): one group, no probability.
NO_CLASS = (-1, "no class (a backbone)", float("nan"))


def target_of(record: AuditRecord) -> tuple[int, str, float]:
    if "target" not in record:
        raise ValueError(f"record of {record.get('input')} has no target")
    target = record["target"]
    if target is None:
        return NO_CLASS
    if not isinstance(target, dict):
        raise ValueError(f"record of {record.get('input')} has no target")
    return int(target["index"]), str(target["label"]), float(target["prob"])


def analyse(records: list[AuditRecord]) -> list[ClassFindings]:
    """Adds the per-image findings to `records` (in place, ordered by input) and returns the per-class ones."""
    records.sort(key=lambda r: str(r.get("input")))
    for number, record in enumerate(records):
        record["id"] = number
    x, plain = _features(records)  # (N, D), (N, COMMON_GRID, COMMON_GRID)
    xy = embed(x) if len(x) else np.zeros((0, 2))
    by_class: dict[int, list[int]] = defaultdict(list)
    labels: dict[int, str] = {}
    for record in records:
        index, label, _ = target_of(record)
        by_class[index].append(int(record["id"]))  # type: ignore[call-overload]
        labels[index] = label
    found = []
    distances = np.zeros(len(records))  # (N,) each map's distance to its strategy's centre, filled per class
    for index, members in sorted(by_class.items(), key=lambda kv: (-len(kv[1]), kv[0])):
        found.append(_class_findings(index, labels[index], members, x, plain, records, distances))
    for record, point in zip(records, xy, strict=True):
        stats = map_stats(_map_of(record))
        _, _, prob = target_of(record)
        flags = record.setdefault("flags", [])
        assert isinstance(flags, list)
        if stats.border_peak:
            flags.append("border_peak")
        if prob < LOW_PROB:
            flags.append("low_prob")
        record["xy"] = [round(float(v), 4) for v in point]
        record["stats"] = {
            "border": round(stats.border, 4),
            "entropy": round(stats.entropy, 4),
            "distance": round(float(distances[int(record["id"])]), 4),  # type: ignore[call-overload]
            "peak_x": round(stats.peak_x, 4),
            "peak_y": round(stats.peak_y, 4),
        }
    return found


def _map_of(record: AuditRecord) -> np.ndarray:
    return grid_of(record["weights"], record["grid"])


def _features(records: list[AuditRecord]) -> tuple[np.ndarray, np.ndarray]:
    """Every map's features and its plain common map, a chunk at a time: no map is kept in float64 beyond its chunk.
    Over `FLOAT64_LIMIT` maps the features are float32 (1.2 GB at a million, half of float64)."""
    n, side = len(records), COMMON_GRID
    x = np.empty((n, side * side + 2 * side), dtype=np.float64 if n <= FLOAT64_LIMIT else np.float32)
    plain = np.empty((n, side, side), dtype=np.float32)
    for start in range(0, n, CHUNK):
        maps = np.stack([resample(_map_of(record), side) for record in records[start : start + CHUNK]])
        x[start : start + len(maps)] = features(common_maps(maps))
        plain[start : start + len(maps)] = maps
    return x, plain


def _class_findings(
    index: int,
    label: str,
    members: list[int],
    x: np.ndarray,
    plain: np.ndarray,
    records: list[AuditRecord],
    distances: np.ndarray,
) -> ClassFindings:
    """Cluster one class's maps; write each member's strategy and strategy flags, and its distance into
    `distances`."""
    found = ClassFindings(index, label, members, clustered=len(members) >= MIN_IMAGES)
    maps = plain[members]
    result = strategies(x[members], maps)
    far = outliers(result.distances)
    sizes = np.bincount(result.labels) if len(members) else np.zeros(0, dtype=int)
    for k, size in enumerate(sizes):
        inside = np.flatnonzero(result.labels == k)
        ordered = [members[i] for i in inside[np.argsort(result.distances[inside], kind="stable")]]
        share = size / len(members)
        # small: a minor way of explaining the class, beside a main one (not one of many even-sized strategies)
        small = found.clustered and share <= SMALL_SHARE and size <= SMALL_OF_LARGEST * sizes.max()
        found.strategies.append(Strategy(k, ordered, share, bool(small)))
    if found.clustered:
        verdicts = judge(maps, result.labels)
        for strategy, verdict, rank in zip(found.strategies, verdicts, ranks(verdicts, list(sizes)), strict=True):
            strategy.rank, strategy.suspicion, strategy.why = rank, verdict.score, verdict.why
    for position, record_id in enumerate(members):
        record = records[record_id]
        flags: list[str] = []
        if found.clustered and found.strategies[int(result.labels[position])].small:
            flags.append("small_strategy")
        own = found.strategies[int(result.labels[position])] if found.clustered else None
        if own is not None and own.rank == 0 and own.suspicion >= SUSPECT:
            flags.append("fixed_evidence")
        if found.clustered and far[position]:
            flags.append("outlier")
        record["flags"] = flags
        record["cluster"] = int(result.labels[position]) if found.clustered else -1
    distances[members] = result.distances
    return found


def mean_map(records: list[AuditRecord], members: list[int], side: int = 24) -> np.ndarray:
    """(side, side) mean of the members' maps, each resampled to a common square grid first."""
    stack = [resample(_map_of(records[i]), side) for i in members]
    return np.mean(stack, axis=0)


def class_json(found: ClassFindings, mean_maps: dict[tuple[int, int], str]) -> dict[str, object]:
    """One class as the report's data expects it."""
    return {
        "index": found.index,
        "label": found.label,
        "count": len(found.members),
        "clustered": found.clustered,
        "strategies": [
            {
                "id": s.id,
                "size": s.size,
                "share": round(s.share, 4),
                "small": s.small,
                "rank": s.rank,
                "suspicion": s.suspicion,
                "suspect": s.rank == 0 and s.suspicion >= SUSPECT,
                "why": s.why,
                "mean_map": mean_maps.get((found.index, s.id)),
                "exemplars": s.members[:EXEMPLARS],
            }
            for s in sorted(found.strategies, key=lambda s: s.rank)  # the most suspicious card first
        ]
        if found.clustered
        else [],
    }
