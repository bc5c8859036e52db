"""Synthetic audit data for the report's tests and for trying the page by hand: small real image files (Pillow)
and records shaped like the audit's, with a known answer for every filter."""

from __future__ import annotations

import math
import random
from pathlib import Path

from PIL import Image

STATS = [
    {"key": "border", "label": "border mass", "help": "share of the map's mass in the outer 10% band"},
    {"key": "entropy", "label": "spread", "help": "entropy of the map, 0 (one cell) to 1 (uniform)"},
    {"key": "distance", "label": "distance", "help": "distance from the map to its strategy's centre"},
    {"key": "peak_x", "label": "peak x", "help": "where the peak falls, 0 left to 1 right"},
    {"key": "peak_y", "label": "peak y", "help": "where the peak falls, 0 top to 1 bottom"},
]
FLAGS = [
    {"key": "border_peak", "label": "peak at border", "help": "the peak lies in the outer band"},
    {"key": "small_strategy", "label": "small strategy", "help": "in a small strategy of its class"},
    {"key": "low_prob", "label": "low probability", "help": "p below 0.3"},
    {"key": "outlier", "label": "outlier", "help": "far from its strategy's centre"},
]
#: (index, label, [(strategy size, small?)...]); an empty list: too few images to cluster. The last label must render
#: as text, not markup.
CLASSES = [
    (285, "Egyptian cat", [(20, False), (12, False), (4, True)]),
    (967, "espresso", [(14, False), (8, False)]),
    (7, "</script><b>bold</b> & co", []),
]
UNCLUSTERED = 3  # images in the last class


def _picture(path: Path, size: tuple[int, int], colour: tuple[int, int, int]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    picture = Image.new("RGB", size, colour)
    picture.paste((255, 255, 255), (size[0] // 4, size[1] // 4, size[0] // 2, size[1] // 2))
    picture.save(path)


def make_data(out_dir: Path, scale: int = 1, files: int | None = None, seed: int = 0) -> dict[str, object]:
    """Audit data for `sum(sizes) * scale + UNCLUSTERED` images, with their image files written under `out_dir`.

    `files` caps how many distinct picture files are drawn (records then share them), so ten thousand records
    stay cheap to make.
    """
    rng = random.Random(seed)
    classes: list[dict[str, object]] = []
    records: list[dict[str, object]] = []
    for index, label, sizes in CLASSES:
        strategies = []
        groups = [(s_id, size * scale, small) for s_id, (size, small) in enumerate(sizes)] or [(-1, UNCLUSTERED, False)]
        total = sum(size for _, size, _ in groups)
        for s_id, size, small in groups:
            first = len(records)
            for _ in range(size):
                records.append(_record(len(records), index, label, s_id, small, rng))
            if s_id >= 0:
                exemplars = [records[first + k]["id"] for k in range(min(4, size))]
                strategies.append(
                    {
                        "id": s_id,
                        "size": size,
                        "share": size / total,
                        "small": small,
                        "rank": 0 if small else s_id + 1,
                        "suspect": small,  # the small one here stays put: the first card of its class
                        "why": f"evidence fixed in the lower-right corner in {size} of {size} images"
                        if small
                        else f"evidence moves from image to image (strategy {s_id})",
                        "mean_map": f"strategies/{index}-{s_id}.png",
                        "exemplars": exemplars,
                    }
                )
        strategies.sort(key=lambda s: s["rank"])  # type: ignore[arg-type,return-value]
        classes.append(
            {"index": index, "label": label, "count": total, "clustered": bool(sizes), "strategies": strategies}
        )
    _write_files(out_dir, classes, records, files)
    return {
        "title": "attnviz audit",
        "encoder": "efficientnet_lite0",
        "mode": "concat",
        "command": "attnviz audit photos/ -o audit",
        "created": "2026-11-26T13:00:00Z",
        "stats": STATS,
        "flags": FLAGS,
        "classes": classes,
        "records": records,
        "errors": [{"input": "photos/broken.jpg", "error": "photos/broken.jpg: cannot identify image file"}],
    }


def _record(i: int, index: int, label: str, cluster: int, small: bool, rng: random.Random) -> dict[str, object]:
    stats: dict[str, float] = {key["key"]: round(rng.random(), 4) for key in STATS}
    if i == 5:
        stats["entropy"] = math.nan  # a blank map's entropy: the page shows a blank, JSON gets null
    prob = round(rng.uniform(0.05, 0.99), 4)
    flags = [
        key
        for key, on in [
            ("border_peak", stats["border"] > 0.7),
            ("small_strategy", small),
            ("low_prob", prob < 0.3),
            ("outlier", stats["distance"] > 0.9),
        ]
        if on
    ]
    centre = (index % 5) * 3 + max(cluster, 0)
    image = "images/odd name #1%.jpg" if i == 1 else f"images/{i:06d}.jpg"  # the page must encode the URL
    return {
        "id": i,
        "input": f"photos/{label[:6].strip()}/img {i}#.jpg",
        "image": image,
        "thumb": f"thumbs/{i:06d}.jpg",
        "overlay": f"overlays/{i:06d}.attn-concat.png",
        "class": index,
        "label": label,
        "prob": prob,
        "cluster": cluster,
        "xy": [centre + rng.gauss(0, 0.6), rng.gauss(centre % 4, 0.6)],
        "stats": stats,
        "flags": flags,
    }


def _write_files(
    out_dir: Path, classes: list[dict[str, object]], records: list[dict[str, object]], files: int | None
) -> None:
    for cls in classes:
        for strategy in cls["strategies"]:  # type: ignore[attr-defined]
            _picture(out_dir / strategy["mean_map"], (64, 48), (200, 60, 40))
    for record in records:
        i = int(record["id"])  # type: ignore[call-overload]
        if files is not None and i >= files:
            for key in ("image", "thumb", "overlay"):
                record[key] = records[i % files][key]
            continue
        colour = (40 + (i * 37) % 200, 90, 160)
        _picture(out_dir / str(record["image"]), (80, 60), colour)
        _picture(out_dir / str(record["thumb"]), (48, 36), colour)
        _picture(out_dir / str(record["overlay"]), (80, 60), (250, 120, 30))
