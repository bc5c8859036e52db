"""Helpers shared by the tests: the tiny encoder registered like a real one, the bundled photos, the CLI runner.

Imported by the tests as `helpers` (pytest puts this folder on sys.path); `conftest.py` holds only fixtures.
Importing this module registers the `tiny_test` encoder, so a subprocess can do the same with `import helpers`.
"""

from __future__ import annotations

import io
import os
import sys
import threading
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from PIL import Image
from torch import Tensor, nn

from attnviz.cli import main
from attnviz.models.base import Encoder
from attnviz.models.registry import register_encoder

TESTS = Path(__file__).resolve().parent
SAMPLES = TESTS.parent / "sample_images"
TINY_LABELS = ["cat", "dog", "hot dog", "sea lion", "lion"]
#: CLI arguments for the tiny encoder at a small size: fast runs that exercise everything but the real network.
TINY = ["--encoder", "tiny_test", "--size", "64"]
#: A `python -c` prefix that registers the tiny encoder in a subprocess started from the repository root.
SUBPROCESS_SETUP = f"import sys; sys.path.insert(0, {str(TESTS)!r}); import helpers; "


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
            from attnviz.models.weights import load_into, load_state_dict

            load_into(self, load_state_dict(weights), weights, "tiny_test")

    def forward_features(self, x: Tensor) -> Tensor:
        return self.body(x)  # type: ignore[no-any-return]

    def forward_head(self, features: Tensor) -> Tensor:
        return self.fc(features.mean(dim=(2, 3)))  # type: ignore[no-any-return]

    def classifier(self) -> nn.Linear:
        return self.fc


register_encoder("tiny_test")(TinyEncoder)


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


def run(
    capsysbinary: pytest.CaptureFixture[bytes], *args: object, stdin: bytes | None = None
) -> tuple[int, bytes, str]:
    """`attnviz ARGS` through the real entry point: (exit status, stdout bytes, stderr text)."""
    if stdin is not None:
        sys.stdin = io.TextIOWrapper(io.BytesIO(stdin))
    try:
        code = main([str(a) for a in args])
    finally:
        sys.stdin = sys.__stdin__
    out, err = capsysbinary.readouterr()
    return code, out, err.decode()


def one_error_line(err: str, *needles: str) -> None:
    """stderr is exactly one `attnviz: error:` line, and it says each of `needles`."""
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("attnviz: error:"), err
    for needle in needles:
        assert needle in lines[0], err


class Evil:
    """Unpickling this runs a shell command: what a malicious weights or head file would do."""

    def __reduce__(self) -> tuple[object, tuple[str]]:
        return (os.system, ("touch pwned",))
