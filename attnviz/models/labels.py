"""Turning what the user typed after --target into a class index of the encoder's label set."""

from __future__ import annotations

from attnviz.errors import UsageError

_MAX_LISTED = 8


def _as_int(text: str | int) -> int | None:
    if isinstance(text, int):
        return text
    try:
        return int(text.strip())
    except ValueError:  # a name; also `--1` or a superscript digit, which are no index
        return None


def resolve_target(text: str | int, labels: list[str]) -> int:
    """A class index, or a name: exact (any comma-separated synonym), else a unique case-insensitive substring."""
    number = _as_int(text)
    if number is not None:
        index = number
        if not 0 <= index < len(labels):
            raise UsageError(f"target {index} is out of range: this encoder has classes 0 to {len(labels) - 1}")
        return index
    wanted = str(text).strip().lower()
    if not wanted:
        raise UsageError("empty --target; give a class index or part of a class name")
    exact = [i for i, label in enumerate(labels) if wanted in (s.strip().lower() for s in label.split(","))]
    if len(exact) == 1:
        return exact[0]
    matches = exact or [i for i, label in enumerate(labels) if wanted in label.lower()]
    if len(matches) == 1:
        return matches[0]
    if not matches:
        raise UsageError(f"no class matches {text!r}; list them with `attnviz labels`")
    shown = "; ".join(f"{i} {labels[i]}" for i in matches[:_MAX_LISTED])
    more = f" and {len(matches) - _MAX_LISTED} more" if len(matches) > _MAX_LISTED else ""
    raise UsageError(f"{text!r} matches {len(matches)} classes: {shown}{more}; give an index or a longer name")
