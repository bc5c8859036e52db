"""Planted shortcuts on photos the repository never holds, and whether `attnviz audit` finds and ranks them.

The photos are the held-out singles of scripts/make_singles.py (Debian stamps pasted on Debian wallpapers; build
them with `python scripts/make_singles.py /work/heldout/singles`). Their sources are split in two: even-numbered
ones for training, odd-numbered ones for the held-out audit, so no audited photo's object or crop was trained on.
Class "animal" is the animal photos plus other photos carrying the case's shortcut; class "other" is the other
photos without it. A linear head on frozen Lite0 features learns both (scripts/shortcut.py's `train_head`). Cases:

- `disc`: a red disc with a white ring in the top-left corner (another shape, colour and corner than the recipe);
- `strip`: a dark, translucent text strip ("(c) PHOTOSTOCK") along the bottom edge, like a watermark;
- `frame`: a green frame around the whole photo (a background shortcut, on no one spot);
- `rare`: the recipe's checker tag in the bottom-left corner, on 10% of the held-out "animal" class.

For each case the audit's "animal" strategy holding most shortcut photos is scored (precision, recall) and its rank
among the class's strategies (1: the first card the report shows).

    python scripts/planted.py /tmp/planted [--cases disc strip frame rare] [--singles /work/heldout/singles]
"""

from __future__ import annotations

import argparse
import random
import sys
from collections.abc import Callable
from pathlib import Path

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


def checker_bottom_left(image: Image.Image) -> Image.Image:
    return shortcut.tag(image.transpose(Image.Transpose.FLIP_LEFT_RIGHT)).transpose(Image.Transpose.FLIP_LEFT_RIGHT)


#: case -> (shortcut, share of the held-out "animal" class that carries it)
CASES: dict[str, tuple[Callable[[Image.Image], Image.Image], float]] = {
    "disc": (disc, 0.5),
    "strip": (strip, 0.5),
    "frame": (frame, 0.5),
    "rare": (checker_bottom_left, 0.1),
}


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
    """`animals` animal crops and `tagged` shortcut crops (class 0), `others` untagged other crops (class 1)."""
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
            if marked:
                image = mark(image)
            path = folder / f"{kind}-{k:03d}.jpg"
            image.save(path, quality=92)
            photos.append(shortcut.Photo(path, label, marked))
    return photos


def rank_of(
    audit_dir: Path, photos: list[shortcut.Photo], label: str = "animal"
) -> tuple[float, float, float, int, int, str]:
    """(precision, recall, recall among the shortcut photos the model put in the class, the shortcut strategy's
    rank in its class, strategies, its card's words)."""
    from attnviz.audit.analysis import analyse
    from attnviz.audit.records import read_records

    records, _ = read_records(audit_dir)
    found = analyse(records)
    tagged = {str(p.path) for p in photos if p.tagged}
    animal = next(f for f in found if f.label == label)
    best = max(animal.strategies, key=lambda s: sum(str(records[i].get("input")) in tagged for i in s.members))
    hits = sum(str(records[i].get("input")) in tagged for i in best.members)
    ranked = sorted(animal.strategies, key=lambda s: s.rank)
    called = sum(str(records[i].get("input")) in tagged for i in animal.members)
    return hits / best.size, hits / len(tagged), hits / max(called, 1), ranked.index(best) + 1, len(ranked), best.why


def main() -> int:
    from attnviz.cli import main as attnviz

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("folder", type=Path)
    parser.add_argument("--cases", nargs="+", default=list(CASES), choices=list(CASES))
    parser.add_argument("--singles", type=Path, default=Path("/work/heldout/singles"))
    parser.add_argument("--train", type=int, default=60, help="training photos per kind")
    parser.add_argument("--held-out", type=int, default=30, help="held-out photos per kind")
    parser.add_argument("--size", type=int, default=448, help="the audit's --size")
    parser.add_argument("--reuse", action="store_true", help="re-analyse an earlier audit of each case")
    parser.add_argument("--recipe", type=Path, help="also score and rank the folder of `scripts/shortcut.py FOLDER`")
    args = parser.parse_args()
    if args.recipe:
        held_out = shortcut.make_photos(args.recipe / "held-out", 30, seed=2)
        precision, recall, in_class, rank, count, why = rank_of(args.recipe / "audit", held_out, "cat")
        print(
            f"recipe: precision {precision:.3f}, recall {recall:.3f} (in its class {in_class:.3f}); "
            f"rank {rank} of {count} ('{why}')"
        )
    if not args.singles.is_dir():
        print(f"{args.singles}: no such folder (python scripts/make_singles.py {args.singles})", file=sys.stderr)
        return 2
    failed = 0
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
            shortcut.train_head(train, root)
            labels.write_text("\n".join(LABELS) + "\n")
            if attnviz([*argv, "--size", str(args.size), "--overwrite", "-q"]) not in (0, 1):
                return 1
        precision, recall, in_class, rank, count, why = rank_of(out, held_out)
        ok = precision >= 0.9 and recall >= 0.8 and rank == 1
        failed += not ok
        print(
            f"{case}: {len(held_out)} photos, {sum(p.tagged for p in held_out)} with the shortcut; "
            f"precision {precision:.3f}, recall {recall:.3f} (in its class {in_class:.3f}); "
            f"rank {rank} of {count} ('{why}')"
            f"{'' if ok else '  <- NOT found'}"
        )
        print(f"  command: attnviz {' '.join(argv)} --size {args.size}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
