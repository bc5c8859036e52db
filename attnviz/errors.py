"""Exceptions that the CLI turns into one-line messages and exit codes.

Anything that is the user's doing (a bad option, a file that cannot be read) is an `AttnvizError`;
anything else is a bug and keeps its traceback.
"""

from __future__ import annotations


class AttnvizError(Exception):
    """Base class: the message is shown to the user as it is, on one line."""

    exit_code = 1


class UsageError(AttnvizError):
    """The command line asks for something that cannot exist (unknown mode, target, encoder...)."""

    exit_code = 2


class InputError(AttnvizError):
    """One input file could not be processed; a batch goes on with the others."""


class ComputeError(AttnvizError):
    """The network produced something no map can be drawn from (NaN or infinite features)."""


class OutputError(AttnvizError):
    """An output could not be written (exists already, would replace the input, disk error)."""


class MissingExtraError(AttnvizError, ImportError):
    """An optional part of attnviz was asked for without its extra installed (`pip install 'attnviz[ray]'`)."""
