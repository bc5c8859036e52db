"""The one-call API: `attnviz.explain(picture)`, for a notebook or a script that explains a picture or two."""

from __future__ import annotations

from attnviz import render
from attnviz.explainer import Explainer
from attnviz.io.pictures import Picture
from attnviz.models.base import Encoder
from attnviz.options import DEFAULT_ENCODER, DEFAULT_SIZE, Mode
from attnviz.results import Explanation


def explain(
    image: Picture,
    mode: Mode | str | None = None,
    target: str | int | None = None,
    encoder: str | Encoder = DEFAULT_ENCODER,
    size: int = DEFAULT_SIZE,
    interpolation: render.Interpolation | str = render.Interpolation.bilinear,
    device: str = "auto",
) -> Explanation:
    """Explain one picture: where `encoder` finds the evidence for `target` (default: its top-1 class).

    `image` is a path, a Pillow image, a numpy array or a tensor (see `Explainer.explain`). The result holds the
    (H', W') attention weights, the map upsampled to the picture's size, the target with its probability, and the
    top-k predictions, ranked at the encoder's trained scale.
    """
    return Explainer(encoder, mode, size, device=device).explain(image, target, interpolation)
