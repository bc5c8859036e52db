"""The report file itself, without a browser: one self-contained HTML file, its data safe inside a script element.

What the page does with the data is tested in a real browser (`test_report_page.py`)."""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

import numpy as np

from attnviz.audit import page

HOSTILE = "</script><!--<script>alert(1)</script> & <b>"


def data_text(html: str) -> str:
    """The text of the data element, as the HTML parser sees it: up to the first `</script>`."""
    match = re.search(r'<script type="application/json" id="data">(.*?)</script>', html, re.S)
    assert match
    return match.group(1)


def embedded(html: str) -> object:
    return json.loads(data_text(html))


def test_the_report_is_written_whole_into_its_folder_and_replaced_on_a_rerun(tmp_path: Path) -> None:
    out = tmp_path / "audit" / "deeper"
    path = page.write_report(out, {"title": "first", "records": []})
    assert path == out / "report.html" and "<title>first</title>" in path.read_text(encoding="utf-8")
    page.write_report(out, {"title": "second"})
    assert "<title>second</title>" in path.read_text(encoding="utf-8")
    assert sorted(p.name for p in out.iterdir()) == ["report.html"]  # no temporary file left behind


def test_data_cannot_close_its_script_element_and_reads_back_unchanged() -> None:
    data = {"title": HOSTILE, "classes": [{"label": HOSTILE, "count": 1}], "note": "\u2028 line separator"}
    html = page.render_report(data)
    assert "<" not in data_text(html)  # so no `</script>` or `<!--` either
    assert embedded(html) == data
    assert "<title>&lt;/script&gt;&lt;!--&lt;script&gt;alert(1)&lt;/script&gt; &amp; &lt;b&gt;</title>" in html


def test_nan_and_numpy_values_become_plain_json() -> None:
    data = {"stats": {"a": math.nan, "b": math.inf, "c": np.float32(0.5), "d": np.int64(3)}, "xy": np.array([1.5, 2])}
    assert embedded(page.render_report(data)) == {"stats": {"a": None, "b": None, "c": 0.5, "d": 3}, "xy": [1.5, 2.0]}


def test_everything_is_inlined_and_nothing_points_outside() -> None:
    html = page.render_report({"records": []})
    assert "/*@" not in html  # every slot filled
    assert not re.search(r"https?://|<link|@import|\ssrc=", html)
    assets = Path(page.__file__).parent / "assets"
    shipped = {p.name for p in assets.iterdir()}
    assert shipped == {"report.html", "report.css", *page.SCRIPTS}  # each asset is used, each used one exists
    assert all(p.suffix in {".html", ".css", ".js"} for p in assets.iterdir())  # pyproject's package-data globs
