"""Redraw every picture the README shows, with the command line as a user would run it.

    python scripts/readme_pictures.py [--heldout DIR]

`--heldout` (a folder built by scripts/make_singles.py) adds the before/after pair on a photo not in this repository.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
from pathlib import Path

from PIL import Image

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
SAMPLES = ROOT / "sample_images"


def attnviz(*args: str) -> None:
    subprocess.run([sys.executable, "-m", "attnviz.cli", *args, "--overwrite"], check=True)


def side_by_side(left: Path, right: Path, out: Path, height: int = 300) -> None:
    a, b = (Image.open(p).convert("RGB") for p in (left, right))
    a = a.resize((round(a.width * height / a.height), height), Image.Resampling.BICUBIC)
    b = b.resize((round(b.width * height / b.height), height), Image.Resampling.BICUBIC)
    canvas = Image.new("RGB", (a.width + b.width, height))
    canvas.paste(a, (0, 0))
    canvas.paste(b, (a.width, 0))
    canvas.save(out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--heldout", type=Path, help="folder from scripts/make_singles.py")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        catcup = Path(tmp) / "catcup.png"
        side_by_side(SAMPLES / "chelsea.png", SAMPLES / "coffee.png", catcup)
        for mode in ("dot", "general", "concat"):
            for name, target in (("cat", "egyptian cat"), ("espresso", "espresso")):
                attnviz("run", str(catcup), "-m", mode, "-t", target, "-o", str(DOCS / f"catcup.{name}.{mode}.jpg"))
    for photo in ("chelsea", "astronaut", "coffee"):
        attnviz("run", str(SAMPLES / f"{photo}.png"), "--annotate", "-o", str(DOCS / f"{photo}.concat.jpg"))
    attnviz(
        "compare",
        str(SAMPLES / "chelsea.png"),
        "-k",
        "2",
        "-m",
        "dot",
        "-m",
        "concat",
        "-o",
        str(DOCS / "chelsea.compare.png"),
    )
    if args.heldout:  # before (one 448 px pass, drawn unsmoothed) | now (the defaults)
        photo = str(args.heldout / "animals-mammals-equines-zebra.jpg")
        with tempfile.TemporaryDirectory() as tmp:
            before, now = Path(tmp) / "before.png", Path(tmp) / "now.png"
            attnviz("run", photo, "--classify-size", "448", "--smooth", "0", "--annotate", "-o", str(before))
            attnviz("run", photo, "--annotate", "-o", str(now))
            a, b = Image.open(before), Image.open(now)
            pair = Image.new("RGB", (a.width + b.width + 10, a.height), "white")
            pair.paste(a, (0, 0))
            pair.paste(b, (a.width + 10, 0))
            pair.resize((pair.width // 2, pair.height // 2), Image.Resampling.LANCZOS).save(
                DOCS / "heldout.zebra.jpg", quality=88
            )


if __name__ == "__main__":
    main()
