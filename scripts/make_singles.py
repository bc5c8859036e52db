"""Build a held-out benchmark of single-object photos with object masks, from Debian packages.

Photographic cut-outs (RGBA stamps of `tuxpaint-stamps-default`) are pasted, one per photo, onto photographic
wallpapers (`plasma-workspace-wallpapers`, `mate-backgrounds`) at an ordinary photo scale. Each photo comes with a
mask of the object, and its reference class is what EfficientNet-Lite0 says about the cut-out alone, over white, at
224 x 224; objects it is unsure of (top-1 below `--min-prob`) are dropped.

    python scripts/make_singles.py OUT_DIR [--seed 0]

writes OUT_DIR/NAME.jpg (RGB, quality 92), OUT_DIR/NAME.mask.png (L, 255 inside the object), OUT_DIR/labels.json
({NAME: {index, label, prob, source, background}}) and OUT_DIR/sources.json (package versions, settings).
Needs a Debian-like machine with `apt-get` and `dpkg-deb` (after `apt-get update`); nothing is installed system-wide.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from attnviz.models.base import Encoder
from attnviz.models.registry import create_encoder

STAMPS_PACKAGE = "tuxpaint-stamps-default"
STAMPS_ROOT = "usr/share/tuxpaint/stamps"
#: Photographic wallpapers with no dominant object of their own (landscapes, textures), by package. Plasma entries
#: are wallpaper folders (the largest landscape image inside is used), MATE entries are files.
BACKGROUNDS: dict[str, list[str]] = {
    "plasma-workspace-wallpapers": [
        f"usr/share/wallpapers/{name}"
        for name in ("BytheWater", "DarkestHour", "FallenLeaf", "Grey", "OneStandsOut", "Path", "summer_1am")
    ],
    "mate-backgrounds": [
        f"usr/share/backgrounds/mate/nature/{name}.jpg"
        for name in ("Aqua", "Blinds", "Dune", "GreenMeadow", "RainDrops", "Storm", "Wood")
    ],
}
PHOTO_SIZE = (1200, 800)  # (width, height) of every composite
OBJECT_SCALE = (0.35, 0.60)  # object's longer side as a fraction of the photo's shorter side
MIN_STAMP_SIDE = 120  # smaller cut-outs would be blown up too far
MIN_COLOURS = 1000  # distinct colours (6 bits a channel) inside the object: fewer means clip art
MIN_BINARY_ALPHA = 0.9  # share of pixels with alpha near 0 or 255: soft, glowing cut-outs are not photos
MAX_BACKGROUND_PROB = 0.4  # a background the network already sees an object in (top-1 above this) is skipped
LABEL_SIZE = 224


@dataclass
class Cutout:
    name: str
    source: str  # package/path
    image: Image.Image  # RGBA, cropped to the object's bounding box


def fail(message: str) -> None:
    sys.exit(f"make_singles: {message}")


def fetch(packages: list[str], workdir: Path) -> dict[str, str]:
    """`apt-get download` then `dpkg-deb -x` each package into workdir/PACKAGE; returns {package: version}."""
    for tool in ("apt-get", "dpkg-deb"):
        if shutil.which(tool) is None:
            fail(f"{tool} not found: this script needs a Debian-like system with apt (then run apt-get update)")
    debs = workdir / "debs"
    debs.mkdir()
    os.chmod(debs, 0o777)  # so that apt's unprivileged _apt user may write there when run as root
    result = subprocess.run(["apt-get", "download", "-q", *packages], cwd=debs, capture_output=True, text=True)
    if result.returncode != 0:
        fail(f"apt-get download failed (try apt-get update): {result.stderr.strip().splitlines()[-1:]}")
    versions = {}
    for package in packages:
        found = sorted(debs.glob(f"{package}_*.deb"))
        if not found:
            fail(f"apt-get download gave no .deb for {package}")
        subprocess.run(["dpkg-deb", "-x", str(found[-1]), str(workdir / package)], check=True)
        versions[package] = found[-1].name.split("_")[1].replace("%3a", ":")
    return versions


def slug(path: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", path.lower()).strip("-")


def is_photographic(rgba: np.ndarray) -> bool:
    """Many distinct colours inside the object and a mostly hard-edged alpha: a photo cut-out, not clip art."""
    alpha = rgba[..., 3]
    inside = alpha > 127
    if inside.sum() < 500:
        return False
    binary = float(((alpha < 16) | (alpha > 239)).mean())
    colours = len(np.unique(rgba[..., :3][inside] // 4, axis=0))
    return colours >= MIN_COLOURS and binary >= MIN_BINARY_ALPHA


def load_cutouts(root: Path) -> list[Cutout]:
    stamps = root / STAMPS_PACKAGE / STAMPS_ROOT
    cutouts = []
    for path in sorted(stamps.rglob("*.png")):
        relative = path.relative_to(stamps).as_posix()
        if "cartoon" in relative or path.stem.endswith("_mirror") or relative.startswith("symbols/"):
            continue
        with Image.open(path) as opened:
            image = opened.convert("RGBA")
        box = image.getchannel("A").point(lambda a: 255 if a > 127 else 0).getbbox()
        if box is None:
            continue
        image = image.crop(box)
        if max(image.size) < MIN_STAMP_SIDE or not is_photographic(np.asarray(image)):
            continue
        name = slug(relative.removesuffix(".png"))
        cutouts.append(Cutout(name, f"{STAMPS_PACKAGE}/{STAMPS_ROOT}/{relative}", image))
    return cutouts


def background_files(root: Path) -> list[tuple[str, Path]]:
    """(package/path, file) of each background; a Plasma folder gives its largest landscape image."""
    found = []
    for package, entries in BACKGROUNDS.items():
        for entry in entries:
            path = root / package / entry
            if path.is_dir():
                candidates = []
                for image_path in (path / "contents" / "images").iterdir():
                    if image_path.is_symlink():  # other sizes' names, all pointing at one file
                        continue
                    with Image.open(image_path) as opened:
                        if opened.width > opened.height:
                            candidates.append((opened.width * opened.height, image_path))
                path = max(candidates)[1]
            if not path.is_file():
                fail(f"background {package}/{entry} is missing from the package")
            found.append((f"{package}/{path.relative_to(root / package).as_posix()}", path))
    return found


def load_background(path: Path, longest: int = 1600) -> Image.Image:
    """The photo as RGB with its longer side `longest` (never below PHOTO_SIZE)."""
    with Image.open(path) as opened:
        opened.draft("RGB", (longest, longest))
        image = opened.convert("RGB")
    scale = max(longest / max(image.size), PHOTO_SIZE[0] / image.width, PHOTO_SIZE[1] / image.height)
    size = (round(image.width * scale), round(image.height * scale))
    return image.resize(size, Image.Resampling.LANCZOS, reducing_gap=3.0)


def random_window(image: Image.Image, rng: random.Random) -> Image.Image:
    """A PHOTO_SIZE crop of the background at a random place."""
    width, height = PHOTO_SIZE
    left, top = rng.randint(0, image.width - width), rng.randint(0, image.height - height)
    return image.crop((left, top, left + width, top + height))


def on_white_square(cutout: Image.Image, side: int) -> Image.Image:
    """The cut-out over white, padded to a square and resized to side x side."""
    longest = max(cutout.size)
    square = Image.new("RGBA", (longest, longest), (255, 255, 255, 255))
    square.alpha_composite(cutout, ((longest - cutout.width) // 2, (longest - cutout.height) // 2))
    return square.convert("RGB").resize((side, side), Image.Resampling.BICUBIC, reducing_gap=3.0)


@torch.inference_mode()
def classify(encoder: Encoder, image: Image.Image, size: int = LABEL_SIZE) -> tuple[int, float]:
    """(top-1 class, its probability) for an RGB picture fed with its shorter side at `size`."""
    x = encoder.preprocess(image, size)[None]  # (1, 3, H, W)
    _, logits = encoder(x)  # (1, 1000)
    probs = logits.float().softmax(dim=-1)[0]  # (1000,)
    prob, index = probs.max(dim=0)
    return int(index), float(prob)


def compose(cutout: Image.Image, background: Image.Image, rng: random.Random) -> tuple[Image.Image, Image.Image]:
    """Paste the cut-out at a random place and ordinary scale; returns (RGB photo, L mask with 255 inside)."""
    width, height = background.size
    longest = rng.uniform(*OBJECT_SCALE) * min(width, height)
    scale = longest / max(cutout.size)
    size = (max(1, round(cutout.width * scale)), max(1, round(cutout.height * scale)))
    obj = cutout.resize(size, Image.Resampling.LANCZOS, reducing_gap=3.0)
    left, top = rng.randint(0, width - obj.width), rng.randint(0, height - obj.height)
    photo = background.convert("RGBA")
    photo.alpha_composite(obj, (left, top))
    mask = Image.new("L", (width, height), 0)
    mask.paste(obj.getchannel("A").point(lambda a: 255 if a > 127 else 0), (left, top))
    return photo.convert("RGB"), mask


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("out_dir", type=Path, help="folder for NAME.jpg, NAME.mask.png and labels.json")
    parser.add_argument("--seed", type=int, default=0, help="seeds backgrounds, crops, scales and positions")
    parser.add_argument("--min-prob", type=float, default=0.5, help="keep objects classified at least this sure")
    args = parser.parse_args()
    if args.out_dir.exists() and any(args.out_dir.iterdir()):
        fail(f"{args.out_dir} is not empty; give a new or empty folder")

    rng = random.Random(args.seed)
    packages = [STAMPS_PACKAGE, *BACKGROUNDS]
    with tempfile.TemporaryDirectory(prefix="make_singles-") as tmp:
        root = Path(tmp)
        versions = fetch(packages, root)
        encoder = create_encoder("efficientnet_lite0")
        cutouts = load_cutouts(root)
        backgrounds = []
        for source, path in background_files(root):
            photo = load_background(path)
            index, prob = classify(encoder, photo)
            if prob > MAX_BACKGROUND_PROB:
                print(f"skip background {source}: looks like {encoder.labels[index]} ({prob:.2f})", file=sys.stderr)
                continue
            backgrounds.append((source, photo))
        if not backgrounds:
            fail("no usable background")
        print(f"{len(cutouts)} photographic cut-outs, {len(backgrounds)} backgrounds", file=sys.stderr)

        args.out_dir.mkdir(parents=True, exist_ok=True)
        order = list(range(len(backgrounds)))
        labels: dict[str, dict[str, object]] = {}
        for cutout in cutouts:
            index, prob = classify(encoder, on_white_square(cutout.image, LABEL_SIZE))
            if prob < args.min_prob:
                continue
            if len(labels) % len(order) == 0:  # every background once before any twice
                rng.shuffle(order)
            source, photo = backgrounds[order[len(labels) % len(order)]]
            image, mask = compose(cutout.image, random_window(photo, rng), rng)
            image.save(args.out_dir / f"{cutout.name}.jpg", quality=92)
            mask.save(args.out_dir / f"{cutout.name}.mask.png")
            labels[cutout.name] = {
                "index": index,
                "label": encoder.labels[index],
                "prob": round(prob, 4),
                "source": cutout.source,
                "background": source,
            }
    (args.out_dir / "labels.json").write_text(json.dumps(labels, indent=1) + "\n")
    settings = {
        "packages": versions,
        "seed": args.seed,
        "min_prob": args.min_prob,
        "photo_size": PHOTO_SIZE,
        "object_scale": OBJECT_SCALE,
        "cutouts_photographic": len(cutouts),
        "backgrounds": [source for source, _ in backgrounds],
        "kept": len(labels),
    }
    (args.out_dir / "sources.json").write_text(json.dumps(settings, indent=1) + "\n")
    print(f"kept {len(labels)} of {len(cutouts)} cut-outs -> {args.out_dir}", file=sys.stderr)


if __name__ == "__main__":
    main()
