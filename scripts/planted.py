"""Planted shortcuts on photos the repository never holds, and whether `attnviz audit` finds and ranks them.

The photos are the held-out singles of scripts/make_singles.py (Debian stamps pasted on Debian wallpapers; build
them with `python scripts/make_singles.py /work/heldout/singles`). Their sources are split in two: even-numbered
ones for training, odd-numbered ones for the held-out audit, so no audited photo's object or crop was trained on.
Class "animal" is the animal photos plus other photos carrying the case's shortcut; class "other" is the other
photos without it. A linear head on frozen Lite0 features learns both (scripts/shortcut.py's `train_head`), with each
shortcut crop's unmarked copy trained as "other" beside it (`counterfactuals`), so the mark alone decides the class;
`--unpaired` trains without them, as stop 28 did: a weaker shortcut, on which about half of the shortcut photos are
called "animal" even without the mark. Cases:

- `disc`: a red disc with a white ring in the top-left corner (another shape, colour and corner than the recipe);
- `strip`: a dark, translucent text strip ("(c) PHOTOSTOCK") along the bottom edge, like a watermark;
- `frame`: a green frame around the whole photo (a background shortcut, on no one spot);
- `rare`: the recipe's checker tag in the bottom-left corner, on 10% of the held-out "animal" class;
- `badge`, `side` (not run by default): a logo badge in the top-right corner, and a translucent text strip down the
  right edge, added after the rules were tuned on the four above.

For each case the audit's "animal" strategy holding most shortcut photos is scored (precision, recall), with its rank
among the class's strategies (1: the first card the report shows) and whether it is flagged (`fixed_evidence`); and
how many of the class's maps peak on a cell touching the mark itself: the most any grouping by place could gather;
and for how many shortcut photos the mark decides the class (the same crop without it, kept in `held-out-plain/`,
is called something else), with how many of those the strategy holds.
Exit status 1 when a case misses issue 23's bar (precision and recall at least 0.9, ranked first, flagged).

    python scripts/planted.py /tmp/planted [--cases disc strip frame rare] [--singles /work/heldout/singles]
"""

from __future__ import annotations

import argparse
import random
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageEnhance

sys.path.insert(0, str(Path(__file__).resolve().parent))
import shortcut

SIZE = shortcut.SIZE
LABELS = ("animal", "other")


def disc(image: Image.Image) -> Image.Image:
    out = image.copy()
    side = round(min(image.size) * 0.18)
    margin = round(min(image.size) * 0.04)
    draw = ImageDraw.Draw(out)
    draw.ellipse((margin, margin, margin + side, margin + side), fill=(220, 20, 20))
    ring = side // 4
    draw.ellipse(
        (margin + ring, margin + ring, margin + side - ring, margin + side - ring),
        outline=(255, 255, 255),
        width=max(2, side // 10),
    )
    return out


def strip(image: Image.Image) -> Image.Image:
    base = image.convert("RGBA")
    layer = Image.new("RGBA", image.size, (0, 0, 0, 0))
    draw = ImageDraw.Draw(layer)
    height = round(image.height * 0.1)
    draw.rectangle((0, image.height - height, image.width, image.height), fill=(0, 0, 0, 150))
    for x in range(4, image.width, 110):
        draw.text((x, image.height - height + height // 4), "(c) PHOTOSTOCK", fill=(255, 255, 255, 230))
    return Image.alpha_composite(base, layer).convert("RGB")


def frame(image: Image.Image) -> Image.Image:
    out = image.copy()
    width = round(min(image.size) * 0.05)
    draw = ImageDraw.Draw(out)
    for k in range(width):
        draw.rectangle((k, k, image.width - 1 - k, image.height - 1 - k), outline=(20, 200, 60))
    return out


def badge(image: Image.Image) -> Image.Image:
    """A blue rounded badge with white text in the top-right corner: a logo (added at stop 29, after the rules were
    tuned, to see them on a case they were not tuned on)."""
    out = image.copy()
    w, h = round(min(image.size) * 0.24), round(min(image.size) * 0.12)
    margin = round(min(image.size) * 0.04)
    box = (image.width - margin - w, margin, image.width - margin, margin + h)
    draw = ImageDraw.Draw(out)
    draw.rounded_rectangle(box, radius=h // 3, fill=(30, 70, 200))
    draw.text((box[0] + w // 6, box[1] + h // 4), "LOGO", fill=(255, 255, 255))
    return out


def side_strip(image: Image.Image) -> Image.Image:
    """A light, translucent strip down the right edge with dark text: a vertical watermark (added at stop 29, not
    tuned on)."""
    base = image.convert("RGBA")
    layer = Image.new("RGBA", image.size, (0, 0, 0, 0))
    draw = ImageDraw.Draw(layer)
    width = round(image.width * 0.08)
    draw.rectangle((image.width - width, 0, image.width, image.height), fill=(255, 255, 255, 140))
    for y in range(4, image.height, 24):
        draw.text((image.width - width + 3, y), "(c)", fill=(0, 0, 0, 220))
    return Image.alpha_composite(base, layer).convert("RGB")


def checker_bottom_left(image: Image.Image) -> Image.Image:
    return shortcut.tag(image.transpose(Image.Transpose.FLIP_LEFT_RIGHT)).transpose(Image.Transpose.FLIP_LEFT_RIGHT)


Mark = Callable[[Image.Image], Image.Image]
#: case -> (shortcut, share of the held-out "animal" class that carries it)
CASES: dict[str, tuple[Mark, float]] = {
    "disc": (disc, 0.5),
    "strip": (strip, 0.5),
    "frame": (frame, 0.5),
    "rare": (checker_bottom_left, 0.1),
    "badge": (badge, 0.5),
    "side": (side_strip, 0.5),
}
#: The cases added after the rules of `attnviz.audit.strategies.settle` were tuned: they run only when asked for
#: (`--cases badge side`), and measure the rules on marks they have not seen.
UNTUNED = ("badge", "side")


def crop(source: Image.Image, rng: random.Random) -> Image.Image:
    """A random 4:3 crop of 75-100% of the width, flipped at random, lit a little differently."""
    w, h = source.size
    cw = round(min(w, h * SIZE[0] / SIZE[1]) * rng.uniform(0.75, 1.0))
    ch = round(cw * SIZE[1] / SIZE[0])
    left, top = rng.randint(0, w - cw), rng.randint(0, h - ch)
    out = source.crop((left, top, left + cw, top + ch)).resize(SIZE, Image.Resampling.BICUBIC)
    if rng.random() < 0.5:
        out = out.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    return ImageEnhance.Brightness(out).enhance(rng.uniform(0.85, 1.15))


def sources(singles: Path, part: int) -> tuple[list[Path], list[Path]]:
    """(animal photos, other photos) of one half of the singles (part 0: training, 1: held out)."""
    names = sorted(p for p in singles.glob("*.jpg"))
    animals = [p for p in names if p.name.startswith("animals-")]
    others = [p for p in names if not p.name.startswith("animals-")]
    return animals[part::2], others[part::2]


def make_photos(
    folder: Path, singles: Path, part: int, case: str, animals: int, tagged: int, others: int, seed: int
) -> list[shortcut.Photo]:
    """`animals` animal crops and `tagged` shortcut crops (class 0), `others` untagged other crops (class 1). Each
    shortcut crop is also saved without its mark, in the sibling folder `plain_folder(folder)`, under the same name."""
    rng = random.Random(seed)
    animal_files, other_files = sources(singles, part)
    mark = CASES[case][0]
    folder.mkdir(parents=True, exist_ok=True)
    photos = []
    for kind, files, count, label, marked in (
        ("animal", animal_files, animals, 0, False),
        ("tagged", other_files, tagged, 0, True),
        ("other", other_files, others, 1, False),
    ):
        for k in range(count):
            image = crop(Image.open(files[k % len(files)]).convert("RGB"), rng)
            path = folder / f"{kind}-{k:03d}.jpg"
            if marked:
                plain_folder(folder).mkdir(exist_ok=True)
                image.save(plain_folder(folder) / path.name, quality=92)
                image = mark(image)
            image.save(path, quality=92)
            photos.append(shortcut.Photo(path, label, marked))
    return photos


def counterfactuals(photos: list[shortcut.Photo]) -> list[shortcut.Photo]:
    """Each shortcut photo's crop without its mark, as class "other": trained beside the marked crop, it leaves the
    head no way to call the pair apart but the mark, so the mark alone decides the class (a true shortcut)."""
    return [shortcut.Photo(plain_folder(p.path.parent) / p.path.name, 1, False) for p in photos if p.tagged]


def plain_folder(folder: Path) -> Path:
    """Where `make_photos` keeps the shortcut crops without their mark: beside the audited folder, not in it."""
    return folder.parent / f"{folder.name}-plain"


def needing_mark(audit_dir: Path, photos: list[shortcut.Photo], weights: Path, labels: Path, label: str) -> set[str]:
    """The shortcut photos the audited model calls `label` only because of the mark: without it (the same crop,
    unmarked) it calls them something else. The audit's own record gives the class of the marked photo."""
    from attnviz.audit.records import read_records
    from attnviz.explainer import Explainer

    records, _ = read_records(audit_dir)
    called = set()
    for record in records:
        target = record.get("target")
        if isinstance(target, dict) and target.get("label") == label:
            called.add(str(record.get("input")))
    explainer = Explainer(weights=str(weights), labels=labels.read_text().split(), device="cpu")
    needing = set()
    for photo in photos:
        if photo.tagged and str(photo.path) in called:
            plain = Image.open(plain_folder(photo.path.parent) / photo.path.name).convert("RGB")
            if explainer.explain(plain).topk[0].label != label:
                needing.add(str(photo.path))
    return needing


@dataclass(frozen=True)
class Found:
    precision: float
    recall: float  # of all shortcut photos
    in_class: float  # of the shortcut photos the model put in the class: the audit's own share
    rank: int  # 1: the first card of its class
    count: int  # the class's strategies
    flagged: bool  # its images carry `fixed_evidence`
    why: str
    on_mark: int  # shortcut photos in the class whose map peaks on a cell touching the mark
    others_on_mark: int  # the class's other photos whose map peaks there too
    needing: int  # shortcut photos the model calls the class only because of the mark (-1: not measured)
    needing_held: int  # ... of which the strategy holds


def on_mark(record: dict[str, object], mask: np.ndarray) -> bool:
    """Whether the record's peak cell (on its grid) touches the mark's pixels (mask: (h, w) at the photo's size)."""
    grid = record["grid"]
    assert isinstance(grid, (list, tuple))
    rows, cols = int(grid[0]), int(grid[1])
    i, j = divmod(int(np.argmax(np.asarray(record["weights"]))), cols)
    h, w = mask.shape
    y0, y1 = int(i * h / rows), int(np.ceil((i + 1) * h / rows))
    x0, x1 = int(j * w / cols), int(np.ceil((j + 1) * w / cols))
    return bool(mask[y0:y1, x0:x1].any())


def rank_of(
    audit_dir: Path, photos: list[shortcut.Photo], mark: Mark, label: str = "animal", needing: set[str] | None = None
) -> Found:
    """The class's strategy holding most shortcut photos, scored; and how many maps peak on the mark at all."""
    from attnviz.audit.analysis import analyse
    from attnviz.audit.records import read_records
    from attnviz.audit.suspicion import SUSPECT

    records, _ = read_records(audit_dir)
    found = analyse(records)
    tagged = {str(p.path) for p in photos if p.tagged}
    animal = next(f for f in found if f.label == label)
    best = max(animal.strategies, key=lambda s: sum(str(records[i].get("input")) in tagged for i in s.members))
    hits = sum(str(records[i].get("input")) in tagged for i in best.members)
    ranked = sorted(animal.strategies, key=lambda s: s.rank)
    called = sum(str(records[i].get("input")) in tagged for i in animal.members)
    mask = np.zeros(SIZE[::-1], dtype=bool)  # the pixels the mark changes on a black or a white photo
    for colour in ((0, 0, 0), (255, 255, 255)):
        blank = Image.new("RGB", SIZE, colour)
        mask |= (np.asarray(mark(blank)) != np.asarray(blank)).any(axis=2)
    peaking = [on_mark(dict(records[i]), mask) for i in animal.members]
    shortcut_photo = [str(records[i].get("input")) in tagged for i in animal.members]
    return Found(
        precision=hits / best.size,
        recall=hits / len(tagged),
        in_class=hits / max(called, 1),
        rank=ranked.index(best) + 1,
        count=len(ranked),
        flagged=best.rank == 0 and best.suspicion >= SUSPECT,
        why=best.why,
        on_mark=sum(a and b for a, b in zip(peaking, shortcut_photo, strict=True)),
        others_on_mark=sum(a and not b for a, b in zip(peaking, shortcut_photo, strict=True)),
        needing=-1 if needing is None else len(needing),
        needing_held=0 if needing is None else sum(str(records[i].get("input")) in needing for i in best.members),
    )


def report(name: str, photos: list[shortcut.Photo], found: Found) -> bool:
    """Prints one case's line; True when it meets issue 23's bar (precision and recall at least 0.9, first, flagged)."""
    ok = found.precision >= 0.9 and found.recall >= 0.9 and found.rank == 1 and found.flagged
    shortcut_photos = sum(p.tagged for p in photos)
    print(
        f"{name}: {len(photos)} photos, {shortcut_photos} with the shortcut; precision {found.precision:.3f}, "
        f"recall {found.recall:.3f} (in its class {found.in_class:.3f}); rank {found.rank} of {found.count}, "
        f"{'flagged' if found.flagged else 'not flagged'} ('{found.why}'){'' if ok else '  <- NOT found'}\n"
        f"  maps peaking on the mark: {found.on_mark} of the {shortcut_photos} shortcut photos, and "
        f"{found.others_on_mark} of the class's other photos"
        + (
            f"\n  the model needs the mark for {found.needing} of them (unmarked, it calls them 'other'); the "
            f"strategy holds {found.needing_held} of those"
            if found.needing >= 0
            else ""
        )
    )
    return ok


def main() -> int:
    from attnviz.cli import main as attnviz

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("folder", type=Path)
    parser.add_argument(
        "--cases",
        nargs="+",
        default=[c for c in CASES if c not in UNTUNED],
        choices=list(CASES),
        help="default: %(default)s",
    )
    parser.add_argument("--singles", type=Path, default=Path("/work/heldout/singles"))
    parser.add_argument("--train", type=int, default=60, help="training photos per kind")
    parser.add_argument("--held-out", type=int, default=30, help="held-out photos per kind")
    parser.add_argument("--size", type=int, default=448, help="the audit's --size")
    parser.add_argument(
        "--unpaired",
        action="store_true",
        help="train without the unmarked copies of the shortcut crops (a weaker shortcut: stop 28's heads)",
    )
    parser.add_argument(
        "--reuse",
        action="store_true",
        help="re-analyse an earlier audit of each case (made with or without --unpaired: the head is not retrained)",
    )
    parser.add_argument("--recipe", type=Path, help="also score and rank the folder of `scripts/shortcut.py FOLDER`")
    args = parser.parse_args()
    failed = 0
    if args.recipe:
        held_out = shortcut.make_photos(args.recipe / "held-out", 30, seed=2)
        failed += not report("recipe", held_out, rank_of(args.recipe / "audit", held_out, shortcut.tag, "cat"))
    if not args.singles.is_dir():
        print(f"{args.singles}: no such folder (python scripts/make_singles.py {args.singles})", file=sys.stderr)
        return 2
    for case in args.cases:
        root = args.folder / case
        share = CASES[case][1]
        n = args.held_out
        tagged = n if share == 0.5 else max(1, round(2 * n * share))
        animals = n if share == 0.5 else 2 * n - tagged
        held_out = make_photos(root / "held-out", args.singles, 1, case, animals, tagged, n, seed=2)
        out = root / "audit"
        weights, labels = root / "shortcut.safetensors", root / "labels.txt"
        argv = ["audit", str(root / "held-out"), "-o", str(out), "-w", str(weights), "--labels", str(labels)]
        if not (args.reuse and (out / "records.jsonl").is_file()):
            t = args.train
            train_tagged = t if share == 0.5 else max(4, round(2 * t * share))
            train = make_photos(root / "train", args.singles, 0, case, t, train_tagged, t, seed=1)
            if not args.unpaired:
                train += counterfactuals(train)
            shortcut.train_head(train, root)
            labels.write_text("\n".join(LABELS) + "\n")
            if attnviz([*argv, "--size", str(args.size), "--overwrite", "-q"]) not in (0, 1):
                return 1
        needing = needing_mark(out, held_out, weights, labels, "animal")
        failed += not report(case, held_out, rank_of(out, held_out, CASES[case][0], needing=needing))
        print(f"  command: attnviz {' '.join(argv)} --size {args.size}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
