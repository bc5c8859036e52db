"""The one record type of a run: what `run --json` prints, what Ray returns as Arrow rows, what the audit reads.

A field is declared here and nowhere else: the JSON line is a `Record` as built, the Arrow schema is derived from
these annotations (`attnviz.ray.records.SCHEMA`), and the audit reads `Record`s back (`attnviz.audit.records`).
Fields are optional (`total=False`): an error record has `input` and `error`, a skipped one `input`, `output` and
`skipped`. The declaration order is the order of the JSON line's keys and of the Arrow columns.
"""

from __future__ import annotations

from typing import Annotated, TypedDict

#: An `Annotated` marker for a float list stored as float32 in Arrow (the grid weights: compact, exact enough).
FLOAT32 = "float32"


class PredictionRecord(TypedDict):
    index: int
    label: str
    prob: float


class MapRecord(TypedDict, total=False):
    """One map of an input with several (`--topk`, several `--target`)."""

    target: PredictionRecord | None  # null: a backbone's class-free map
    output: str
    peak: list[int]  # (x, y) in the input's pixels
    scores: str  # the `.npy` beside the overlay (--save-scores)


class Record(TypedDict, total=False):
    """One input's outcome."""

    input: str
    output: str
    mode: str
    encoder: str
    size: list[int]  # (width, height) of the map's pass
    classify_size: list[int]  # (width, height) of the recognition pass
    grid: list[int]  # (rows, cols)
    target: PredictionRecord | None  # the first map's class; null for a backbone
    topk: list[PredictionRecord]
    peak: list[int]
    scores: str
    maps: list[MapRecord]  # every map, when there are several
    frames: int  # an animated or multi-page input: how many frames (the first is drawn)
    frame: int
    skipped: bool  # --skip-existing: its maps exist
    error: str
    weights: Annotated[list[float], FLOAT32]  # the grid's weights, row-major (--record-weights; audits; Ray)
    overlays: list[bytes]  # encoded maps (Ray's `overlays=True`); never in a JSON line


#: Fields that a JSON line never carries: bytes (for whoever asked for them in Ray).
NOT_IN_JSON = ("overlays",)


def error_record(name: str, message: str) -> Record:
    return {"input": name, "error": message}
