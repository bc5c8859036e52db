"""An audit folder from analysed records: thumbnails, one picture per strategy, records.jsonl and report.html."""

from __future__ import annotations

import hashlib
import math
import os
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import overload

import numpy as np

from attnviz import render
from attnviz.audit.analysis import ClassFindings, analyse, class_json, mean_map, target_of
from attnviz.audit.page import write_report
from attnviz.audit.records import AuditRecord, write_records
from attnviz.audit.stats import FLAGS, STATS
from attnviz.errors import AttnvizError
from attnviz.io.images import load_image
from attnviz.io.outputs import encode_image, write_bytes

#: Longer side of the thumbnails in the table and the cards.
THUMB_SIDE = 160
#: Thumbnails drawn at a time.
THUMB_CHUNK = 4096
#: Longer side of the typical image a strategy's mean map is drawn over.
CARD_SIDE = 320


def build_audit(
    out_dir: Path,
    records: list[AuditRecord],
    errors: list[AuditRecord],
    meta: dict[str, object],
    *,
    colormap: str = render.DEFAULT_COLORMAP,
    alpha: float = render.DEFAULT_ALPHA,
    say: Callable[[str], None] = lambda text: None,
) -> Path:
    """Analyse `records`, draw the folder's pictures, and write records.jsonl and report.html; returns the report."""
    out_dir.mkdir(parents=True, exist_ok=True)
    say(f"analysing {len(records)} maps")
    found = analyse(records)
    say("drawing thumbnails and strategy cards")
    with ThreadPoolExecutor(min(4, os.cpu_count() or 1)) as pool:
        for start in range(0, len(records), THUMB_CHUNK):  # a chunk at a time: no future per image held
            list(pool.map(lambda r: _thumbnail(out_dir, r), records[start : start + THUMB_CHUNK]))
    missing = sum(record.get("thumb") is None for record in records)
    if missing:  # `audit --from` elsewhere than where the images were read: relative paths lead nowhere
        say(
            f"{missing} of {len(records)} images could not be read from here, so the page shows no picture of them "
            "(relative paths are read from the current folder: re-run where the audit ran)"
        )
    pictures = {key: path for key, path in _strategy_pictures(out_dir, records, found, colormap, alpha)}
    say("writing the records and the report")
    write_records(out_dir, records)
    data = {
        "title": meta.get("title") or "attnviz audit",
        **meta,
        "stats": STATS,
        "flags": FLAGS,
        "classes": [class_json(f, pictures) for f in found],
        "records": PageRecords(out_dir, records),
        "errors": errors,
    }
    return write_report(out_dir, data)


class PageRecords(Sequence[dict[str, object]]):
    """What the page shows of each record, made when asked for: the report's data files take a part at a time."""

    def __init__(self, out_dir: Path, records: list[AuditRecord]) -> None:
        self.out_dir, self.records = out_dir, records

    def __len__(self) -> int:
        return len(self.records)

    @overload
    def __getitem__(self, index: int) -> dict[str, object]: ...
    @overload
    def __getitem__(self, index: slice) -> list[dict[str, object]]: ...
    def __getitem__(self, index: int | slice) -> dict[str, object] | list[dict[str, object]]:
        if isinstance(index, slice):
            return [_page_record(self.out_dir, r) for r in self.records[index]]
        return _page_record(self.out_dir, self.records[index])


def _relative(out_dir: Path, path: object) -> str | None:
    """A local file's path from the report's folder, as the page's links need it; None for anything else."""
    if not isinstance(path, str) or not path or path == "-" or "://" in path or not os.path.exists(path):
        return None
    return Path(os.path.relpath(os.path.abspath(path), os.path.abspath(out_dir))).as_posix()


def _thumb_name(record: AuditRecord) -> str:
    digest = hashlib.sha1(os.path.abspath(str(record.get("input"))).encode("utf-8", "surrogateescape")).hexdigest()
    return f"thumbs/{digest[:16]}.jpg"


def _thumbnail(out_dir: Path, record: AuditRecord) -> None:
    """thumbs/<hash of the input>.jpg, kept across resumed audits; a missing or unreadable input gets none."""
    name = _thumb_name(record)
    record["thumb"] = None
    if (out_dir / name).exists():
        record["thumb"] = name
        return
    try:
        image = load_image(str(record.get("input"))).image
    except AttnvizError:
        return
    image.thumbnail((THUMB_SIDE, THUMB_SIDE))
    write_bytes(out_dir / name, encode_image(np.asarray(image), "JPEG", {"quality": 85}), overwrite=True)
    record["thumb"] = name


def _strategy_pictures(
    out_dir: Path, records: list[AuditRecord], found: list[ClassFindings], colormap: str, alpha: float
) -> list[tuple[tuple[int, int], str]]:
    """Each strategy's mean map over its most typical image (the member closest to its centre)."""
    made = []
    for findings in found:
        if not findings.clustered:
            continue
        for strategy in findings.strategies:
            try:
                image = load_image(str(records[strategy.members[0]].get("input"))).image
            except AttnvizError:
                continue
            image.thumbnail((CARD_SIDE, CARD_SIDE))
            mean = mean_map(records, strategy.members)  # (24, 24)
            heat = render.draw_map(np.log(np.maximum(mean, 1e-12)), image.width, image.height)
            pixels = render.overlay(np.asarray(image), heat, colormap, alpha)
            name = f"strategies/{findings.index}-{strategy.id}.png"
            write_bytes(out_dir / name, encode_image(pixels, "PNG", {}), overwrite=True)
            made.append(((findings.index, strategy.id), name))
    return made


def _page_record(out_dir: Path, record: AuditRecord) -> dict[str, object]:
    """What the page shows of a record: no weights, paths relative to the report."""
    index, label, prob = target_of(record)
    return {
        "id": record["id"],
        "input": record.get("input"),
        "image": _relative(out_dir, record.get("input")),
        "thumb": record.get("thumb"),
        "overlay": _relative(out_dir, record.get("output")),
        "class": index,
        "label": label,
        "prob": None if math.isnan(prob) else round(prob, 4),
        "cluster": record.get("cluster", -1),
        "xy": record.get("xy"),
        "stats": record.get("stats"),
        "flags": record.get("flags", []),
    }
