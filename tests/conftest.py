"""Shared fixtures: a tiny encoder registered like a real one, the real default encoder, and test pictures."""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile
import threading
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch import Tensor, nn

from attnviz.encoders import Encoder, create_encoder, register_encoder

# Keep the derived-tensor cache of the test run out of the user's home, and remove it afterwards.
if "ATTNVIZ_CACHE" not in os.environ:
    os.environ["ATTNVIZ_CACHE"] = tempfile.mkdtemp(prefix="attnviz-test-cache-")
    atexit.register(shutil.rmtree, os.environ["ATTNVIZ_CACHE"], ignore_errors=True)

SAMPLES = Path(__file__).resolve().parent.parent / "sample_images"
TINY_LABELS = ["cat", "dog", "hot dog", "sea lion", "lion"]


class TinyEncoder(Encoder):
    """Three stride-2 convolutions and a linear head: stride 8, 16 channels, 5 classes, seeded weights."""

    def __init__(self, weights: str | None = None) -> None:
        super().__init__("tiny_test", TINY_LABELS, mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5), feature_bound=4.0)
        generator = torch.Generator().manual_seed(0)
        self.body = nn.Sequential(
            nn.Conv2d(3, 8, 3, 2, 1),
            nn.ReLU(),
            nn.Conv2d(8, 16, 3, 2, 1),
            nn.ReLU(),
            nn.Conv2d(16, 16, 3, 2, 1),
            nn.ReLU(),
        )
        self.fc = nn.Linear(16, len(TINY_LABELS))
        with torch.no_grad():
            for p in self.parameters():
                p.copy_(torch.randn(p.shape, generator=generator) * 0.5)
        if weights is not None:
            from attnviz.weights import load_into, load_state_dict

            load_into(self, load_state_dict(weights), weights, "tiny_test")

    def forward_features(self, x: Tensor) -> Tensor:
        return self.body(x)  # type: ignore[no-any-return]

    def forward_head(self, features: Tensor) -> Tensor:
        return self.fc(features.mean(dim=(2, 3)))  # type: ignore[no-any-return]

    def classifier(self) -> nn.Linear:
        return self.fc


register_encoder("tiny_test")(TinyEncoder)


@pytest.fixture(scope="session")
def lite0() -> Encoder:
    return create_encoder("efficientnet_lite0")


@pytest.fixture(scope="session")
def samples() -> Path:
    return SAMPLES


def photo(name: str) -> Image.Image:
    with Image.open(SAMPLES / name) as im:
        return im.convert("RGB")


def side_by_side(left: Image.Image, right: Image.Image, height: int = 300) -> Image.Image:
    """Two photos scaled to one height and pasted left | right."""
    a = left.resize((round(left.width * height / left.height), height), Image.Resampling.BICUBIC)
    b = right.resize((round(right.width * height / right.height), height), Image.Resampling.BICUBIC)
    canvas = Image.new("RGB", (a.width + b.width, height))
    canvas.paste(a, (0, 0))
    canvas.paste(b, (a.width, 0))
    return canvas


@pytest.fixture
def small_png(tmp_path: Path) -> Path:
    path = tmp_path / "small.png"
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 255, (40, 56, 3), dtype=np.uint8)).save(path)
    return path


def errors_on_threads(work: Callable[[int], None], count: int) -> list[BaseException]:
    """Run `work(0)` ... `work(count - 1)` on as many threads at once; what they raised, for the test to assert on."""
    start, errors = threading.Barrier(count), []

    def thread(i: int) -> None:
        start.wait()
        try:
            work(i)
        except BaseException as exc:  # reported to the test's own thread
            errors.append(exc)

    threads = [threading.Thread(target=thread, args=(i,)) for i in range(count)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return errors
