"""`attnviz audit --engine ray`: the photos explained by Ray Data actors give the local engine's files, records and
strategies.

The Ray audit runs in a process of its own, on a Ray it starts as test_ray's cluster does (token auth, the tiny
encoder registered in every worker): in this process, a second cluster after test_ray's (or before it) would be
refused, as Ray keeps the first cluster's token."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any

import pytest
from test_ray import _attnvizs_own_ray, _photos

from helpers import TESTS, TINY, run


def _records(folder: Path) -> list[dict[str, Any]]:
    text = (folder / "records.jsonl").read_text().replace(str(folder), "OUT")
    return [json.loads(line) for line in text.splitlines()]


def _page(folder: Path) -> dict[str, Any]:
    html = (folder / "report.html").read_text()
    found = re.search(r'id="data">(.*?)</script>', html, re.S)
    assert found
    data: dict[str, Any] = json.loads(found.group(1).replace(str(folder), "OUT"))
    return data


def _close(a: object, b: object, tolerance: float = 1e-5) -> bool:
    if isinstance(a, float) or isinstance(b, float):
        return isinstance(a, int | float) and isinstance(b, int | float) and abs(a - b) <= tolerance
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_close(a[k], b[k], tolerance) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(_close(x, y, tolerance) for x, y in zip(a, b, strict=True))
    return a == b


def _files(folder: Path) -> set[str]:
    return {str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file()}


def on_ray(photos: Path, out: Path) -> str:
    """The Ray audit, twice (the second resumes): a Ray started as test_ray's cluster, then the command line."""
    return (
        "from attnviz.cli.process import ray_token\n"
        "ray_token()\n"
        "import ray, test_ray\n"
        "ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False,\n"
        "         runtime_env={'worker_process_setup_hook': test_ray._register_tiny})\n"
        "from attnviz.cli import main\n"
        f"args = ['audit', {str(photos)!r}, '-o', {str(out)!r}, *helpers.TINY, '--engine', 'ray']\n"
        "print(main([*args, '--workers', '2']), main(args))\n"
    )


@pytest.mark.slow
@pytest.mark.ray
def test_an_audit_on_ray_gives_the_local_engines_records_and_strategies(capsysbinary, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    photos = _photos(tmp_path / "photos", 14)
    (photos / "broken.jpg").write_bytes(b"not a picture")
    local, ray = tmp_path / "local", tmp_path / "ray"
    code, _, err = run(capsysbinary, "audit", photos, "-o", local, *TINY)
    assert code == 1 and "broken.jpg" in err, err
    done = _attnvizs_own_ray(tmp_path, on_ray(photos, ray), PYTHONPATH=os.pathsep.join([str(TESTS), str(TESTS.parent)]))
    assert done.stdout.split() == ["1", "1"], done.stderr  # broken.jpg failed, in both
    assert "14 written, 0 skipped, 1 failed" in done.stderr and "0 written, 14 skipped, 1 failed" in done.stderr
    assert _files(ray) == _files(local)  # overlays, thumbnails, strategy pictures, records, report
    mine, theirs = _records(local), _records(ray)
    assert [list(r) for r in theirs] == [list(r) for r in mine]  # the same fields, in the same order
    for a, b in zip(mine, theirs, strict=True):
        for key in a:  # the same values; floats to within what the actors' single torch thread changes
            assert _close(b[key], a[key]), (key, a["input"], a[key], b[key])
    page, again = _page(local), _page(ray)
    assert again["classes"] == page["classes"]  # every class's strategies: sizes, members, ranks, words
    assert max(c["count"] for c in page["classes"]) >= 8  # one class at least is clustered
    assert again["errors"] == page["errors"] and len(page["errors"]) == 1
