"""`attnviz audit --from` end to end on N synthetic records: wall time, peak memory, and how fast the page opens.

The records are `run --json` lines as an audit writes them (`weights` on a 16 x 16 grid, rounded to 7 decimals as
the local engine rounds them), with scripts/audit_scale.py's synthetic maps: 10 classes, in each objects wandering
over the picture, 10% a corner tag, 10% a strip along the bottom edge. Their photos do not exist, so the audit
draws no thumbnails and no strategy pictures (its cost is the records'). Each scale runs `attnviz audit --from
RECORDS -o OUT -q` in a fresh process, whose own peak resident set it reports (`OWN_PEAK`); then report.html is opened
from file:// in headless Chromium (scripts/report_scale.py), timing the page built and every record in.

    python scripts/audit_from_scale.py /tmp/afs 100000 1000000 [--keep]

FOLDER keeps records-N.jsonl for the next run (2.3 GB at a million); the audits are removed unless --keep.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
from audit_scale import synthetic
from report_scale import open_report

ROOT = Path(__file__).resolve().parents[1]
CHUNK = 20_000


def write_records(path: Path, n: int, classes: int = 10, seed: int = 0) -> None:
    """N records, one JSON line each, written a chunk at a time (the maps of a million are 1 GB)."""
    maps, cls, _ = synthetic(n, classes, seed)
    rng = np.random.default_rng(seed + 1)
    prob = rng.uniform(0.2, 1.0, n)
    part = path.with_suffix(".part")
    with part.open("w", encoding="utf-8") as out:
        for start in range(0, n, CHUNK):
            weights = np.round(maps[start : start + CHUNK].reshape(-1, 256).astype(np.float64), 7).tolist()
            lines = []
            for k, row in enumerate(weights):
                i = start + k
                c, p = int(cls[i]), round(float(prob[i]), 6)
                peak = int(np.argmax(maps[i]))
                target = {"index": c, "label": f"class {c}", "prob": p}
                record = {
                    "input": f"/nonexistent/photos/class-{c}/{i:07d}.jpg",
                    "output": f"/nonexistent/audit/overlays/class-{c}/{i:07d}.attn-concat.png",
                    "mode": "concat",
                    "encoder": "efficientnet_lite0",
                    "size": [448, 448],
                    "classify_size": [224, 224],
                    "grid": [16, 16],
                    "target": target,
                    "topk": [target, {"index": (c + 1) % classes, "label": f"class {(c + 1) % classes}", "prob": 0.0}],
                    "peak": [(peak % 16) * 28 + 14, (peak // 16) * 28 + 14],
                    "weights": row,
                }
                lines.append(json.dumps(record, separators=(",", ":")))
            out.write("\n".join(lines) + "\n")
    part.replace(path)


#: What the audit says as it goes (on stderr), and the stage each line ends.
STAGES = {"analysing": "read_s", "drawing": "analyse_s", "writing": "pictures_s", "images,": "write_s"}


#: `python -c OWN_PEAK PEAK-FILE ARGS...` runs `attnviz ARGS` in that process, then writes its own peak resident set
#: (VmHWM, KiB) to PEAK-FILE. Not `wait4`'s ru_maxrss: Linux carries the parent's high-water mark across fork and exec
#: into the child's (a pytest-xdist worker that has just run the sweep's giants is at 16 GB).
OWN_PEAK = """
import atexit, runpy, sys
out = sys.argv.pop(1)
def peak():
    with open("/proc/self/status") as status:
        kib = next(line for line in status if line.startswith("VmHWM")).split()[1]
    with open(out, "w") as file:
        file.write(kib)
atexit.register(peak)
sys.argv[0] = "attnviz"
runpy.run_module("attnviz.cli", run_name="__main__")
"""


def audit(records: Path, out: Path) -> dict[str, object]:
    """`attnviz audit --from` in a fresh process: its wall time, the time of each stage (from what it says on
    stderr), and its own peak resident set (`OWN_PEAK`)."""
    shutil.rmtree(out, ignore_errors=True)
    peak = out.with_name(out.name + ".peak-kib")
    argv = [sys.executable, "-c", OWN_PEAK, str(peak), "audit", "--from", str(records), "-o", str(out)]
    started = time.perf_counter()
    proc = subprocess.Popen(argv, stderr=subprocess.PIPE, text=True)
    result: dict[str, object] = {}
    said, last = [], started
    assert proc.stderr is not None
    for line in proc.stderr:
        said.append(line)
        stage = next((name for word, name in STAGES.items() if word in line.split()[:4]), None)
        if stage:
            now = time.perf_counter()
            result[stage] = round(now - last, 1)
            last = now
    status = proc.wait()
    seconds = time.perf_counter() - started
    if status != 0:
        raise SystemExit(f"audit failed: {''.join(said)}")
    peak_kib = int(peak.read_text())
    peak.unlink()
    return {"audit_s": round(seconds, 1), "peak_rss_mb": round(peak_kib / 1024), **result}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("folder", type=Path)
    parser.add_argument("sizes", nargs="+", type=int)
    parser.add_argument("--keep", action="store_true", help="keep the audits (GBs at 1M); the records are kept anyway")
    parser.add_argument("--no-browser", action="store_true", help="skip opening the report")
    args = parser.parse_args()
    args.folder.mkdir(parents=True, exist_ok=True)
    for n in args.sizes:
        records = args.folder / f"records-{n}.jsonl"
        started = time.perf_counter()
        if not records.is_file():
            write_records(records, n)
        made = time.perf_counter() - started
        result: dict[str, object] = {"n": n, "records_mb": round(records.stat().st_size / 2**20), "made_s": round(made)}
        out = args.folder / f"audit-{n}"
        result.update(audit(records, out))
        if not args.no_browser:
            result.update(open_report(out / "report.html"))
        result["parts"] = len(list((out / "data").glob("part-*.js"))) if (out / "data").is_dir() else 0
        print(json.dumps(result), flush=True)
        if not args.keep:
            shutil.rmtree(out, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
