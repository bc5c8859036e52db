"""The paired-tanh form of a concat head, and its closed form: the same scores at a quarter of the work.

The data-free concat head (`default_concat`) and every head `attnviz fit` trains keep their hidden units in four
sign-flipped blocks (`TanhPairs`): for each attention dimension k, units at bias c_k see c_k +- x_k +- y_k, with
x = E h (the cell's projection) and y = Q q (the query's), and v reads them as g_k (+1, +1, -1, -1). Summed, the
four tanh units of k are, exactly,

    tanh(c+x+y) + tanh(c-x-y) - tanh(c+x-y) - tanh(c-x+y)
        = -4 sinh(2c) sinh(2x) sinh(2y) / ((cosh 2c + cosh 2(x+y)) (cosh 2c + cosh 2(x-y)))

(from tanh a + tanh b = sinh(a+b) / (cosh a cosh b)). Evaluated this way the per-cell product is E h, A rows
instead of 4A, and nothing cancels: float32 is as exact as the float64 sum of four tanh units it replaces. On
EfficientNet-Lite0's 1280 channels at 608 x 448, one thread: 4.75 ms per map, 2.2 of them to check the form on the
weights as they are, against 9.35 ms for the tanh units.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from attnviz.errors import UsageError


class TanhPairs(nn.Module):
    """The data-free concat head's W_c as a function of two projections: four sign-flipped copies of [E | Q].

    Registered as a parametrisation of `combine.weight` while `attnviz fit` trains a concat head, it lets the
    projections move while every +- pair of tanh units stays exactly paired, so the second-order read-out keeps
    cancelling. Free steps on W_c itself break that pairing: held-out pointing fell from 0.94 to 0.25.
    """

    SIGNS = ((1.0, 1.0), (-1.0, -1.0), (1.0, -1.0), (-1.0, 1.0))  # (feature, query) sign of each block of A units

    def __init__(self, enc_dim: int) -> None:
        super().__init__()
        self.enc_dim = enc_dim

    def forward(self, enc: Tensor, query: Tensor) -> Tensor:
        """(A, C) scaled feature projection, (A, D) scaled query projection -> (4A, C + D) W_c."""
        return torch.cat([torch.cat([se * enc, sq * query], dim=1) for se, sq in self.SIGNS])

    def right_inverse(self, weight: Tensor) -> tuple[Tensor, Tensor]:
        if not sign_blocks_paired(weight, self.enc_dim):
            raise UsageError("this concat head is not in the paired-tanh form, so its projections cannot be tied")
        first = weight[: weight.shape[0] // len(self.SIGNS)]  # (A, C + D): the (+, +) block
        return first[:, : self.enc_dim].clone(), first[:, self.enc_dim :].clone()


def sign_blocks_paired(weight: Tensor, enc_dim: int) -> bool:
    """W_c (U, C + D) is exactly `TanhPairs` of its first block: four blocks of A rows with the signs of `SIGNS`."""
    units, width = weight.shape
    if units % len(TanhPairs.SIGNS) or units == 0:
        return False
    blocks = weight.reshape(4, units // 4, width)  # (4, A, C + D)
    first = blocks[0]
    with torch.no_grad():
        flipped = first.neg()
        return (
            torch.equal(blocks[1], flipped)  # (-, -)
            and torch.equal(blocks[2, :, :enc_dim], first[:, :enc_dim])  # (+, -)
            and torch.equal(blocks[2, :, enc_dim:], flipped[:, enc_dim:])
            and torch.equal(blocks[3, :, :enc_dim], flipped[:, :enc_dim])  # (-, +)
            and torch.equal(blocks[3, :, enc_dim:], first[:, enc_dim:])
        )


def all_finite(t: Tensor) -> bool:
    """No NaN or infinity in `t`; one sum decides for the usual all-finite tensor (a NaN or an infinity makes the
    sum one), the element-wise check only runs when the sum overflowed or something is wrong."""
    return bool(torch.isfinite(t.sum())) or bool(torch.isfinite(t).all())


@dataclass(frozen=True)
class PairedForm:
    """A concat head in the paired form: per attention dimension k, its projections, bias and read-out gain."""

    enc: Tensor  # (A, C) E: x = E h
    query: Tensor  # (A, D) Q: y = Q q
    bias: Tensor  # (A,) c
    gain: Tensor  # (A,) g

    def score(self, h: Tensor, q: Tensor) -> Tensor | None:
        """(B, N, C) cells, (B, D) query -> (B, N) scores, equal to the head's sum over its 4A tanh units; None
        where the exponentials overflow (features hundreds of times past the head's scale), and `ConcatScorer`
        then takes the tanh units, which saturate.

        In exponentials (torch's sinh, cosh and expm1 are not vectorised, exp is): with e = exp(2x) and
        f = exp(2y), the term of k is 2 (e - 1/e) K / ((2 cosh 2c + e f + 1/(e f)) (2 cosh 2c + e/f + f/e)),
        K = -4 g sinh(2c) sinh(2y). e - 1/e loses digits where x is tiny, but only where its term is tiny too: the
        error stays at float32 rounding of the score (tested against the float64 tanh units).
        """
        x = h @ self.enc.T.to(h.dtype)  # (B, N, A)
        y = (q.to(h.dtype) @ self.query.T.to(h.dtype)).unsqueeze(1)  # (B, 1, A)
        c, gain = self.bias.to(h.dtype), self.gain.to(h.dtype)  # (A,) each
        e = torch.exp(2 * x)  # (B, N, A)
        r = e.reciprocal()
        f = torch.exp(2 * y)  # (B, 1, A)
        g = f.reciprocal()
        twice_cosh_c = 2 * torch.cosh(2 * c)  # (A,)
        k = torch.sinh(2 * y) * (-8 * torch.sinh(2 * c) * gain)  # (B, 1, A): 2 K
        denominator = (e * f + r * g + twice_cosh_c) * (e * g + r * f + twice_cosh_c)  # (B, N, A), >= 4
        scores = ((e - r) * k / denominator).sum(-1)  # (B, N): e - 1/e = 2 sinh(2x)
        return scores if all_finite(denominator) and all_finite(scores) else None


def paired_form(weight: Tensor, bias: Tensor, v: Tensor, enc_dim: int) -> PairedForm | None:
    """The head's paired form, or None when W_c (U, C + D), b (U,) and v (1, U) are not in it.

    Checked afresh on every call, from the values themselves (2.2 ms for Lite0's head): no cache to go stale
    when the weights change, whatever way they are changed (`.data` edits are invisible to version counters). The
    form holds views of the parameters, so gradients flow through it as through the tanh units.
    """
    units = weight.shape[0]
    if bias.shape != (units,) or v.numel() != units or not sign_blocks_paired(weight, enc_dim):
        return None
    with torch.no_grad():
        b, g = bias.reshape(4, -1), v.reshape(4, -1)  # (4, A) each
        if not all(torch.equal(b[0], b[i]) for i in (1, 2, 3)):
            return None
        if not (torch.equal(g[0], g[1]) and torch.equal(g[2], -g[0]) and torch.equal(g[3], -g[0])):
            return None
    a = units // 4
    first = weight[:a]  # (A, C + D): the (+, +) block
    return PairedForm(enc=first[:, :enc_dim], query=first[:, enc_dim:], bias=bias[:a], gain=v.reshape(-1)[:a])
