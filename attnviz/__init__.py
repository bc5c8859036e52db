"""attnviz: where does a CNN look? Soft-attention heat maps over a pretrained encoder's spatial grid."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

if TYPE_CHECKING:
    from attnviz.pipeline import Explainer, Explanation, explain

__all__ = ["Explainer", "Explanation", "__version__", "explain"]


def __getattr__(name: str) -> Any:
    # Lazy, so `attnviz --help` and argument errors answer before torch is imported.
    if name in ("explain", "Explainer", "Explanation"):
        from attnviz import pipeline

        return getattr(pipeline, name)
    raise AttributeError(name)
