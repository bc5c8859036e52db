# mypy: disable-error-code="union-attr,index,operator"
# (these tests reach into nn.Module attributes, which torch types as `Tensor | Module`)
from __future__ import annotations

import pytest
import torch

from attnviz.attention.scorers import (
    ConcatScorer,
    DotScorer,
    GeneralScorer,
    class_scorer,
    class_subspace,
    default_concat,
    default_general,
    query_bound,
)
from attnviz.errors import ComputeError, UsageError
from attnviz.options import SCORER_MODES, Mode


def corr(a: torch.Tensor, b: torch.Tensor) -> float:
    return float(torch.corrcoef(torch.stack([a.detach().flatten(), b.detach().flatten()]))[0, 1])


def test_dot_is_the_class_activation_map_under_a_softmax() -> None:
    h = torch.tensor([[[1.0, 0.0], [0.0, 2.0], [1.0, 1.0]]])  # (1, 3, 2)
    q = torch.tensor([[2.0, 1.0]])  # (1, 2)
    out = DotScorer()(h, q)
    cam = torch.tensor([[2.0, 2.0, 3.0]])  # h_i . q by hand
    assert torch.allclose(out.scores, cam)
    e = torch.exp(cam)
    assert torch.allclose(out.weights, e / e.sum())
    assert torch.allclose(out.context, (out.weights[0, :, None] * h[0]).sum(0, keepdim=True))


def test_dot_refuses_mismatched_sizes() -> None:
    with pytest.raises(UsageError, match="query size == feature size, got 3 and 2"):
        DotScorer()(torch.ones(1, 4, 2), torch.ones(1, 3))


def test_general_is_bilinear_and_has_no_bias() -> None:
    scorer = GeneralScorer(enc_dim=3, query_dim=2, attn_dim=2)
    assert scorer.enc_proj.bias is None and scorer.query_proj.bias is None
    with torch.no_grad():
        scorer.enc_proj.weight.copy_(torch.tensor([[1.0, 0.0, 0.0], [0.0, 1.0, 1.0]]))
        scorer.query_proj.weight.copy_(torch.tensor([[2.0, 0.0], [0.0, 3.0]]))
    h = torch.tensor([[[1.0, 2.0, 3.0], [0.0, 1.0, 0.0]]])  # (1, 2, 3)
    q = torch.tensor([[1.0, 1.0]])
    # W_e h = [1, 5], [0, 1]; W_d q = [2, 3] -> scores 17, 3
    assert torch.allclose(scorer(h, q).scores, torch.tensor([[17.0, 3.0]]))
    # without bias a zero query favours no cell
    assert torch.allclose(scorer(h, torch.zeros(1, 2)).weights, torch.full((1, 2), 0.5))


def test_concat_matches_the_formula_on_the_concatenation() -> None:
    torch.manual_seed(0)
    scorer = ConcatScorer(enc_dim=4, query_dim=3, hidden_dim=5)
    h, q = torch.randn(2, 6, 4), torch.randn(2, 3)  # (B, N, C), (B, D)
    joined = torch.cat([h, q[:, None, :].expand(-1, 6, -1)], dim=-1)  # (B, N, C + D)
    expected = torch.tanh(joined @ scorer.combine.weight.T + scorer.combine.bias) @ scorer.v.weight[0]
    out = scorer(h, q)
    assert torch.allclose(out.scores, expected, atol=1e-6)
    assert torch.allclose(out.context, torch.einsum("bn,bnc->bc", out.weights, h), atol=1e-6)


@pytest.mark.parametrize("mode", SCORER_MODES)
@pytest.mark.parametrize("grid", [(1, 1), (3, 5), (7, 7), (13, 9)])
def test_weights_are_a_distribution_for_any_grid(mode: Mode, grid: tuple[int, int]) -> None:
    torch.manual_seed(1)
    classes = torch.randn(10, 8)
    scorer = class_scorer(mode, classes, feature_bound=3.0)
    h = torch.rand(2, grid[0] * grid[1], 8) * 3  # (B, N, C)
    out = scorer(h, classes[:2])
    assert out.weights.shape == (2, grid[0] * grid[1])
    assert torch.allclose(out.weights.sum(-1), torch.ones(2))
    assert torch.isfinite(out.weights).all() and (out.weights >= 0).all()


def test_features_with_nan_are_refused() -> None:
    h = torch.ones(1, 4, 3)
    h[0, 2, 1] = float("nan")
    with pytest.raises(ComputeError, match="NaN or infinity"):
        DotScorer()(h, torch.ones(1, 3))


def test_class_subspace_is_orthonormal_and_keeps_the_top_directions() -> None:
    torch.manual_seed(2)
    w = torch.randn(30, 12)
    basis = class_subspace(w, attn_dim=4)  # (4, 12)
    assert torch.allclose(basis @ basis.T, torch.eye(4), atol=1e-5)
    top = torch.linalg.svd(w, full_matrices=False).Vh[:4]
    assert torch.allclose((top @ basis.T).abs().pow(2).sum(1), torch.ones(4), atol=1e-4)


def test_class_subspace_of_a_head_with_fewer_classes_than_dimensions_keeps_them_and_completes_the_basis() -> None:
    """7 classes, 16 dimensions (a fine-tuned head): the 7 class directions come first, then 9 orthogonal to them;
    the classes' own queries score the same as in the 7-dimensional subspace alone."""
    torch.manual_seed(5)
    w = torch.randn(7, 40)
    basis = class_subspace(w, attn_dim=16)  # (16, 40)
    assert basis.shape == (16, 40) and torch.allclose(basis @ basis.T, torch.eye(16), atol=1e-5)
    top = torch.linalg.svd(w, full_matrices=False).Vh  # (7, 40)
    assert torch.allclose((top @ basis[:7].T).abs(), torch.eye(7), atol=1e-5)  # the class directions, in order
    assert (w @ basis[7:].T).abs().max() < 1e-4  # the completion: no class vector reaches it
    h = torch.rand(2, 9, 40)
    full, own = default_general(basis)(h, w[:2]).scores, default_general(basis[:7])(h, w[:2]).scores
    assert torch.allclose(full, own, atol=1e-4)


def test_default_general_with_full_rank_equals_dot() -> None:
    torch.manual_seed(3)
    classes = torch.randn(20, 6)
    h, q = torch.rand(1, 9, 6), classes[:1]
    general = default_general(class_subspace(classes, attn_dim=6))
    assert torch.allclose(general(h, q).scores, DotScorer()(h, q).scores, atol=1e-4)


def test_default_concat_reproduces_general() -> None:
    torch.manual_seed(4)
    classes = torch.randn(50, 32)
    h, q = torch.rand(3, 49, 32) * 6, classes[:3]
    basis = class_subspace(classes, attn_dim=16)
    general = default_general(basis)(h, q).scores
    concat = default_concat(basis, feature_bound=6.0, query_bound=query_bound(classes, basis))(h, q).scores
    for i in range(3):
        assert corr(general[i], concat[i]) > 0.999
    assert torch.allclose(general, concat, rtol=0.05, atol=0.05 * float(general.abs().max()))


def test_defaults_track_dot_on_the_real_encoder(lite0, samples) -> None:  # type: ignore[no-untyped-def]
    from helpers import photo

    x = lite0.preprocess(photo("coffee.png"), 448)[None]
    features, logits = lite0(x)
    h = features.flatten(2).transpose(1, 2)  # (1, N, C)
    q = lite0.class_vectors()[logits.argmax(-1)]  # (1, C)
    dot = DotScorer()(h, q).scores
    for mode in (Mode.general, Mode.concat):
        other = class_scorer(mode, lite0.class_vectors(), 6.0)(h, q).scores
        assert corr(dot, other) > 0.95, mode
        assert int(other.argmax()) == int(dot.argmax()), mode


def test_concat_inference_matches_an_all_float64_pass_on_the_real_encoder(lite0) -> None:  # type: ignore[no-untyped-def]
    """The float32 per-cell product must not cost the data-free concat head its float64 precision."""
    from helpers import photo

    features, logits = lite0(lite0.preprocess(photo("coffee.png"), 448)[None])
    h = features.flatten(2).transpose(1, 2)  # (1, N, C)
    q = lite0.class_vectors()[logits.argmax(-1)]  # (1, C)
    scorer = class_scorer(Mode.concat, lite0.class_vectors(), 6.0)
    w, b, v = (t.double() for t in (scorer.combine.weight, scorer.combine.bias, scorer.v.weight[0]))
    reference = torch.softmax(
        torch.tanh(torch.cat([h[0].double(), q.double().expand(h.shape[1], -1)], 1) @ w.T + b) @ v, 0
    )
    weights = scorer(h, q).weights[0].double()  # (N,)
    assert float((weights - reference).abs().max()) < 1e-4 * float(reference.max())


def _tanh_sum(scorer: ConcatScorer, h: torch.Tensor, q: torch.Tensor) -> torch.Tensor:
    """The concat formula summed over every tanh unit, all in float64: the reference for the closed form."""
    w, b, v = (t.detach().double() for t in (scorer.combine.weight, scorer.combine.bias, scorer.v.weight[0]))
    joined = torch.cat([h.double(), q.double()[:, None, :].expand(-1, h.shape[1], -1)], dim=-1)  # (B, N, C + D)
    return torch.tanh(joined @ w.T + b) @ v  # (B, N)


def test_the_paired_closed_form_equals_the_sum_over_the_tanh_units() -> None:
    torch.manual_seed(5)
    classes = torch.randn(40, 24)
    scorer = class_scorer(Mode.concat, classes, feature_bound=4.0, attn_dim=12)
    assert isinstance(scorer, ConcatScorer)
    paired = scorer.paired()
    assert paired is not None
    h, q = torch.rand(3, 35, 24) * 4, classes[[0, 7, 9]]  # (B, N, C), (B, D)
    reference = _tanh_sum(scorer, h, q)  # (B, N)
    closed = paired.score(h, q)  # the closed form itself, not through any fallback
    assert closed is not None
    assert float((closed.double() - reference).abs().max()) < 1e-5 * float(reference.abs().max())
    weights, expected = scorer(h, q).weights.double(), torch.softmax(reference, -1)
    assert float((weights - expected).abs().max()) < 1e-5 * float(expected.max())


def test_the_paired_form_is_read_from_the_weights_as_they_are_now() -> None:
    """No cache to go stale: an edit through `.data` (invisible to version counters) and parameters made under
    inference mode (which have none) are both seen."""
    torch.manual_seed(9)
    classes = torch.randn(20, 8)
    scorer = class_scorer(Mode.concat, classes, feature_bound=2.0, attn_dim=4)
    assert isinstance(scorer, ConcatScorer) and scorer.paired() is not None
    scorer.combine.weight.data[3, 1] += 0.5
    assert scorer.paired() is None
    h, q = torch.rand(1, 9, 8) * 2, classes[:1]
    assert torch.allclose(scorer(h, q).scores.double(), _tanh_sum(scorer, h, q), atol=1e-5)
    with torch.inference_mode():
        built = class_scorer(Mode.concat, classes, feature_bound=2.0, attn_dim=4)
        assert isinstance(built, ConcatScorer) and built.paired() is not None
        assert torch.isfinite(built(h, q).scores).all()


def test_gradients_flow_through_the_closed_form() -> None:
    torch.manual_seed(10)
    classes = torch.randn(20, 8)
    scorer = class_scorer(Mode.concat, classes, feature_bound=2.0, attn_dim=4)
    assert isinstance(scorer, ConcatScorer)
    scorer.requires_grad_(True)  # eval mode, trainable: the closed form runs and must be differentiable
    h = (torch.rand(1, 9, 8) * 2).requires_grad_(True)
    scorer(h, classes[:1]).scores.sum().backward()
    assert h.grad is not None and scorer.combine.weight.grad is not None
    expected = torch.autograd.grad(_tanh_sum(scorer, h, classes[:1]).sum(), h)[0]
    assert torch.allclose(h.grad.double(), expected.double(), atol=1e-5)


def test_an_overflow_that_leaves_the_scores_finite_still_takes_the_tanh_units() -> None:
    """A small read-out gain keeps the numerator finite where exp overflows the denominator: that is caught too."""
    from attnviz.attention.paired import TanhPairs

    scorer = ConcatScorer(enc_dim=1, query_dim=1, hidden_dim=4).eval()
    with torch.no_grad():
        scorer.combine.weight.copy_(TanhPairs(1)(torch.ones(1, 1), torch.ones(1, 1)))
        scorer.combine.bias.fill_(0.66)
        scorer.v.weight.copy_(torch.tensor([[0.1, 0.1, -0.1, -0.1]]))
    h, q = torch.full((1, 1, 1), 22.2), torch.full((1, 1), 22.2)
    paired = scorer.paired()
    assert paired is not None and paired.score(h, q) is None
    assert torch.allclose(scorer.score(h, q).double(), _tanh_sum(scorer, h, q), atol=1e-5)


def test_a_head_not_in_the_paired_form_takes_the_tanh_units() -> None:
    torch.manual_seed(6)
    scorer = ConcatScorer(enc_dim=4, query_dim=3, hidden_dim=8).eval()  # four blocks, but random weights
    assert scorer.paired() is None
    h, q = torch.randn(2, 6, 4), torch.randn(2, 3)
    assert torch.allclose(scorer(h, q).scores.double(), _tanh_sum(scorer, h, q), atol=1e-5)


def test_the_paired_form_is_found_again_when_the_weights_change_in_place() -> None:
    torch.manual_seed(7)
    classes = torch.randn(20, 8)
    scorer = class_scorer(Mode.concat, classes, feature_bound=2.0, attn_dim=4)
    assert isinstance(scorer, ConcatScorer) and scorer.paired() is not None
    with torch.no_grad():
        scorer.combine.weight[3, 1] += 0.5  # one unit loses its partner
    assert scorer.paired() is None
    h, q = torch.rand(1, 9, 8) * 2, classes[:1]
    assert torch.allclose(scorer(h, q).scores.double(), _tanh_sum(scorer, h, q), atol=1e-5)


def test_features_far_past_the_heads_scale_fall_back_to_the_saturating_tanh_units() -> None:
    """exp overflows in the closed form where tanh saturates: the scores stay finite, as the tanh units give them."""
    torch.manual_seed(8)
    classes = torch.randn(20, 8)
    scorer = class_scorer(Mode.concat, classes, feature_bound=1e-3, attn_dim=4)
    assert isinstance(scorer, ConcatScorer)
    h, q = torch.rand(1, 9, 8) * 1e3, classes[:1]  # a million times the bound the head was scaled for
    out = scorer(h, q)
    assert torch.isfinite(out.scores).all() and torch.allclose(out.weights.sum(-1), torch.ones(1))
    assert torch.allclose(out.scores.double(), _tanh_sum(scorer, h, q), rtol=1e-4, atol=1e-3)


def test_a_frozen_concat_head_keeps_its_checked_form_and_training_drops_it() -> None:
    """attnviz's own heads (data-free, loaded from a file) check their paired form once; a head being trained,
    or any other, checks it on every call, in case its weights changed."""
    import attnviz.attention.scorers as scorers
    from attnviz.attention.datafree import cached_scorer

    from helpers import TinyEncoder

    head = cached_scorer(TinyEncoder(), Mode.concat)
    assert isinstance(head, scorers.ConcatScorer) and head.frozen is not None
    checks: list[int] = []
    original = scorers.paired_form
    try:
        scorers.paired_form = lambda *args: checks.append(1) or original(*args)  # type: ignore[assignment,func-returns-value]
        h, q = torch.randn(1, 4, head.enc_dim), torch.randn(1, head.combine.weight.shape[1] - head.enc_dim)
        frozen = head(h, q).weights
        assert checks == []  # no check per call
        head.train()
        assert head.frozen is None
        head.eval()
        torch.testing.assert_close(head(h, q).weights, frozen)  # the same form, checked afresh
        assert checks == [1]
    finally:
        scorers.paired_form = original
        head.eval().freeze()
