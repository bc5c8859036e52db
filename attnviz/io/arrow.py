"""Arrow types from the record's annotations (`attnviz.record`): the schema of a Ray run's rows and of an audit's
records.parquet. Needs pyarrow, which the `ray` extra brings; importing this module without it is an ImportError."""

from __future__ import annotations

from collections.abc import Iterator
from types import UnionType
from typing import Annotated, Any, Union, get_args, get_origin, get_type_hints, is_typeddict

import pyarrow as pa

from attnviz.record import FLOAT32

_SCALARS: dict[type, pa.DataType] = {
    str: pa.string(),
    int: pa.int64(),
    float: pa.float64(),
    bool: pa.bool_(),
    bytes: pa.binary(),
}


def arrow_type(annotation: Any) -> pa.DataType:
    """The Arrow type of one record annotation: scalars, `X | None`, `list[X]`, nested `TypedDict`s and
    `Annotated[list[float], FLOAT32]`."""
    if get_origin(annotation) is Annotated:
        inner, *marks = get_args(annotation)
        return pa.list_(pa.float32()) if FLOAT32 in marks else arrow_type(inner)
    if get_origin(annotation) in (Union, UnionType):
        (inner,) = [a for a in get_args(annotation) if a is not type(None)]
        return arrow_type(inner)
    if get_origin(annotation) is list:
        return pa.list_(arrow_type(get_args(annotation)[0]))
    if is_typeddict(annotation):
        return pa.struct(list(fields(annotation)))
    return _SCALARS[annotation]


def fields(typed: Any, leave_out: tuple[str, ...] = ()) -> Iterator[tuple[str, pa.DataType]]:
    """(name, Arrow type) of each field a `TypedDict` declares, in its order, but those in `leave_out`."""
    for name, annotation in get_type_hints(typed, include_extras=True).items():
        if name not in leave_out:
            yield name, arrow_type(annotation)
