"""The CAM family (attention/cams.py): each mode against its formula computed by hand on the tiny encoder, the grid
contract, batches, the backend, the command line, and agreement with pytorch-grad-cam on EfficientNet-Lite0."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from attnviz.errors import UsageError
from attnviz.explainer import Explainer
from attnviz.models.base import Encoder
from attnviz.models.registry import create_encoder
from attnviz.options import CAM_MODES, Mode

import helpers
from helpers import TINY, one_error_line, photo, run

SIZE = 64
HAS_GRAD_CAM = importlib.util.find_spec("pytorch_grad_cam") is not None


@pytest.fixture(scope="module")
def tiny() -> Encoder:
    return create_encoder("tiny_test")


def tiny_pass(encoder: Encoder) -> tuple[torch.Tensor, np.ndarray, np.ndarray, np.ndarray]:
    """The picture at SIZE, its (C, H, W) features, the head's (K, C) weights and (K,) bias, as numpy."""
    x = encoder.preprocess(photo("chelsea.png"), SIZE)[None]
    with torch.no_grad():
        features, _ = encoder(x)
    fc = encoder.classifier()
    assert fc is not None
    return x, features[0].double().numpy(), fc.weight.double().numpy(), fc.bias.double().numpy()


def by_hand(mode: Mode, encoder: Encoder, target: int) -> np.ndarray:
    """(H, W) CAM of the tiny encoder (head: mean over cells, then linear), from the papers' formulas in numpy. The
    logit is W_c . mean(A) + b, so dy/dA_kij = W_ck / N at every cell."""
    x, a, w, _ = tiny_pass(encoder)
    c, h, wd = a.shape
    n = h * wd
    g = np.broadcast_to((w[target] / n)[:, None, None], a.shape)  # (C, H, W) gradient
    if mode is Mode.gradcam:
        cam = np.einsum("k,kij->ij", g.mean(axis=(1, 2)), a)
    elif mode is Mode.gradcam_pp:
        alpha = g**2 / (2 * g**2 + a.sum(axis=(1, 2), keepdims=True) * g**3 + 1e-6)
        alpha = np.where(g != 0, alpha, 0)
        cam = np.einsum("k,kij->ij", (np.maximum(g, 0) * alpha).sum(axis=(1, 2)), a)
    elif mode is Mode.layercam:
        cam = (np.maximum(g, 0) * a).sum(axis=0)
    elif mode is Mode.eigencam:
        cells = a.reshape(c, n).T
        cells = cells - cells.mean(axis=0)
        projection = cells @ np.linalg.svd(cells)[2][0]
        cam = (projection if abs(projection.max()) >= abs(projection.min()) else -projection).reshape(h, wd)
    else:  # scorecam: one channel at a time
        logits = []
        for k in range(c):
            up = F.interpolate(
                torch.from_numpy(a[k])[None, None], size=x.shape[-2:], mode="bilinear", align_corners=True
            )
            up = (up - up.min()) / (up.max() - up.min() + 1e-8)
            with torch.no_grad():
                logits.append(float(encoder(x * up.float())[1][0, target]))
        weights = np.exp(np.array(logits) - max(logits))
        cam = np.einsum("k,kij->ij", weights / weights.sum(), a)
    return np.maximum(cam, 0)


@pytest.mark.parametrize("mode", CAM_MODES)
def test_each_cam_is_its_formula_by_hand(tiny: Encoder, mode: Mode) -> None:
    target = 3
    cam = by_hand(mode, tiny, target)
    explainer = Explainer(tiny, mode, SIZE, classify_size=SIZE)
    result = explainer.explain_classes(photo("chelsea.png"), [target])[0]
    assert cam.max() > 0
    np.testing.assert_allclose(result.weights, cam / cam.sum(), rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(result.scores, cam / cam.max(), rtol=1e-4, atol=1e-6)
    assert result.weights.sum() == pytest.approx(1.0, abs=1e-5)


@pytest.mark.parametrize("mode", CAM_MODES)
def test_a_batch_gives_each_picture_its_own_maps(tiny: Encoder, mode: Mode) -> None:
    """Pictures of one size share a pass (and a backward pass per class rank); each map is the one alone."""
    explainer = Explainer(tiny, mode, SIZE, classify_size=SIZE)
    pictures = [photo("chelsea.png"), photo("coffee.png").resize((451, 300)), photo("rocket.jpg").resize((451, 300))]
    together = explainer.explain_batch(pictures, [1, 4, 2])
    for picture, target, drawn in zip(pictures, [1, 4, 2], together, strict=True):
        alone = explainer.explain(picture, target)
        np.testing.assert_allclose(drawn.weights, alone.weights, atol=1e-5)
    two = explainer.explain_classes(pictures[0], [1, 2])
    assert [m.target.index for m in two if m.target] == [1, 2]
    np.testing.assert_allclose(two[0].weights, together[0].weights, atol=1e-5)


def test_eigencam_is_the_same_map_for_every_class_and_the_others_are_not(tiny: Encoder) -> None:
    picture = photo("chelsea.png")
    for mode in CAM_MODES:
        first, second = Explainer(tiny, mode, SIZE, classify_size=SIZE).explain_classes(picture, [0, 3])
        same = np.allclose(first.weights, second.weights, atol=1e-6)
        assert same == (mode is Mode.eigencam), mode


def test_a_cam_that_is_zero_everywhere_has_uniform_weights_and_zero_scores() -> None:
    from attnviz.attention.cams import weights_and_scores

    weights, scores = weights_and_scores(torch.tensor([[-1.0, -2.0, 0.0, -0.5], [0.0, 1.0, 3.0, -1.0]]))
    assert weights[0].tolist() == [0.25] * 4 and scores[0].tolist() == [0.0] * 4
    assert weights[1].tolist() == [0.0, 0.25, 0.75, 0.0] and scores[1].tolist() == pytest.approx([0, 1 / 3, 1, 0])


def test_cams_run_on_torch_whatever_the_backend_and_refuse_a_runtime_in_one_line(tiny: Encoder) -> None:
    explainer = Explainer(tiny, Mode.gradcam_pp, SIZE, backend="auto")
    assert explainer.engine is None and "gradcam++" in explainer.backend_note
    with pytest.raises(UsageError, match="--backend torch"):
        Explainer(tiny, Mode.scorecam, SIZE, backend="onnxruntime")


def test_cams_leave_the_callers_grad_mode_and_rng_alone(tiny: Encoder) -> None:
    state = torch.random.get_rng_state()
    with torch.inference_mode():
        drawn = Explainer(tiny, Mode.gradcam, SIZE).explain(photo("chelsea.png"))
    assert drawn.weights.sum() == pytest.approx(1.0, abs=1e-5)
    assert torch.equal(state, torch.random.get_rng_state())


@pytest.mark.parametrize("mode", ["gradcam++", "layercam", "eigencam"])
def test_run_draws_a_cam_mode_named_as_users_know_it(
    capsysbinary: pytest.CaptureFixture[bytes], tmp_path: Path, mode: str
) -> None:
    out = tmp_path / "map.png"
    code, stdout, err = run(
        capsysbinary, "run", helpers.SAMPLES / "chelsea.png", *TINY, "-m", mode, "-o", out, "--json"
    )
    assert code == 0, err
    assert json.loads(stdout)["mode"] == mode and out.is_file()


def test_a_cam_mode_on_a_runtime_backend_is_one_line(
    capsysbinary: pytest.CaptureFixture[bytes], tmp_path: Path
) -> None:
    args = ["run", helpers.SAMPLES / "chelsea.png", *TINY, "-m", "gradcam", "--backend", "onnxruntime"]
    code, _, err = run(capsysbinary, *args, "-o", tmp_path / "x.png")
    assert code != 0
    one_error_line(err, "gradcam", "--backend torch")


def _agreement(mode: Mode, size: int, layer: str | None = None) -> tuple[float, float]:
    sys.path.insert(0, str(helpers.TESTS.parent / "scripts"))
    try:
        from cam_agreement import agreement
    finally:
        sys.path.pop(0)
    return agreement(helpers.SAMPLES / "chelsea.png", mode, size, layer)


@pytest.mark.skipif(not HAS_GRAD_CAM, reason="pytorch-grad-cam (the bench extra) is not installed")
@pytest.mark.parametrize("mode", [Mode.gradcam, Mode.gradcam_pp, Mode.layercam, Mode.eigencam])
def test_run_draws_pytorch_grad_cams_map(mode: Mode) -> None:
    """`attnviz run photo --mode M --save-scores`'s grid against pytorch-grad-cam's map on the same input and layer
    (EfficientNet-Lite0, bn2); the drawn picture differs by design (median floor, smoothing: docs/quality.md)."""
    grid, drawn = _agreement(mode, 224)
    assert grid >= 0.95, (mode, grid)
    assert drawn >= 0.8, (mode, drawn)


@pytest.mark.slow
@pytest.mark.skipif(not HAS_GRAD_CAM, reason="pytorch-grad-cam (the bench extra) is not installed")
def test_run_draws_pytorch_grad_cams_scorecam() -> None:
    """On an earlier map of 192 channels at a small size: one masked pass per channel, each side."""
    grid, _ = _agreement(Mode.scorecam, 128, "blocks.5")
    assert grid >= 0.95, grid


def test_compare_and_audit_draw_cam_modes(capsysbinary: pytest.CaptureFixture[bytes], tmp_path: Path) -> None:
    picture = helpers.SAMPLES / "chelsea.png"
    args = ["compare", picture, *TINY, "-m", "gradcam", "-m", "gradcam++", "-m", "scorecam", "-o", tmp_path / "c.png"]
    code, _, err = run(capsysbinary, *args)
    assert code == 0, err
    assert (tmp_path / "c.png").is_file()
    code, _, err = run(capsysbinary, "audit", helpers.SAMPLES, *TINY, "-m", "layercam", "-o", tmp_path / "audit")
    assert code == 0, err
    assert (tmp_path / "audit" / "report.html").is_file()


@pytest.mark.parametrize("mode", CAM_MODES)
def test_cams_draw_on_your_own_module_left_as_it_was(mode: Mode) -> None:
    """A module wrapped by the generic encoder: the features are a hooked layer's output, differentiated there."""
    import torchvision

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        net = torchvision.models.resnet18(num_classes=4)
    before = {k: v.clone() for k, v in net.state_dict().items()}
    drawn = Explainer(model=net, labels=["a", "b", "c", "d"], mode=mode, size=64).explain(photo("chelsea.png"), 2)
    assert drawn.grid == (2, 3) and drawn.weights.sum() == pytest.approx(1.0, abs=1e-5)
    assert all(torch.equal(before[k], v) for k, v in net.state_dict().items()) and net.training
