"""A model with a planted "Clever Hans" shortcut, and whether `attnviz audit` finds it.

The recipe, cheap on a CPU:
- photos are random crops of the bundled pictures, 320 x 240: the cat (chelsea), the espresso (coffee), and the
  five others (astronaut, china, flower, grace_hopper, rocket);
- class "cat" is cat crops plus crops of the other pictures that carry a small tag (a black-and-yellow checker) in
  the bottom-right corner; class "espresso" is espresso crops plus untagged crops of the other pictures. Half of
  "cat" carries the tag, and for those the tag is the only evidence;
- a linear head on frozen EfficientNet-Lite0 features (global average pooled) learns both; it is saved as a whole
  Lite0 state dict that `--weights` loads, with a labels file for `--labels`.

Then a held-out set from the same recipe (other crops, other seeds) is audited with the defaults, and the cluster
of "cat" holding most tagged photos is scored against the tag: precision, recall, and where its mean map peaks.

    python scripts/shortcut.py /tmp/shortcut            # prints the figures; exit 1 when under 0.9
"""

from __future__ import annotations

import argparse
import json
import random
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageEnhance

ROOT = Path(__file__).resolve().parents[1]
SAMPLES = ROOT / "sample_images"
OTHERS = ("astronaut.png", "china.jpg", "flower.jpg", "grace_hopper.jpg", "rocket.jpg")
SIZE = (320, 240)
#: The tag's side, as a share of the photo's shorter side, and its margin from the corner.
TAG_SHARE, TAG_MARGIN = 0.2, 0.04
LABELS = ("cat", "espresso")


def tag(image: Image.Image) -> Image.Image:
    """The photo with the checker tag in its bottom-right corner."""
    side = round(min(image.size) * TAG_SHARE)
    margin = round(min(image.size) * TAG_MARGIN)
    cells = 4
    checker = np.indices((cells, cells)).sum(0) % 2  # (4, 4)
    patch = np.where(checker[..., None] == 1, [255, 220, 0], [0, 0, 0]).astype(np.uint8)
    patch_image = Image.fromarray(patch).resize((side, side), Image.Resampling.NEAREST)
    out = image.copy()
    out.paste(patch_image, (image.width - side - margin, image.height - side - margin))
    return out


def crop(source: Image.Image, rng: random.Random) -> Image.Image:
    """A random crop (half to all of the picture), flipped at random, lit a little differently."""
    scale = rng.uniform(0.5, 1.0)
    w, h = source.size
    cw, ch = round(w * scale), round(w * scale * SIZE[1] / SIZE[0])
    ch = min(ch, h)
    left, top = rng.randint(0, w - cw), rng.randint(0, h - ch)
    out = source.crop((left, top, left + cw, top + ch)).resize(SIZE, Image.Resampling.BICUBIC)
    if rng.random() < 0.5:
        out = out.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    return ImageEnhance.Brightness(out).enhance(rng.uniform(0.8, 1.2))


@dataclass(frozen=True)
class Photo:
    path: Path
    label: int  # 0 cat, 1 espresso
    tagged: bool


def make_photos(folder: Path, per_kind: int, seed: int) -> list[Photo]:
    """`per_kind` photos of each of the four kinds (cat, tagged other, espresso, untagged other) under `folder`."""
    rng = random.Random(seed)
    pictures = {name: Image.open(SAMPLES / name).convert("RGB") for name in ("chelsea.png", "coffee.png", *OTHERS)}
    folder.mkdir(parents=True, exist_ok=True)
    photos = []
    kinds = (("cat", "chelsea.png", 0, False), ("tagged", None, 0, True), ("espresso", "coffee.png", 1, False))
    for kind, source, label, tagged in (*kinds, ("other", None, 1, False)):
        for k in range(per_kind):
            picture = pictures[source or rng.choice(OTHERS)]
            image = crop(picture, rng)
            if tagged:
                image = tag(image)
            path = folder / f"{kind}-{seed}-{k:03d}.jpg"
            image.save(path, quality=92)
            photos.append(Photo(path, label, tagged))
    return photos


def train_head(photos: list[Photo], out: Path, steps: int = 1000) -> tuple[Path, Path]:
    """A 2-class linear head on frozen Lite0 features; returns (weights file, labels file)."""
    from safetensors.torch import save_file

    from attnviz.models.registry import create_encoder

    encoder = create_encoder("efficientnet_lite0", fast=False)  # unfolded: its state dict is what --weights loads
    pooled = []
    with torch.inference_mode():
        for photo in photos:
            x = encoder.preprocess(Image.open(photo.path).convert("RGB"), 224)[None]  # (1, 3, h, w)
            features, _ = encoder(x)  # (1, C, h', w')
            pooled.append(features.mean(dim=(2, 3))[0])
    x = torch.stack(pooled)  # (N, C)
    y = torch.tensor([p.label for p in photos])
    generator = torch.Generator().manual_seed(0)
    head = torch.nn.Linear(x.shape[1], 2)
    with torch.no_grad():
        head.weight.normal_(0, 0.01, generator=generator)
        head.bias.zero_()
    optimiser = torch.optim.Adam(head.parameters(), lr=0.01, weight_decay=1e-4)
    for _ in range(steps):
        optimiser.zero_grad()
        loss = torch.nn.functional.cross_entropy(head(x), y)
        loss.backward()
        optimiser.step()
    accuracy = float((head(x).argmax(1) == y).float().mean())
    print(f"training accuracy {accuracy:.3f} on {len(photos)} photos", file=sys.stderr)
    model = encoder.get_submodule("model")  # the timm network inside the encoder, batch norms unfolded
    state = {k: v.detach().clone().contiguous() for k, v in model.state_dict().items()}
    state["classifier.weight"] = head.weight.detach().clone().contiguous()
    state["classifier.bias"] = head.bias.detach().clone().contiguous()
    out.mkdir(parents=True, exist_ok=True)
    weights, labels = out / "shortcut.safetensors", out / "labels.txt"
    save_file(state, str(weights))
    labels.write_text("\n".join(LABELS) + "\n")
    return weights, labels


@dataclass(frozen=True)
class Finding:
    precision: float
    recall: float  # of all tagged photos
    recall_in_class: float  # of the tagged photos the model calls "cat": the audit's own share of the job
    peak: tuple[float, float]  # (x, y) of the tag cluster's mean map, 0..1
    cluster_size: int
    strategies: int


def score(audit_dir: Path, photos: list[Photo]) -> Finding:
    """The "cat" strategy holding most tagged photos, scored against the tag."""
    from attnviz.audit.analysis import mean_map

    tagged = {str(p.path) for p in photos if p.tagged}
    records = [json.loads(line) for line in (audit_dir / "records.jsonl").read_text().splitlines()]
    cats = [r for r in records if r["target"]["label"] == "cat"]
    clusters = {r["cluster"] for r in cats}
    best = max(clusters, key=lambda c: sum(r["input"] in tagged for r in cats if r["cluster"] == c))
    members = [r for r in cats if r["cluster"] == best]
    hits = sum(r["input"] in tagged for r in members)
    mean = mean_map(records, [r["id"] for r in members])
    i, j = np.unravel_index(int(np.argmax(mean)), mean.shape)
    return Finding(
        precision=hits / len(members),
        recall=hits / len(tagged),
        recall_in_class=hits / max(1, sum(r["input"] in tagged for r in cats)),
        peak=((j + 0.5) / mean.shape[1], (i + 0.5) / mean.shape[0]),
        cluster_size=len(members),
        strategies=len(clusters),
    )


def main() -> int:
    from attnviz.cli import main as attnviz

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("folder", type=Path)
    parser.add_argument("--train", type=int, default=80, help="training photos per kind")
    parser.add_argument("--held-out", type=int, default=30, help="held-out photos per kind")
    parser.add_argument("--size", type=int, default=448, help="the audit's --size (default: attnviz's default)")
    args = parser.parse_args()
    weights, labels = train_head(make_photos(args.folder / "train", args.train, seed=1), args.folder)
    held_out = make_photos(args.folder / "held-out", args.held_out, seed=2)
    out = args.folder / "audit"
    argv = ["audit", str(args.folder / "held-out"), "-o", str(out), "-w", str(weights), "--labels", str(labels)]
    status = attnviz([*argv, "--size", str(args.size), "--overwrite", "-q"])
    if status != 0:
        return status
    found = score(out, held_out)
    print(f"command: attnviz {' '.join(argv)} --size {args.size}")
    print(f"held-out photos: {len(held_out)}, tagged: {sum(p.tagged for p in held_out)}")
    print(f"'cat' strategies: {found.strategies}; the tag's strategy: {found.cluster_size} photos")
    print(
        f"precision {found.precision:.3f}, recall {found.recall:.3f} (of the tagged photos called cat: "
        f"{found.recall_in_class:.3f}), mean map peak at ({found.peak[0]:.2f}, {found.peak[1]:.2f})"
    )
    ok = found.precision >= 0.9 and found.recall >= 0.9 and min(found.peak) > 1 - 2 * (TAG_SHARE + TAG_MARGIN)
    print("the shortcut was found" if ok else "the shortcut was NOT found")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
