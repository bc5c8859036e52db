from __future__ import annotations

import numpy as np
import pytest

import attnviz
from attnviz.explainer import Explainer
from attnviz.models.base import Encoder
from attnviz.options import SCORER_MODES, Mode

from helpers import photo, side_by_side


def test_explain_api_returns_weights_map_target_and_topk(samples) -> None:  # type: ignore[no-untyped-def]
    result = attnviz.explain(samples / "chelsea.png", mode="dot")
    rows, cols = result.grid
    assert result.weights.shape == (rows, cols) and result.weights.dtype == np.float32
    assert result.weights.sum() == pytest.approx(1.0, abs=1e-5)
    assert result.heatmap.shape == (300, 451)
    assert result.target is not None
    assert result.target.index == 285 and result.target.label == "Egyptian cat"
    assert next(p.index for p in result.topk) == 285 and len(result.topk) == 5
    assert result.topk[0].prob >= result.topk[1].prob


@pytest.mark.parametrize("mode", SCORER_MODES)
def test_peak_lands_on_the_photo_of_the_target_class(lite0: Encoder, mode: Mode) -> None:
    """A cat beside an espresso: each class's attention peak must sit on its own photo."""
    composite = side_by_side(photo("chelsea.png"), photo("coffee.png"))
    split = round(451 * 300 / 300)  # width of the scaled cat photo
    explainer = Explainer(lite0, mode)
    cat = explainer.explain(composite, target="Egyptian cat")
    cup = explainer.explain(composite, target="espresso")
    assert cat.target is not None and cup.target is not None
    assert cat.target.index == 285 and cup.target.index == 967
    assert cat.peak[0] < split, cat.peak
    assert cup.peak[0] >= split, cup.peak
    # and most of the attention mass is on the right photo too
    cols = cat.grid[1]
    cell_split = round(cols * split / composite.width)
    assert cat.weights[:, :cell_split].sum() > 0.5
    assert cup.weights[:, cell_split:].sum() > 0.5


def test_modes_agree_on_the_real_encoder(lite0: Encoder) -> None:
    image = photo("coffee.png")
    maps = {mode: Explainer(lite0, mode).explain(image).scores.ravel() for mode in SCORER_MODES}
    assert np.corrcoef(maps[Mode.dot], maps[Mode.general])[0, 1] > 0.95
    assert np.corrcoef(maps[Mode.general], maps[Mode.concat])[0, 1] > 0.999


@pytest.mark.parametrize("mode", SCORER_MODES)
def test_fast_encoder_draws_the_eager_maps(lite0: Encoder, mode: Mode) -> None:
    """Folded batch norms and channels-last memory change nothing a user can see (to 1e-4)."""
    from attnviz.models.registry import create_encoder

    eager = create_encoder(fast=False)
    image = photo("astronaut.png")
    a, b = Explainer(eager, mode).explain(image), Explainer(lite0, mode).explain(image)
    assert np.abs(a.weights - b.weights).max() < 1e-4
    assert np.abs(a.heatmap - b.heatmap).max() < 1e-4
    assert a.target is not None and b.target is not None
    assert a.peak == b.peak and a.target.index == b.target.index
    assert a.target.prob == pytest.approx(b.target.prob, abs=1e-5)
