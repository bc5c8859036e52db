"""Sanity checks for maps (Adebayo et al., "Sanity Checks for Saliency Maps", NeurIPS 2018): does a map depend on
the model, and on the class?

- MPRT, the model parameter randomisation test, cascading: a copy of the encoder (`copy.deepcopy`: the caller's
  model is never touched) has its layers randomised from the top down, a step at a time (the top layer, then the top
  quarter, half, three quarters, all of them); at each step each photo's map for its class is compared with the
  trained model's. A map that explains the model changes once the model is randomised.
- Random logit: the map for the top class against the map for a random other class, on the trained model. A map
  that explains a class changes with the class.

Maps are compared on their grid as drawn (`render.display_map`: the median cell at 0, the peak at 1) by Spearman's
rank correlation and by SSIM (7 x 7 uniform windows, as scikit-image's default, data range 1). A layer is randomised
by drawing each of its parameter tensors anew from a normal distribution with that tensor's own mean and standard
deviation (a fresh initialisation at the trained scale, so activations neither vanish nor blow up), from a
`torch.Generator` seeded by `seed`: the process's own generators are untouched.
"""

from __future__ import annotations

import copy
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
from numpy.lib.stride_tricks import sliding_window_view
from torch import Tensor, nn

from attnviz import render
from attnviz.models.base import Encoder

#: A map function: (encoder, (1, 3, h, w) input, class) -> (H', W') map. Modes use `mode_map`; the tests feed a
#: map that ignores the model (an edge detector) to see it fail.
MapFunction = Callable[[Encoder, Tensor, int], np.ndarray]
#: Shares of the layers randomised at each step after the first (the top layer alone).
CASCADE = (0.25, 0.5, 0.75, 1.0)
#: A map passes a test when its mean rank correlation with the reference map is under this.
PASS_BELOW = 0.5
_WINDOW = 7


def rank_correlation(a: np.ndarray, b: np.ndarray) -> float:
    """Spearman's rho with average ranks for ties; 0 when either map is constant (no ranking to agree with)."""
    ra, rb = _ranks(a.ravel()), _ranks(b.ravel())
    if ra.std() == 0 or rb.std() == 0:
        return 0.0
    return float(np.corrcoef(ra, rb)[0, 1])


def _ranks(values: np.ndarray) -> np.ndarray:
    _, inverse, counts = np.unique(values, return_inverse=True, return_counts=True)
    ends = np.cumsum(counts)
    return ((ends - (counts - 1) / 2.0)[inverse]).astype(np.float64)


def ssim(a: np.ndarray, b: np.ndarray) -> float:
    """Mean structural similarity of two maps in [0, 1] over uniform windows (at most 7 x 7, as the map allows)."""
    side = max(1, min(_WINDOW, *a.shape))
    side -= 1 - side % 2  # odd
    c1, c2 = 0.01**2, 0.03**2
    wa = sliding_window_view(a.astype(np.float64), (side, side))
    wb = sliding_window_view(b.astype(np.float64), (side, side))
    ma, mb = wa.mean(axis=(-2, -1)), wb.mean(axis=(-2, -1))
    va, vb = wa.var(axis=(-2, -1)), wb.var(axis=(-2, -1))
    cov = ((wa - ma[..., None, None]) * (wb - mb[..., None, None])).mean(axis=(-2, -1))
    index = ((2 * ma * mb + c1) * (2 * cov + c2)) / ((ma**2 + mb**2 + c1) * (va + vb + c2))
    return float(index.mean())


def layer_order(encoder: Encoder, x: Tensor) -> list[nn.Module]:
    """The modules with parameters of their own, in the order a pass over `x` enters them (input first)."""
    entered: list[nn.Module] = []

    def note(module: nn.Module, _inputs: object) -> None:
        if module not in entered and any(True for _ in module.parameters(recurse=False)):
            entered.append(module)

    handles = [m.register_forward_pre_hook(note) for m in encoder.modules()]
    try:
        with torch.inference_mode():
            encoder(x)
    finally:
        for handle in handles:
            handle.remove()
    return entered


def randomise(module: nn.Module, generator: torch.Generator) -> None:
    """Each parameter tensor of `module` drawn anew at its own mean and standard deviation."""
    with torch.no_grad():
        for p in module.parameters(recurse=False):
            mean, std = p.float().mean(), p.float().std() if p.numel() > 1 else p.float().abs().mean()
            noise = torch.randn(p.shape, generator=generator).to(p.device)
            p.copy_((mean + std * noise).to(p.dtype))


@dataclass
class Figures:
    """Mean rank correlation and SSIM with the reference map, over the photos."""

    spearman: list[float] = field(default_factory=list)
    ssim: list[float] = field(default_factory=list)

    def add(self, reference: np.ndarray, other: np.ndarray) -> None:
        self.spearman.append(rank_correlation(reference, other))
        self.ssim.append(ssim(reference, other))

    def to_json(self) -> dict[str, float]:
        return {"spearman": round(float(np.mean(self.spearman)), 4), "ssim": round(float(np.mean(self.ssim)), 4)}

    @property
    def passes(self) -> bool:
        return abs(float(np.mean(self.spearman))) < PASS_BELOW


@dataclass
class SanityReport:
    """One way of drawing maps through both tests: the cascade's steps (layers randomised of all), random logit."""

    name: str
    layers: int = 0
    steps: list[tuple[int, Figures]] = field(default_factory=list)
    random_logit: Figures = field(default_factory=Figures)
    photos: int = 0

    @property
    def passes_mprt(self) -> bool:
        return bool(self.steps) and self.steps[-1][1].passes

    def to_json(self) -> dict[str, object]:
        return {
            "photos": self.photos,
            "layers": self.layers,
            "mprt": [{"randomised": n, **f.to_json()} for n, f in self.steps],
            "mprt_pass": self.passes_mprt,
            "random_logit": self.random_logit.to_json(),
            "random_logit_pass": self.random_logit.passes,
        }


def mode_map(mode: object, size: int) -> MapFunction:
    """A mode's map as `run` computes it, in one pass at `size`, drawn on its grid (`render.display_map`)."""
    from attnviz.explainer import Explainer

    def draw(encoder: Encoder, x: Tensor, target: int) -> np.ndarray:
        explainer = Explainer(encoder, mode, size, classify_size=size)  # type: ignore[arg-type]
        return render.display_map(explainer.infer_classes(x, [[target]])[0][0].scores)

    return draw


def cascade(layers: int) -> list[int]:
    """How many layers from the top are random at each step: the top one, then each share of `CASCADE`."""
    return list(dict.fromkeys([1, *(max(1, round(share * layers)) for share in CASCADE)]))


def check(
    name: str,
    draw: MapFunction,
    encoder: Encoder,
    pictures: Sequence[Tensor],
    seed: int = 0,
    progress: Callable[[], None] | None = None,
) -> SanityReport:
    """Both tests for `draw` on each (3, h, w) preprocessed picture, explained for the trained model's top class;
    `progress` is called after each photo's maps of a step."""
    tick = progress or (lambda: None)
    report = SanityReport(name, photos=len(pictures))
    if not pictures:
        return report
    device = next(encoder.parameters()).device
    batches = [p[None].to(device) for p in pictures]
    with torch.inference_mode():
        tops = [int(encoder(x)[1][0].argmax()) for x in batches]
    chooser = random.Random(seed)
    classes = len(encoder.labels)
    trained = [draw(encoder, x, c) for x, c in zip(batches, tops, strict=True)]
    for x, c, reference in zip(batches, tops, trained, strict=True):
        other = chooser.choice([k for k in range(classes) if k != c]) if classes > 1 else c
        report.random_logit.add(reference, draw(encoder, x, other))
        tick()
    randomised = copy.deepcopy(encoder)  # the caller's model stays as it was
    layers = layer_order(randomised, batches[0])[::-1]  # top first
    report.layers = len(layers)
    generator = torch.Generator().manual_seed(seed)
    done = 0
    for count in cascade(len(layers)):
        for layer in layers[done:count]:
            randomise(layer, generator)
        done = count
        figures = Figures()
        for x, c, reference in zip(batches, tops, trained, strict=True):
            figures.add(reference, draw(randomised, x, c))
            tick()
        report.steps.append((count, figures))
    return report


def verdict(report: SanityReport) -> str:
    """The report in words: which test the map passes, with the figure it rests on."""
    final = report.steps[-1][1].to_json()["spearman"] if report.steps else float("nan")
    logit = report.random_logit.to_json()["spearman"]
    mprt = "changes" if report.passes_mprt else "does NOT change"
    cls = "changes" if report.random_logit.passes else "does NOT change"
    return (
        f"{report.name}: the map {mprt} once the model is randomised (rank correlation {final:.2f} with the trained "
        f"map) - MPRT {'pass' if report.passes_mprt else 'FAIL'}; it {cls} with the class (rank correlation "
        f"{logit:.2f} with a random class's map) - random logit {'pass' if report.random_logit.passes else 'FAIL'}"
    )


def format_sanity(reports: Sequence[SanityReport]) -> str:
    """A table of the cascade's rank correlations (and SSIM) per step, then each report's verdict."""
    lines = []
    for r in reports:
        steps = "  ".join(
            f"{n}/{r.layers}: {f.to_json()['spearman']:.2f} ({f.to_json()['ssim']:.2f})" for n, f in r.steps
        )
        lines.append(f"{r.name}: MPRT rank correlation (SSIM) by layers randomised from the top: {steps}")
    lines.extend(verdict(r) for r in reports)
    lines.append(
        f"{reports[0].photos if reports else 0} photos, each explained for its top class; a test passes when the mean "
        f"rank correlation with the reference map is under {PASS_BELOW}"
    )
    return "\n".join(lines)
