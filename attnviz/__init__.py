"""attnviz: where does a CNN look? Soft-attention heat maps over a pretrained encoder's spatial grid.

The pipeline, stage by stage: `io` (pictures in, files out) -> `models` (encoder: features and logits) ->
`attention` (class query and scorer: weights over the grid) -> `render` (the map drawn over the photo) ->
`batch` (many inputs on parallel lanes). `explainer` ties one picture's stages together; `quality` measures the
maps; `commands` and `cli` are what the `attnviz` command runs.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from attnviz.version import __version__

if TYPE_CHECKING:
    from attnviz.api import explain
    from attnviz.explainer import Explainer
    from attnviz.results import Explanation

__all__ = ["Explainer", "Explanation", "__version__", "explain"]


def __getattr__(name: str) -> Any:
    # Lazy, so `attnviz --help` and argument errors answer before torch is imported.
    if name == "explain":
        from attnviz.api import explain

        return explain
    if name == "Explainer":
        from attnviz.explainer import Explainer

        return Explainer
    if name == "Explanation":
        from attnviz.results import Explanation

        return Explanation
    raise AttributeError(name)


def __dir__() -> list[str]:
    """The public names too, so `help(attnviz)` and tab completion show `explain`, `Explainer` and `Explanation`
    (pydoc lists what `dir()` finds; the lazy names are found only when asked for)."""
    return sorted({*globals(), *__all__})
