"""Why three planted cases miss issue 23's bar: what the audit's evidence holds, read from an audit of
`scripts/planted.py` (the case's folder: `audit/`, `shortcut.safetensors`, `labels.txt`).

For the class's images (shortcut photos against the others):
- `border`: the share of each map's mass on the outer two rings of cells, and how many images of each kind hold more
  than 20, 30, 40 and 50% there: whether any statistic of border mass could gather a frame's photos;
- `crop`: the class's probability after cropping `--crop` of each side off the photo and zooming back (the frame, a
  strip or a corner tag cut away): how many images of each kind lose the class, i.e. how many the mark decides by this
  probe, and how many others lose it too;
- `look`: in the class's strategy holding most shortcut photos, each member's peak cell as pixels (6 x 6 RGB), and
  its distance from the members' median: whether the look of the peak tells the mark from an object peaking there.

    python scripts/planted_limits.py /tmp/paired50/frame [--crop 0.06]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
from PIL import Image

LABEL = "animal"


def border_mass(record: dict[str, object]) -> float:
    rows, cols = (int(v) for v in record["grid"])  # type: ignore[attr-defined]
    weights = np.asarray(record["weights"], dtype=np.float64).reshape(rows, cols)  # (rows, cols)
    inner = weights[2:-2, 2:-2].sum()
    return float(1 - inner / max(weights.sum(), 1e-12))


def cropped(image: Image.Image, share: float) -> Image.Image:
    """`share` of each side cut away, the rest zoomed back to the photo's size."""
    w, h = image.size
    dx, dy = round(w * share), round(h * share)
    return image.crop((dx, dy, w - dx, h - dy)).resize((w, h), Image.Resampling.BILINEAR)


def peak_look(record: dict[str, object]) -> np.ndarray:
    rows, cols = (int(v) for v in record["grid"])  # type: ignore[attr-defined]
    i, j = divmod(int(np.argmax(np.asarray(record["weights"]))), cols)
    image = Image.open(str(record["input"])).convert("RGB")
    w, h = image.size
    box = (int(j * w / cols), int(i * h / rows), int(np.ceil((j + 1) * w / cols)), int(np.ceil((i + 1) * h / rows)))
    return np.asarray(image.crop(box).resize((6, 6), Image.Resampling.BOX), dtype=np.float64).ravel() / 255


def main() -> int:
    from attnviz.audit.analysis import analyse
    from attnviz.audit.records import read_records
    from attnviz.explainer import Explainer

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("case", type=Path, help="a case's folder of scripts/planted.py")
    parser.add_argument("--crop", type=float, default=0.06, help="share of each side cut away (default %(default)s)")
    args = parser.parse_args()
    records, _ = read_records(args.case / "audit")
    members = [i for i, r in enumerate(records) if (target := r.get("target")) and target["label"] == LABEL]
    marked = {i: Path(str(records[i].get("input"))).name.startswith("tagged") for i in members}
    kinds = (("shortcut photos", True), ("others", False))

    mass = {i: border_mass(dict(records[i])) for i in members}
    print(f"border: share of the map's mass on the outer two rings of cells, class '{LABEL}'")
    for name, kind in kinds:
        values = np.array([mass[i] for i in members if marked[i] == kind])
        over = ", ".join(f">{t:.0%}: {int((values > t).sum())}" for t in (0.2, 0.3, 0.4, 0.5))
        print(f"  {name} ({len(values)}): median {np.median(values):.3f}; {over}")

    labels = (args.case / "labels.txt").read_text().split()
    explainer = Explainer(weights=str(args.case / "shortcut.safetensors"), labels=labels, device="cpu")
    lost = {True: 0, False: 0}
    for i in members:
        image = Image.open(str(records[i].get("input"))).convert("RGB")
        top = explainer.explain(cropped(image, args.crop)).topk[0].label
        lost[marked[i]] += top != LABEL
    print(f"crop: {args.crop:.0%} of each side cut away, the photo zoomed back; images that lose '{LABEL}'")
    for name, kind in kinds:
        print(f"  {name}: {lost[kind]} of {sum(marked[i] == kind for i in members)}")

    found = next(f for f in analyse(records) if f.label == LABEL)
    best = max(found.strategies, key=lambda s: sum(marked.get(i, False) for i in s.members))
    looks = np.array([peak_look(dict(records[i])) for i in best.members])  # (members, 108)
    distance = np.sqrt(((looks - np.median(looks, axis=0)) ** 2).mean(axis=1))  # (members,)
    print(f"look: the peak cell's pixels in the strategy holding most shortcut photos ({best.size} images: {best.why})")
    for name, kind in kinds:
        near = [float(d) for d, i in zip(distance, best.members, strict=True) if marked.get(i) == kind]
        if near:
            print(f"  {name} ({len(near)}): distance from the median look {min(near):.2f} to {max(near):.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
