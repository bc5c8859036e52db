from __future__ import annotations

import pytest

from attnviz.errors import UsageError
from attnviz.models.labels import resolve_target

from helpers import TINY_LABELS


@pytest.mark.parametrize(
    ("text", "index"),
    [("2", 2), (4, 4), ("cat", 0), ("CAT", 0), ("dog", 1), ("Sea", 3), ("hot", 2), ("lion", 4)],
)
def test_resolves_indices_exact_names_and_unique_substrings(text: str | int, index: int) -> None:
    assert resolve_target(text, TINY_LABELS) == index


def test_exact_synonym_wins() -> None:
    labels = ["tabby, tabby cat", "tiger cat", "Egyptian cat"]
    assert resolve_target("tabby cat", labels) == 0
    assert resolve_target("egyptian", labels) == 2


def test_ambiguous_name_lists_candidates() -> None:
    with pytest.raises(UsageError, match=r"'o' matches 4 classes: 1 dog; 2 hot dog; 3 sea lion; 4 lion; give an index"):
        resolve_target("o", TINY_LABELS)


def test_unknown_and_out_of_range() -> None:
    with pytest.raises(UsageError, match="no class matches 'zebra'"):
        resolve_target("zebra", TINY_LABELS)
    with pytest.raises(UsageError, match="target 5 is out of range: this encoder has classes 0 to 4"):
        resolve_target("5", TINY_LABELS)
    with pytest.raises(UsageError, match="out of range"):
        resolve_target("-1", TINY_LABELS)
