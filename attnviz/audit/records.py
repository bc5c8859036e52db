"""The audit's records: one JSON line per image with `run --json`'s fields, the grid's `weights` (flat, row-major,
`grid` = [rows, cols]) and, once analysed, `id`, `cluster`, `xy`, `stats` and `flags`.

The same lines come from an audit's own run, from a Ray run (`attnviz.ray`) or from an earlier audit, so
`attnviz audit --from` can re-analyse any of them without a network.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from pathlib import Path
from typing import IO, cast, get_type_hints

from attnviz.errors import InputError
from attnviz.io.outputs import atomic_write
from attnviz.record import NOT_IN_JSON, Record

RECORDS = "records.jsonl"
PARQUET = "records.parquet"


class AuditRecord(Record, total=False):
    """A run's record (`attnviz.record.Record`) as the audit keeps it: the analysis adds these fields."""

    id: int
    cluster: int  # the strategy within its class; -1 when the class was not clustered
    xy: list[float]  # the scatter's position
    stats: dict[str, float]
    flags: list[str]
    thumb: str | None  # thumbs/NAME.jpg beside the report


#: The fields read back: every declared one but encoded overlays (a Ray run's `overlays` column).
_KEPT = frozenset(get_type_hints(AuditRecord)) - set(NOT_IN_JSON)


def records_files(source: str | os.PathLike[str]) -> list[Path]:
    """A records file; or a folder: an audit's records.jsonl (or .parquet), else every .parquet, .jsonl and .json
    file in it, which is what Ray Data's `write_parquet` and `write_json` leave."""
    path = Path(source)
    if path.is_dir():
        for name in (RECORDS, PARQUET):
            if (path / name).is_file():
                return [path / name]
        found = sorted(f for f in path.iterdir() if f.is_file() and f.suffix in (".parquet", ".jsonl", ".json"))
        if not found:
            raise InputError(f"{path}: no {RECORDS}, and no .parquet, .jsonl or .json records in this folder")
        return found
    if not path.is_file():
        raise InputError(f"{path}: no such records file")
    return [path]


def read_records(source: str | os.PathLike[str]) -> tuple[list[AuditRecord], list[AuditRecord]]:
    """(records with weights, error records) from a .jsonl or .parquet file, or a folder of them.

    A last line cut short (an interrupted run) is dropped; any other unreadable line is an error naming the line.
    Null fields (but a backbone's `"target": null`), encoded overlays (a Ray run's `overlays` column) and fields
    that `AuditRecord` does not declare are left out. Records without weights (a plain `run --json`) cannot be
    analysed and are refused.
    """
    records: list[AuditRecord] = []
    errors: list[AuditRecord] = []
    for path in records_files(source):
        rows = _read_parquet(path) if path.suffix == ".parquet" else _read_jsonl(path)
        for full in rows:
            row = cast(AuditRecord, {k: v for k, v in full.items() if k in _KEPT and (v is not None or k == "target")})
            if row.get("error"):
                errors.append({"input": str(row.get("input")), "error": row["error"]})
            elif not row.get("skipped"):
                if "weights" not in row or "grid" not in row:
                    raise InputError(
                        f"{path}: the record of {row.get('input')} has no grid weights (made by `run --json`?)"
                    )
                records.append(row)
    return records, errors


def _read_jsonl(path: Path) -> list[dict[str, object]]:
    lines = path.read_bytes().split(b"\n")
    rows = []
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except ValueError:
            if number >= len(lines) - 1:  # the last line, cut short: its image is explained again
                break
            raise InputError(f"{path}:{number}: not a JSON record") from None
        if not isinstance(row, dict):
            raise InputError(f"{path}:{number}: not a JSON object")
        rows.append(row)
    return rows


def _read_parquet(path: Path) -> list[dict[str, object]]:
    try:
        import pyarrow.parquet as pq
    except ImportError:
        raise InputError(f"{path}: reading Parquet needs pyarrow (pip install pyarrow)") from None
    rows: list[dict[str, object]] = pq.read_table(path).to_pylist()
    return rows


def write_records(out_dir: Path, records: Iterable[AuditRecord]) -> Path:
    """records.jsonl, atomically; records.parquet beside it when pyarrow is installed."""
    rows = list(records)
    path = out_dir / RECORDS

    def write(stream: IO[bytes]) -> None:
        for row in rows:
            stream.write(json.dumps(row, separators=(",", ":")).encode() + b"\n")

    atomic_write(path, write, overwrite=True)
    try:
        import pyarrow as pa
        import pyarrow.parquet as pq
    except ImportError:
        return path
    table = pa.Table.from_pylist(rows)
    atomic_write(out_dir / PARQUET, lambda stream: pq.write_table(table, stream), overwrite=True)
    return path


class Journal:
    """An audit's records while it runs: each is kept and appended to a journal file at once, so an interrupted
    audit resumes from what it finished."""

    def __init__(self, path: Path) -> None:
        self.rows: list[AuditRecord] = []
        self._file = path.open("ab")

    def add(self, record: Record) -> None:
        self.rows.append(cast(AuditRecord, record))
        self._file.write(json.dumps(record).encode() + b"\n")
        self._file.flush()

    def __enter__(self) -> Journal:
        return self

    def __exit__(self, *exc: object) -> None:
        self._file.close()
