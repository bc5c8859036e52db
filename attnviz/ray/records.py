"""One Arrow schema for every record a Ray run returns, and the way back to `run --json`'s lines.

Every batch an actor returns has this exact schema, error records included (their other fields are null), so
Ray never has to reconcile blocks whose columns differ, and `write_parquet` writes one table. The columns are
`run --json`'s fields, in its order, plus `weights` (the grid's attention weights, float32, row-major, length
rows x cols of `grid`: the audit's contract) and `overlays` (encoded maps, only when asked for).
"""

from __future__ import annotations

from typing import Any

import pyarrow as pa

from attnviz.io.arrow import fields
from attnviz.record import NOT_IN_JSON, Record

SCHEMA = pa.schema(list(fields(Record)))
#: Columns that `run --json` does not print: the weights go to the audit, the overlays to whoever asked for them.
EXTRA_COLUMNS = ("weights", *NOT_IN_JSON)


def to_table(records: list[Record]) -> pa.Table:
    """Records (dicts with any subset of the columns) as one table of the shared schema."""
    return pa.Table.from_pylist(records, schema=SCHEMA)


def _without_nulls(value: Any) -> Any:
    if isinstance(value, dict):  # a map's null target (a backbone's map explains no class) is said, not left out
        mapped = value.get("peak") is not None
        return {key: _without_nulls(v) for key, v in value.items() if v is not None or (key == "target" and mapped)}
    if isinstance(value, list):
        return [_without_nulls(v) for v in value]
    return value


def json_record(row: Record) -> Record:
    """A row back as `run --json` prints it: null fields and the extra columns left out, the rest in order."""
    record: Record = _without_nulls({key: value for key, value in row.items() if key not in EXTRA_COLUMNS})
    return record
