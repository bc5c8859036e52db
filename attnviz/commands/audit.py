"""`attnviz audit`: explain every image with the batch lanes (resumably), then analyse and write the report."""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import BinaryIO, TextIO

from attnviz.audit.records import PARQUET, RECORDS, AuditRecord, Journal, read_records
from attnviz.batch.options import RunOptions
from attnviz.batch.plan import Item
from attnviz.errors import InputError, UsageError
from attnviz.io.inputs import AUDIT_JOURNAL, AUDIT_SETTINGS
from attnviz.io.outputs import write_bytes
from attnviz.record import error_record

#: The run's own records while it is under way (an interrupted audit resumes from them), and the options its maps
#: depend on, as the audit that made them had them (a resumed audit must match them); folder scans skip both.
JOURNAL, SETTINGS = AUDIT_JOURNAL, AUDIT_SETTINGS
OVERLAYS = "overlays"
MAP_OPTIONS = ("mode", "encoder", "weights", "labels", "layer", "head", "query", "size", "classify_size")


@dataclass(frozen=True)
class AuditOptions:
    out_dir: str = "audit"
    source: str | None = None  # --from: records of an earlier audit or a Ray run; no network runs
    run: RunOptions = field(default_factory=RunOptions)
    command: str = ""
    engine: str = "local"  # or "ray": Ray Data actors explain the images (attnviz.ray), the driver analyses
    ray_address: str | None = None


def audit(inputs: list[str], options: AuditOptions, stdin: BinaryIO | None = None, stderr: TextIO | None = None) -> int:
    """Returns the exit status: 1 when some input failed (its error is in the report), else 0."""
    stderr = stderr or sys.stderr
    from attnviz.audit.report import build_audit

    out = Path(options.out_dir)
    if out.exists() and not out.is_dir():
        raise UsageError(f"-o {out}: is a file; an audit writes a folder")
    meta: dict[str, object] = {
        "command": options.command,
        "created": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
    }

    def say(text: str) -> None:
        if not options.run.quiet:
            stderr.write(f"attnviz: {text}\n")

    if options.source is not None:
        if inputs:
            raise UsageError("give either INPUTs to explain or --from RECORDS, not both")
        source, here = Path(options.source).resolve(), out.resolve()
        in_place = source in (here, here / RECORDS, here / PARQUET)
        if (out / RECORDS).is_file() and not in_place and not options.run.overwrite:
            raise UsageError(f"-o {out}: holds another audit; --overwrite replaces it, or name a new folder")
        records, errors = read_records(options.source, compact=True)
        if not records and not errors:
            raise InputError(
                f"{options.source}: holds no records to analyse (an audit's records.jsonl, or the .parquet or "
                ".jsonl files of `run --engine ray`: each line an image's map with its weights, not skipped)"
            )
        status = 1 if errors else 0
    else:
        if not inputs:
            raise UsageError("nothing to audit: give image files or folders, or --from RECORDS")
        records, errors, status = explain_all(inputs, options, out, stdin, stderr)
        if status == 130:  # interrupted: the journal keeps what was done, the next audit resumes from it
            return status
    if records:
        first = records[0]
        meta.update(encoder=first.get("encoder"), mode=first.get("mode"))
    report = build_audit(out, records, errors, meta, colormap=options.run.colormap, alpha=options.run.alpha, say=say)
    (out / JOURNAL).unlink(missing_ok=True)  # everything it held is in records.jsonl now
    say(f"{len(records)} images analysed, {len(errors)} failed: {report}")
    return status


def explain_all(
    inputs: list[str], options: AuditOptions, out: Path, stdin: BinaryIO | None, stderr: TextIO
) -> tuple[list[AuditRecord], list[AuditRecord], int]:
    """Every input's record with its weights. Outputs already written by an earlier audit of the same folder are
    kept, with their records; an output without a record (cut off between the two) is explained again."""
    out.mkdir(parents=True, exist_ok=True)
    fresh = options.run.overwrite
    _same_settings(out, options.run, fresh)
    known = {} if fresh else _earlier_records(out)
    run = replace(
        options.run, output=str(out / OVERLAYS), record_weights=True, skip_existing=not fresh, save_scores=False
    )
    drain = _engine(options, run, stderr)
    with Journal(out / JOURNAL) as journal:

        def keep(item: Item) -> None:
            journal.add(
                item.record if item.error is None and item.record else error_record(item.job.input, item.error or "")
            )

        status = drain(inputs, stdin if stdin is not None else sys.stdin.buffer, keep, run)
        lost = [str(r["input"]) for r in journal.rows if r.get("skipped") and str(r["input"]) not in known]
        if lost and status != 130:  # outputs without records (cut off between the two): explained again
            status = max(status, drain(lost, None, keep, replace(run, skip_existing=False, overwrite=True)))
        rows = list(journal.rows)
    done: dict[str, AuditRecord] = {}
    errors: list[AuditRecord] = []
    for row in rows:
        name = str(row.get("input"))
        if row.get("error"):
            errors.append({"input": name, "error": row["error"]})
        elif row.get("skipped"):
            if name in known:
                done.setdefault(name, known[name])
        else:
            done[name] = row
    return list(done.values()), errors, status


#: Explain `inputs` (or read paths from the stream) with these options, handing each finished input to `keep`;
#: returns the exit status.
Drain = Callable[[list[str], BinaryIO | None, Callable[[Item], None], RunOptions], int]


def _engine(options: AuditOptions, run: RunOptions, stderr: TextIO) -> Drain:
    """The audit's engine for both of its passes: the local lanes, with the encoder loaded once; or Ray Data actors
    (on a local Ray started for each pass that has work, or on `--ray-address`'s cluster)."""
    if options.engine != "ray":
        from attnviz.batch.lanes import Lanes
        from attnviz.batch.runner import Runner

        lanes = Lanes(run)

        def local(inputs: list[str], stdin: BinaryIO | None, keep: Callable[[Item], None], run: RunOptions) -> int:
            return Runner(run, stderr, lanes).drain(inputs, stdin, keep)

        return local
    from attnviz.batch.writer import Writer
    from attnviz.ray.engine import drain

    def on_ray(inputs: list[str], stdin: BinaryIO | None, keep: Callable[[Item], None], run: RunOptions) -> int:
        return drain(inputs, run, Writer(run, stderr), lambda item, _: keep(item), options.ray_address, stdin)

    return on_ray


def _same_settings(out: Path, run: RunOptions, fresh: bool) -> None:
    """Refuses to resume an audit under options that draw other maps (`--size 896`, then the default): its records
    would mix two kinds of map. An option left to its default on either side (a mode the head decides, the trained
    classify size) is not compared. Records the options for the next resume; an audit made before they were kept
    is resumed unchecked, and gets none (its options are not known)."""
    now = {name: _setting(name, value) for name in MAP_OPTIONS if (value := getattr(run, name)) is not None}
    path = out / SETTINGS
    if not fresh and not path.is_file() and any((out / name).is_file() for name in (RECORDS, JOURNAL)):
        return
    if not fresh and path.is_file():
        try:
            before = json.loads(path.read_text())
        except (OSError, ValueError):
            before = {}
        changed = sorted(n for n in MAP_OPTIONS if n in before and n in now and before[n] != now[n])
        if changed:
            was = ", ".join(f"{name} {before[name]!r} (now {now[name]!r})" for name in changed)
            raise UsageError(f"-o {out}: was audited with {was}; give the same options to resume it, or --overwrite")
        now = {**before, **now}
    write_bytes(path, json.dumps(now, sort_keys=True).encode(), overwrite=True)


def _setting(name: str, value: object) -> object:
    """An option as compared: a file by its absolute path, an enum by its value."""
    if name in ("weights", "labels", "head"):
        return os.path.abspath(str(value))
    return getattr(value, "value", value)


def _earlier_records(out: Path) -> dict[str, AuditRecord]:
    """Records of an earlier audit of this folder, from its records.jsonl and its journal if it was interrupted."""
    known: dict[str, AuditRecord] = {}
    for name in (RECORDS, JOURNAL):
        if (out / name).is_file():
            records, _ = read_records(out / name, compact=True)
            known.update({str(r["input"]): r for r in records})
    return known
