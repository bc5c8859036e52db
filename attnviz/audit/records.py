"""The audit's records: one JSON line per image with `run --json`'s fields, the grid's `weights` (flat, row-major,
`grid` = [rows, cols]) and, once analysed, `id`, `cluster`, `xy`, `stats` and `flags`.

The same lines come from an audit's own run, from a Ray run (`attnviz.ray`) or from an earlier audit, so
`attnviz audit --from` can re-analyse any of them without a network.
"""

from __future__ import annotations

import io
import json
import os
from collections.abc import Iterable
from pathlib import Path
from typing import IO

from attnviz.errors import InputError
from attnviz.io.outputs import atomic_write

RECORDS = "records.jsonl"
PARQUET = "records.parquet"

Record = dict[str, object]


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


def read_records(source: str | os.PathLike[str]) -> tuple[list[Record], list[Record]]:
    """(records with weights, error records) from a .jsonl or .parquet file, or a folder of them.

    A last line cut short (an interrupted run) is dropped; any other unreadable line is an error naming the line.
    Null fields (but a backbone's `"target": null`) and encoded overlays (a Ray run's `overlays` column) are left
    out. Records without weights (a plain `run --json`) cannot be analysed and are refused.
    """
    records, errors = [], []
    for path in records_files(source):
        rows = _read_parquet(path) if path.suffix == ".parquet" else _read_jsonl(path)
        for full in rows:
            row = {k: v for k, v in full.items() if (v is not None or k == "target") and k != "overlays"}
            if row.get("error"):
                errors.append({"input": row.get("input"), "error": row["error"]})
            elif not row.get("skipped"):
                if "weights" not in row or "grid" not in row:
                    raise InputError(
                        f"{path}: the record of {row.get('input')} has no grid weights (made by `run --json`?)"
                    )
                records.append(row)
    return records, errors


def _read_jsonl(path: Path) -> list[Record]:
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


def _read_parquet(path: Path) -> list[Record]:
    try:
        import pyarrow.parquet as pq
    except ImportError:
        raise InputError(f"{path}: reading Parquet needs pyarrow (pip install pyarrow)") from None
    rows: list[Record] = pq.read_table(path).to_pylist()
    return rows


def write_records(out_dir: Path, records: Iterable[Record]) -> Path:
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


class Journal(io.RawIOBase):
    """Where the batch runner's JSON lines go during an audit: each line is kept and appended to a journal file at
    once, so an interrupted audit resumes from what it finished."""

    def __init__(self, path: Path) -> None:
        super().__init__()
        self.path = path
        self.rows: list[Record] = []
        self._file = path.open("ab")

    def writable(self) -> bool:
        return True

    def write(self, data: bytes | bytearray | memoryview) -> int:  # type: ignore[override]
        chunk = bytes(data)
        for line in chunk.splitlines():
            if line.strip():
                self.rows.append(json.loads(line))
                self._file.write(line + b"\n")
        self._file.flush()
        return len(chunk)

    def close(self) -> None:
        if not self._file.closed:
            self._file.close()
        super().close()
