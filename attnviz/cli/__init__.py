"""The command line: parse options, hand off to the library, turn its errors into one line and an exit status."""

from __future__ import annotations

from attnviz.cli.app import app, main

__all__ = ["app", "main"]
