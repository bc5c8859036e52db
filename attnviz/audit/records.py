"""The audit's records: one JSON line per image with `run --json`'s fields, the grid's `weights` (flat, row-major,
`grid` = [rows, cols]) and, once analysed, `id`, `cluster`, `xy`, `stats`, `flags` and `thumb`.

The same lines come from an audit's own run, from a Ray run (`attnviz.ray`) or from an earlier audit, so
`attnviz audit --from` can re-analyse any of them without a network. Files are read a chunk at a time; read
`compact`, a record keeps its weights as a float32 array and the fields the analysis and the page do not read as
their JSON text, so a million records take about 1.5 GB rather than the 15 GB of plain dicts.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import IO, Any, TypedDict, cast, get_type_hints

import numpy as np

from attnviz.errors import InputError
from attnviz.io.outputs import atomic_write
from attnviz.record import NOT_IN_JSON, Record

RECORDS = "records.jsonl"
PARQUET = "records.parquet"
#: Records converted and written, and Parquet rows read, this many at a time.
CHUNK = 20_000
#: JSON lines read at a time: their weights are Python floats until converted (8 KB a record), and memory freed
#: between long-lived records is not given back (a 20,000-line chunk left 7.6 KB a record, 1,000 lines 2.7 KB).
LINES = 1000
#: How JSON lines are written.
_SEPARATORS = (",", ":")


class Statistics(TypedDict):
    border: float
    entropy: float
    distance: float
    peak_x: float
    peak_y: float


class AuditRecord(Record, total=False):
    """A run's record (`attnviz.record.Record`) as the audit keeps it: the analysis adds these fields."""

    id: int
    cluster: int  # the strategy within its class; -1 when the class was not clustered
    xy: list[float]  # the scatter's position
    stats: Statistics
    flags: list[str]
    thumb: str | None  # thumbs/NAME.jpg beside the report
    _rest: bytes  # a compact record's fields that neither the analysis nor the page reads, as JSON; never written


#: The order of a written record's fields: the declared one.
_ORDER = [name for name in get_type_hints(AuditRecord) if name != "_rest"]
#: The fields read back: every declared one but encoded overlays (a Ray run's `overlays` column).
_KEPT = frozenset(_ORDER) - set(NOT_IN_JSON)
#: What a compact record holds as it is; the analysis's own fields are left out, as they are found again.
_HELD = ("input", "output", "grid", "target", "weights")
_FOUND = frozenset(get_type_hints(AuditRecord)) - frozenset(get_type_hints(Record))


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


def read_records(source: str | os.PathLike[str], compact: bool = False) -> tuple[list[AuditRecord], list[AuditRecord]]:
    """(records with weights, error records) from a .jsonl or .parquet file, or a folder of them.

    A last line cut short (an interrupted run) is dropped; any other unreadable line is an error naming the line.
    Null fields (but a backbone's `"target": null`), encoded overlays (a Ray run's `overlays` column) and fields
    that `AuditRecord` does not declare are left out. Records without weights (a plain `run --json`), or with as
    many as their grid has not cells, cannot be analysed and are refused. `compact`: see the module's docstring.
    """
    records: list[AuditRecord] = []
    errors: list[AuditRecord] = []
    for path in records_files(source):
        for rows in _parquet_chunks(path) if path.suffix == ".parquet" else _jsonl_chunks(path):
            kept = []
            for full in rows:
                row = cast(
                    AuditRecord, {k: v for k, v in full.items() if k in _KEPT and (v is not None or k == "target")}
                )
                if row.get("error"):
                    errors.append({"input": str(row.get("input")), "error": row["error"]})
                elif not row.get("skipped"):
                    kept.append(row)
            arrays = _weights(path, kept)
            for row, weights in zip(kept, arrays, strict=True):
                if compact:
                    records.append(_compact(row, weights))
                else:  # as the file has them: a Parquet file's array as a list
                    own = row["weights"]
                    records.append({**row, "weights": own.tolist()} if isinstance(own, np.ndarray) else row)
    return records, errors


def _check_target(path: Path | str, row: AuditRecord) -> None:
    """The class a map explains: null (a backbone's), or its index, label and probability."""
    target = row.get("target", ...)
    if target is None:
        return
    if not (
        isinstance(target, dict)
        and isinstance(target.get("index"), int)
        and isinstance(target.get("label"), str)
        and isinstance(target.get("prob"), int | float)
    ):
        said = "no target" if target is ... else f"a target without its index, label and prob: {json.dumps(target)}"
        raise InputError(f"{path}: the record of {row.get('input')} has {said}")


def _weights(path: Path | str, rows: list[AuditRecord]) -> list[np.ndarray]:
    """Each row's weights as a float32 view of one array for the chunk, checked against its grid."""
    sizes = []
    for row in rows:
        weights, grid = row.get("weights"), row.get("grid")
        if weights is None or grid is None:
            raise InputError(f"{path}: the record of {row.get('input')} has no grid weights (made by `run --json`?)")
        _check_target(path, row)
        shape = [int(n) for n in grid if isinstance(n, int)] if isinstance(grid, list) else []
        cells = shape[0] * shape[1] if len(shape) == 2 == len(grid) and min(shape) > 0 else -1
        count = len(weights) if isinstance(weights, list | np.ndarray) else -1
        if cells < 0 or count != cells:
            said = f"a {shape[0]} x {shape[1]} grid" if cells > 0 else f"a grid of {json.dumps(grid)}"
            raise InputError(f"{path}: the record of {row.get('input')} has {max(count, 0)} weights for {said}")
        sizes.append(cells)
    ends = np.cumsum(sizes, dtype=np.int64)
    flat = np.empty(int(ends[-1]) if sizes else 0, dtype=np.float32)
    for row, end, size in zip(rows, ends, sizes, strict=True):
        try:
            flat[end - size : end] = row["weights"]
        except (TypeError, ValueError):
            raise InputError(f"{path}: the record of {row.get('input')} has weights that are not numbers") from None
    return [flat[end - size : end] for end, size in zip(ends, sizes, strict=True)]


def compact(record: AuditRecord) -> AuditRecord:
    """One record with weights, compact (see the module's docstring)."""
    return _compact(record, _weights("a record", [record])[0])


def _compact(row: AuditRecord, weights: np.ndarray) -> AuditRecord:
    held = cast(AuditRecord, {key: row[key] for key in _HELD if key in row})  # type: ignore[literal-required]
    target = held.get("target")
    if isinstance(target, dict) and isinstance(target.get("label"), str):
        target["label"] = sys.intern(target["label"])  # a million records name ten classes
    held["weights"] = weights  # type: ignore[typeddict-item]
    rest = {key: value for key, value in row.items() if key not in _HELD and key not in _FOUND}
    if rest:
        held["_rest"] = json.dumps(rest, separators=(",", ":")).encode()
    return held


def _jsonl_chunks(path: Path) -> Iterator[list[dict[str, Any]]]:
    rows: list[dict[str, Any]] = []
    bad = 0  # an unreadable line: an error unless it is the last
    with path.open("rb") as lines:
        for number, line in enumerate(lines, 1):
            if not line.strip():
                continue
            if bad:
                raise InputError(f"{path}:{bad}: not a JSON record")
            try:
                row = json.loads(line)
            except ValueError:
                bad = number  # the last line, cut short, is dropped: its image is explained again
                continue
            if not isinstance(row, dict):
                raise InputError(f"{path}:{number}: not a JSON object")
            rows.append(row)
            if len(rows) == LINES:
                yield rows
                rows = []
    yield rows


def _parquet_chunks(path: Path) -> Iterator[list[dict[str, Any]]]:
    """Rows a batch at a time; the weights column is read as one array, not as Python floats."""
    try:
        import pyarrow.parquet as pq
    except ImportError:
        raise InputError(f"{path}: reading Parquet needs pyarrow (pip install pyarrow)") from None
    try:
        file = pq.ParquetFile(path)
    except Exception as exc:  # pyarrow's own errors: not a Parquet file, cut short
        raise InputError(f"{path}: cannot read it as Parquet: {exc}") from None
    names = [name for name in file.schema_arrow.names if name in _KEPT]
    for batch in file.iter_batches(batch_size=CHUNK, columns=names):
        rows: list[dict[str, Any]] = batch.select([n for n in names if n != "weights"]).to_pylist()
        if "weights" in names:
            column = batch.column("weights")
            values = column.values.to_numpy(zero_copy_only=False)
            offsets, null = column.offsets.to_numpy(), column.is_null().to_numpy(zero_copy_only=False)
            for i, row in enumerate(rows):
                row["weights"] = None if null[i] else values[offsets[i] : offsets[i + 1]]
        yield rows


def full_record(record: AuditRecord) -> dict[str, Any]:
    """A record with every field, in the declared order: a compact one's JSON text read back (its weights stay an
    array)."""
    merged: dict[str, Any] = dict(record)
    rest = merged.pop("_rest", None)
    if rest:
        merged.update(json.loads(rest))
    ordered = {key: merged[key] for key in _ORDER if key in merged}
    return ordered | {key: value for key, value in merged.items() if key not in ordered}


def json_line(record: AuditRecord) -> bytes:
    """A record's JSON line; a compact record's float32 weights as `_weights_json` writes them."""
    row = full_record(record)
    weights = row.get("weights")
    if not isinstance(weights, np.ndarray):
        return json.dumps(row, separators=_SEPARATORS).encode()
    keys = list(row)
    at = keys.index("weights")
    head = json.dumps({key: row[key] for key in keys[:at]}, separators=_SEPARATORS)[:-1]  # "{...", no "}"
    tail = json.dumps({key: row[key] for key in keys[at + 1 :]}, separators=_SEPARATORS)[1:]  # "...}", no "{"
    return f'{head}{"," if at else ""}"weights":{_weights_json(weights)}{"," if tail != "}" else ""}{tail}'.encode()


def _weights_json(weights: np.ndarray) -> str:
    """Float32 weights as the numbers they were read from: the local engine's 7 decimals as it wrote them (the
    float32 of each is that of the 7-decimal number nearest it), else (a Ray run's) in the fewest digits that
    read back the same float32."""
    decimals = np.round(weights.astype(np.float64), 7)
    if (decimals.astype(np.float32) == weights).all():
        return json.dumps(decimals.tolist(), separators=_SEPARATORS)
    return "[" + ",".join(weights.astype(str).tolist()).replace("nan", "NaN").replace("inf", "Infinity") + "]"


def write_records(out_dir: Path, records: Sequence[AuditRecord]) -> Path:
    """records.jsonl, atomically, a record at a time; records.parquet beside it when pyarrow is installed."""
    path = out_dir / RECORDS

    def write(stream: IO[bytes]) -> None:
        for record in records:
            stream.write(json_line(record) + b"\n")

    atomic_write(path, write, overwrite=True)
    try:
        import pyarrow as pa
        import pyarrow.parquet as pq

        from attnviz.io.arrow import fields
    except ImportError:
        return path
    # the weights as float64, the JSON lines' numbers
    declared = dict(fields(AuditRecord, leave_out=("_rest", *NOT_IN_JSON)))
    schema = pa.schema(list({**declared, "weights": pa.list_(pa.float64())}.items()))

    def write_parquet(stream: IO[bytes]) -> None:
        with pq.ParquetWriter(stream, schema) as parquet:
            for start in range(0, len(records), CHUNK):
                rows = [full_record(r) for r in records[start : start + CHUNK]]
                parquet.write_table(pa.Table.from_pylist(rows, schema=schema))

    atomic_write(out_dir / PARQUET, write_parquet, overwrite=True)
    return path


class Journal:
    """An audit's records while it runs: each is appended to a journal file at once, so an interrupted audit
    resumes from what it finished, and kept, compact."""

    def __init__(self, path: Path) -> None:
        self.rows: list[AuditRecord] = []
        self._file = path.open("ab")

    def add(self, record: Record) -> None:
        self._file.write(json.dumps(record).encode() + b"\n")
        row = cast(AuditRecord, record)
        self.rows.append(compact(row) if "weights" in row and "grid" in row else row)
        self._file.flush()

    def __enter__(self) -> Journal:
        return self

    def __exit__(self, *exc: object) -> None:
        self._file.close()
