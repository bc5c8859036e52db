"""`attnviz audit --from` at scale: compact records that write back the lines they were read from, and 100,000
synthetic records audited end to end in bounded memory, with a page that opens in Chromium in under 2 s
(`python scripts/audit_from_scale.py FOLDER 1000000` measures a million)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import tracemalloc
from pathlib import Path

import numpy as np
import pytest

from attnviz.audit.records import json_line, read_records

ROOT = Path(__file__).resolve().parents[1]


def write_records(path: Path, n: int, classes: int) -> None:
    """scripts/audit_from_scale.py's synthetic records (scripts/audit_scale.py's maps)."""
    sys.path.insert(0, str(ROOT / "scripts"))
    import audit_from_scale

    audit_from_scale.write_records(path, n, classes)


def test_compact_records_write_back_the_lines_they_were_read_from(tmp_path: Path) -> None:
    path = tmp_path / "records.jsonl"
    write_records(path, 2000, classes=2)  # as the local engine writes them: weights with 7 decimals
    lines = path.read_bytes().splitlines()
    tracemalloc.start()
    records, errors = read_records(path, compact=True)
    held, _ = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert not errors and len(records) == 2000
    assert [json_line(r) for r in records] == lines  # the same bytes: fields, order, every weight's digits
    assert held / len(records) < 3000  # bytes a record, 256 weights included (as plain dicts: about 13,000)


def test_a_ray_runs_float32_weights_come_back_whole(tmp_path: Path) -> None:
    pa = pytest.importorskip("pyarrow")
    pq = pytest.importorskip("pyarrow.parquet")
    weights = np.random.default_rng(0).random((3, 12)).astype(np.float32) / 7
    rows = [{"input": f"{i}.jpg", "grid": [3, 4], "target": None, "weights": w} for i, w in enumerate(weights)]
    target = pa.struct([("index", pa.int64()), ("label", pa.string()), ("prob", pa.float64())])
    columns = [("input", pa.string()), ("grid", pa.list_(pa.int64())), ("target", target)]
    schema = pa.schema([*columns, ("weights", pa.list_(pa.float32()))])
    pq.write_table(pa.Table.from_pylist(rows, schema=schema), tmp_path / "part-0.parquet")
    records, _ = read_records(tmp_path, compact=True)
    back = np.array([json.loads(json_line(r))["weights"] for r in records], dtype=np.float32)
    assert (back == weights).all() and all(json.loads(json_line(r))["target"] is None for r in records)


@pytest.mark.slow
def test_100k_records_audit_in_bounded_memory_into_a_page_that_opens_at_once(tmp_path: Path) -> None:
    """The whole of `audit --from` (read, analyse, write records.jsonl and .parquet, the paged report) in a fresh
    process. Read as plain dicts, 100,000 records took 1.9 GB before any analysis; compact, the whole audit peaks
    at about 1.5 GB, and a million at 6.1 GB (docs/audit.md)."""
    if not (shutil.which("chromium") and shutil.which("chromedriver")):
        pytest.skip("no chromium and chromedriver (apt-get install chromium chromium-driver)")
    from report_scale import open_report

    records = tmp_path / "records.jsonl"
    write_records(records, 100_000, classes=2)
    import audit_from_scale  # scripts/, on the path since write_records

    if not Path("/proc/self/status").is_file():
        pytest.skip("the peak is read from /proc/self/status (Linux)")
    peak = tmp_path / "peak-kib"
    argv = [
        sys.executable,
        "-c",
        audit_from_scale.OWN_PEAK,
        str(peak),
        "audit",
        "--from",
        str(records),
        "-o",
        str(tmp_path / "audit"),
    ]
    proc = subprocess.run([*argv, "-q"], stderr=subprocess.PIPE, check=False)
    assert proc.returncode == 0, proc.stderr.decode()
    peak_mb = int(peak.read_text()) / 1024
    assert peak_mb < 2048, peak_mb
    with (tmp_path / "audit" / "records.jsonl").open("rb") as lines:
        assert sum(1 for _ in lines) == 100_000
    opened = open_report(tmp_path / "audit" / "report.html")
    assert opened["shown"] == "100000 of 100000 images"
    built = opened["built_s"]
    assert isinstance(built, (int, float)) and built < 2, (
        opened
    )  # navigation start to the page built: cards, table, scatter
