"""One Arrow schema for every record a Ray run returns, and the way back to `run --json`'s lines.

Every batch an actor returns has this exact schema, error records included (their other fields are null), so
Ray never has to reconcile blocks whose columns differ, and `write_parquet` writes one table. The columns are
`run --json`'s fields, in its order, plus `weights` (the grid's attention weights, float32, row-major, length
rows x cols of `grid`: the audit's contract) and `overlays` (encoded maps, only when asked for).
"""

from __future__ import annotations

from typing import Any

import pyarrow as pa

PREDICTION = pa.struct([("index", pa.int64()), ("label", pa.string()), ("prob", pa.float64())])
MAP_ENTRY = pa.struct(
    [("target", PREDICTION), ("output", pa.string()), ("peak", pa.list_(pa.int64())), ("scores", pa.string())]
)
SCHEMA = pa.schema(
    [
        ("input", pa.string()),
        ("output", pa.string()),
        ("mode", pa.string()),
        ("encoder", pa.string()),
        ("size", pa.list_(pa.int64())),
        ("classify_size", pa.list_(pa.int64())),
        ("grid", pa.list_(pa.int64())),
        ("target", PREDICTION),
        ("topk", pa.list_(PREDICTION)),
        ("peak", pa.list_(pa.int64())),
        ("scores", pa.string()),
        ("maps", pa.list_(MAP_ENTRY)),
        ("frames", pa.int64()),
        ("frame", pa.int64()),
        ("skipped", pa.bool_()),
        ("error", pa.string()),
        ("weights", pa.list_(pa.float32())),
        ("overlays", pa.list_(pa.binary())),
    ]
)
#: Columns that `run --json` does not print: the weights go to the audit, the overlays to whoever asked for them.
EXTRA_COLUMNS = ("weights", "overlays")


def to_table(records: list[dict[str, Any]]) -> pa.Table:
    """Records (dicts with any subset of the columns) as one table of the shared schema."""
    return pa.Table.from_pylist(records, schema=SCHEMA)


def _without_nulls(value: Any) -> Any:
    if isinstance(value, dict):  # a map's null target (a backbone's map explains no class) is said, not left out
        mapped = value.get("peak") is not None
        return {key: _without_nulls(v) for key, v in value.items() if v is not None or (key == "target" and mapped)}
    if isinstance(value, list):
        return [_without_nulls(v) for v in value]
    return value


def json_record(row: dict[str, Any]) -> dict[str, Any]:
    """A row back as `run --json` prints it: null fields and the extra columns left out, the rest in order."""
    return _without_nulls({key: value for key, value in row.items() if key not in EXTRA_COLUMNS})
