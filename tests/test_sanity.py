"""Sanity checks (quality/sanity.py, `attnviz eval --sanity`): a map that ignores the model fails them, Grad-CAM
passes; the figures by hand; the caller's model and generators untouched; the command line's JSON and words."""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import Tensor

from attnviz.models.base import Encoder
from attnviz.models.registry import create_encoder
from attnviz.options import Mode
from attnviz.quality.sanity import check, layer_order, mode_map, rank_correlation, ssim

import helpers
from helpers import TINY, one_error_line, photo, run

SIZE = 64
PHOTOS = ("chelsea.png", "coffee.png", "rocket.jpg")


def edges(_encoder: Encoder, x: Tensor, _target: int) -> np.ndarray:
    """A deliberately model-independent map: the Sobel edges of the picture, whatever the model and class."""
    grey = x[0].float().mean(dim=0)[None, None]
    kernel = torch.tensor([[-1.0, 0.0, 1.0], [-2.0, 0.0, 2.0], [-1.0, 0.0, 1.0]])[None, None]
    gx, gy = F.conv2d(grey, kernel, padding=1), F.conv2d(grey, kernel.transpose(2, 3), padding=1)
    return (gx**2 + gy**2).sqrt()[0, 0].numpy()


@pytest.fixture(scope="module")
def tiny() -> Encoder:
    return create_encoder("tiny_test")


@pytest.fixture(scope="module")
def pictures(tiny: Encoder) -> list[Tensor]:
    return [tiny.preprocess(photo(name), SIZE) for name in PHOTOS]


def test_an_edge_detector_fails_both_checks_and_gradcam_passes_them(tiny: Encoder, pictures: list[Tensor]) -> None:
    fake = check("edges", edges, tiny, pictures)
    assert not fake.passes_mprt and not fake.random_logit.passes
    assert all(f.to_json() == {"spearman": 1.0, "ssim": 1.0} for _, f in fake.steps)
    real = check("gradcam", mode_map(Mode.gradcam, SIZE), tiny, pictures)
    assert real.passes_mprt and real.random_logit.passes
    assert [n for n, _ in real.steps] == [1, 2, 3, 4] and real.layers == 4  # three convolutions and the head
    assert abs(real.steps[-1][1].to_json()["spearman"]) < 0.5


def test_a_class_free_map_fails_the_random_logit_test(tiny: Encoder, pictures: list[Tensor]) -> None:
    report = check("eigencam", mode_map(Mode.eigencam, SIZE), tiny, pictures)
    assert report.random_logit.to_json()["spearman"] == 1.0 and not report.random_logit.passes


def test_the_callers_model_and_generators_are_left_as_they_were(tiny: Encoder, pictures: list[Tensor]) -> None:
    before = {k: v.clone() for k, v in tiny.state_dict().items()}
    state = torch.random.get_rng_state()
    first = check("dot", mode_map(Mode.dot, SIZE), tiny, pictures, seed=3).to_json()
    assert torch.equal(state, torch.random.get_rng_state())
    assert all(torch.equal(before[k], v) for k, v in tiny.state_dict().items())
    assert check("dot", mode_map(Mode.dot, SIZE), tiny, pictures, seed=3).to_json() == first  # the seed fixes it
    assert check("dot", mode_map(Mode.dot, SIZE), tiny, pictures, seed=4).to_json() != first


def test_the_figures_by_hand() -> None:
    a = np.array([[0.0, 1.0], [2.0, 3.0]])
    assert rank_correlation(a, a * 5 + 1) == pytest.approx(1.0)
    assert rank_correlation(a, -a) == pytest.approx(-1.0)
    assert rank_correlation(a, np.ones_like(a)) == 0.0  # a constant map ranks nothing
    # ties take their average rank: [1, 2.5, 2.5, 4] against [1, 2, 3, 4]
    assert rank_correlation(np.array([0.0, 1.0, 1.0, 2.0]), np.arange(4.0)) == pytest.approx(0.9486833, abs=1e-6)
    rng = np.random.default_rng(0)
    b = rng.random((9, 9))
    assert ssim(b, b) == pytest.approx(1.0)
    assert ssim(b, 1 - b) < 0
    # one 7 x 7 window against a constant map at its mean: the luminance term is 1, the structure term c2/(var + c2)
    window = b[:7, :7]
    assert ssim(window, np.full((7, 7), window.mean())) == pytest.approx(9e-4 / (float(np.var(window)) + 9e-4))


def test_layers_are_found_in_the_order_a_pass_enters_them(tiny: Encoder, pictures: list[Tensor]) -> None:
    order = layer_order(tiny, pictures[0][None])
    body: Any = tiny.body
    assert order == [body[0], body[2], body[4], tiny.fc]


def test_eval_sanity_reports_each_mode_per_step_in_json_and_in_words(
    capsysbinary: pytest.CaptureFixture[bytes],
) -> None:
    args = ["eval", helpers.SAMPLES, "--sanity", *TINY, "--images", "2", "-m", "dot", "-m", "eigencam"]
    code, out, err = run(capsysbinary, *args, "--json")
    assert code == 0, err
    found = json.loads(out)
    assert [r["method"] for r in found["rows"]] == ["dot", "eigencam", "gradcam"] and found["images"] == 2
    dot = found["rows"][0]["sanity"]
    assert [s["randomised"] for s in dot["mprt"]] == [1, 2, 3, 4]
    assert set(dot["mprt"][0]) == {"randomised", "spearman", "ssim"} and "random_logit_pass" in dot
    code, out, err = run(capsysbinary, *args, "--no-gradcam")
    assert code == 0, err
    text = out.decode()
    assert "eigencam: the map" in text and "random logit FAIL" in text and "gradcam" not in text


@pytest.mark.parametrize(
    ("extra", "needle"),
    [(["--images", "0"], "--images"), (["--singles"], "--sanity"), (["--head", "h.safetensors"], "--head")],
)
def test_eval_sanity_refuses_bad_input_in_one_line(
    capsysbinary: pytest.CaptureFixture[bytes], extra: list[str], needle: str
) -> None:
    code, _, err = run(capsysbinary, "eval", helpers.SAMPLES, "--sanity", *TINY, *extra)
    assert code != 0
    one_error_line(err, needle)
