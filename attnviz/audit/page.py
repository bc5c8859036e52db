"""The one-page audit report: a single `report.html` that opens from disk with no server and no network.

The page's HTML template, style sheet and scripts live in `assets/` as package data and are inlined, with the
data, into one file; images stay beside it in the audit folder and are referenced by relative paths. Everything
the page shows is computed by the caller (`data`, documented in `write_report`); the page only renders, filters
and sorts it, so `attnviz audit --from DIR` can re-render a report without running a network.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping, Sequence
from importlib import resources
from pathlib import Path

from attnviz.io.outputs import write_bytes

#: Scripts in the order they are inlined: each later one uses what the earlier ones define.
SCRIPTS = ("core.js", "table.js", "scatter.js", "viewer.js", "main.js")
#: A report of more images than this pages its records from script files beside it (`data/part-NNNN.js`, each
#: calling `attnvizPart([...])`): `<script src>` loads them from `file://`, where `fetch()` of a file is refused,
#: and the page opens on the classes and strategy cards before the records have arrived. An audit of 100,000 images
#: inline took 1.2 s to build its page, and 2.7 s on a busier machine; paged, a million took 0.16 s.
PAGE_RECORDS = 50_000
#: Records per part file.
PART_SIZE = 50_000
#: Placeholders in `report.html`, replaced in one pass so that text in the data can never be taken for one.
_SLOT = re.compile(r"/\*@(CSS|SCRIPTS|DATA|TITLE)@\*/")


def write_report(
    out_dir: Path, data: Mapping[str, object], page_records: int = PAGE_RECORDS, part_size: int = PART_SIZE
) -> Path:
    """Write out_dir/report.html (atomically: temp file + os.replace) and return its path.

    `data` is JSON-serialisable: title, encoder, mode, command, created, `stats` and `flags` (lists of
    {key, label, help}: the page builds its columns and filters from them), `classes` (each with its
    `strategies`), `records` (one per image: any sequence, which the parts take a slice at a time) and `errors`.
    Paths inside are relative to `out_dir`. Non-finite floats become `null` (JSON has no NaN) and the page shows
    them as blanks. A Mapping, not a dict, so that a dict whose values mypy infers narrower than `object` is
    accepted as it is.
    """
    out_dir = Path(out_dir)
    records = data.get("records")
    parts: list[str] = []
    if isinstance(records, Sequence) and not isinstance(records, (str, list)) and len(records) <= page_records:
        data = {**data, "records": list(records)}
    elif isinstance(records, Sequence) and not isinstance(records, str) and len(records) > page_records:
        for number, start in enumerate(range(0, len(records), part_size), 1):
            name = f"data/part-{number:04d}.js"
            text = "attnvizPart(" + embed_json(records[start : start + part_size]) + ");\n"
            write_bytes(out_dir / name, text.encode("utf-8"), overwrite=True)
            parts.append(name)
        shown = {e for c in _dicts(data.get("classes")) for s in _dicts(c.get("strategies")) for e in _ids(s)}
        inline = _with_ids(records, shown)  # the cards' pictures
        data = {**data, "records": inline, "parts": parts, "count": len(records)}
    for stale in sorted((out_dir / "data").glob("part-*.js")) if (out_dir / "data").is_dir() else []:
        if f"data/{stale.name}" not in parts:
            stale.unlink()
    path = out_dir / "report.html"
    write_bytes(path, render_report(data).encode("utf-8"), overwrite=True)
    return path


def _with_ids(records: Sequence[object], ids: set[object]) -> list[object]:
    """The records whose `id` is in `ids`, in order: looked up where a record's id is its position, as in an
    audit's, else found by going through them all."""
    at = sorted(i for i in ids if isinstance(i, int) and 0 <= i < len(records))
    found = [records[i] for i in at]
    if len(at) == len(ids) and all(isinstance(r, Mapping) and r.get("id") == i for i, r in zip(at, found, strict=True)):
        return found
    return [r for r in records if isinstance(r, Mapping) and r.get("id") in ids]


def _dicts(value: object) -> list[Mapping[str, object]]:
    return [item for item in value if isinstance(item, Mapping)] if isinstance(value, list) else []


def _ids(strategy: Mapping[str, object]) -> list[object]:
    exemplars = strategy.get("exemplars")
    return exemplars if isinstance(exemplars, list) else []


def render_report(data: Mapping[str, object]) -> str:
    """The report's whole text: the template with its style, scripts, title and data filled in."""
    slots = {
        "CSS": _asset("report.css"),
        "SCRIPTS": "\n".join(f"// ---- {name}\n{_asset(name)}" for name in SCRIPTS),
        "DATA": embed_json(data),
        "TITLE": _escape_html(str(data.get("title") or "attnviz audit")),
    }
    return _SLOT.sub(lambda match: slots[match.group(1)], _asset("report.html"))


def embed_json(data: object) -> str:
    """`data` as JSON that is safe inside `<script type="application/json">`.

    Every `<` is written `\\u003c` (which covers `</` in the contract: a label such as `</script>` or `<!--` can
    neither close the element nor switch the HTML parser's script state); JSON.parse reads it back unchanged.
    """
    text = json.dumps(_finite(data), ensure_ascii=False, allow_nan=False, separators=(",", ":"))
    return text.replace("<", "\\u003c").replace("\u2028", "\\u2028").replace("\u2029", "\\u2029")


def _finite(value: object) -> object:
    """A copy of `value` with NaN and infinities as None: a statistic of a blank map must not break the page.

    NumPy scalars and arrays (anything with `tolist`) become plain Python values first.
    """
    if hasattr(value, "tolist") and not isinstance(value, (str, bytes)):
        value = value.tolist()
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, Mapping):
        return {key: _finite(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(item) for item in value]
    return value


def _escape_html(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _asset(name: str) -> str:
    return (resources.files("attnviz.audit") / "assets" / name).read_text(encoding="utf-8")
