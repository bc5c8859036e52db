"""Scale-out on Ray Data: a stateful class for `map_batches` that gives `run --json`'s records, and the `--engine ray`
driver. Needs the `ray` extra; importing this package without it is an ImportError that names the extra."""

from __future__ import annotations

from attnviz.errors import MissingExtraError

try:
    import pyarrow  # noqa: F401  (comes with ray[data])
    import ray.data  # noqa: F401
except ImportError as exc:
    raise MissingExtraError("--engine ray and attnviz.ray need Ray Data: pip install 'attnviz[ray]'") from exc

from attnviz.ray.batches import ExplainBatches
from attnviz.ray.engine import ACTOR_OPTIONS

__all__ = ["ACTOR_OPTIONS", "ExplainBatches"]
