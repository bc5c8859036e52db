"""The `attnviz` command: the Typer app, its commands, and every expected failure as one line and an exit status."""

from __future__ import annotations

import contextlib
import errno
import os
import sys
from typing import Annotated

import typer

try:  # Typer 0.2x vendors its own click; older releases use the click package
    from typer._click import exceptions as click_exceptions
except ImportError:  # pragma: no cover
    from click import exceptions as click_exceptions  # type: ignore[no-redef]

from attnviz import __version__
from attnviz.cli import audit as audit_command
from attnviz.cli import run as run_commands
from attnviz.cli import study
from attnviz.cli.options import (
    AUDIT_EXAMPLES,
    COMPARE_EXAMPLES,
    ENCODERS_EXAMPLES,
    EVAL_EXAMPLES,
    FIT_EXAMPLES,
    LABELS_EXAMPLES,
    RUN_EXAMPLES,
    ClosedPipe,
    Command,
    Group,
)
from attnviz.cli.process import OpenEnded, tune_process
from attnviz.errors import AttnvizError


def _version(value: bool) -> None:
    if value:
        print(f"attnviz {__version__}")
        raise typer.Exit()


def main_options(
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Print the version and exit.")
    ] = False,
) -> None:
    """Where does a CNN look? Soft-attention heat maps over a pretrained encoder, for one photo or a million.

    \b
    Examples:
      attnviz run photo.jpg                     # -> photo.attn-concat.png
      attnviz run photos/ -o maps/ --json       # a folder, one JSON line per photo
      attnviz compare photo.jpg -o fig.pdf      # a figure for a paper
      attnviz COMMAND --help                    # each command's options and examples
    """


app = typer.Typer(
    name="attnviz",
    cls=Group,
    add_completion=True,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
    context_settings={"help_option_names": ["-h", "--help"]},
)
app.callback()(main_options)
app.command(cls=Command, epilog=RUN_EXAMPLES)(run_commands.run)
app.command(cls=Command, epilog=COMPARE_EXAMPLES)(run_commands.compare)
app.command(cls=Command, epilog=AUDIT_EXAMPLES)(audit_command.audit)
app.command(cls=Command, epilog=ENCODERS_EXAMPLES)(study.encoders)
app.command(cls=Command, epilog=LABELS_EXAMPLES)(study.labels)
app.command(name="eval", cls=Command, epilog=EVAL_EXAMPLES)(study.evaluate)
app.command(cls=Command, epilog=FIT_EXAMPLES)(study.fit)


def main(argv: list[str] | None = None) -> int:
    """Entry point: every expected failure is one line on stderr and an exit status, never a traceback."""
    if hasattr(sys.stderr, "reconfigure"):
        sys.stderr.reconfigure(errors="backslashreplace")  # file names that are not UTF-8
    tune_process()  # the command line may tune its own process; the library never does
    stderr = sys.stderr
    with open(os.devnull, "w") as null:  # the stderr of a process started with fd 2 closed (`2>&-`): None
        sys.stderr = OpenEnded(stderr if stderr is not None else null)  # type: ignore[assignment]
        try:  # `2>&1 | head`: the work goes on, unsaid
            return _main(argv)
        finally:
            sys.stderr = stderr


def _main(argv: list[str] | None) -> int:
    try:
        # Without standalone mode click returns the status of `typer.Exit` instead of exiting.
        status = app(args=argv, prog_name="attnviz", standalone_mode=False)
        return status if isinstance(status, int) else 0
    except typer.Exit as exc:
        return int(exc.exit_code or 0)
    except click_exceptions.NoArgsIsHelpError as exc:  # bare `attnviz`: the help, as written, not an error line
        try:
            print(exc.ctx.get_help() if exc.ctx else exc.format_message())
        except BrokenPipeError:
            _drop_stdout()
            return 141
        return 0
    except click_exceptions.UsageError as exc:
        hint = f" (see attnviz {exc.ctx.info_name} --help)" if exc.ctx and exc.ctx.parent else ""
        message = exc.format_message().replace("Value error, ", "")  # Typer's pydantic prefix says nothing
        print(f"attnviz: error: {message}{hint}".replace("\n", " "), file=sys.stderr)
        return 2
    except typer.Abort:
        print("attnviz: interrupted", file=sys.stderr)
        return 130
    except KeyboardInterrupt:
        print("attnviz: interrupted", file=sys.stderr)
        return 130
    except AttnvizError as exc:
        print(f"attnviz: error: {exc}".replace("\n", "\\n"), file=sys.stderr)
        return exc.exit_code
    except (BrokenPipeError, ClosedPipe):
        _drop_stdout()
        return 141
    except OSError as exc:
        if exc.filename is not None or exc.errno not in STDOUT_FULL:  # not stdout's: a bug, shown as one
            raise
        _drop_stdout()
        print(f"attnviz: error: stdout: {exc.strerror or exc}", file=sys.stderr)
        return 1


#: What a write to a full or failing stdout raises (`> /dev/full`). Every file attnviz writes itself names its path
#: in an `OutputError`, so an unnamed one of these reaching `main` is stdout's.
STDOUT_FULL = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EIO})


def _drop_stdout() -> None:
    """Points the process's stdout at the null device, so the interpreter's last flush of what could not be
    written does not print an "Exception ignored" traceback at exit. Only the real stdout: a caller of `main()`
    that replaced `sys.stdout` keeps its own."""
    real = sys.__stdout__
    if real is None or sys.stdout is not real:
        return
    with contextlib.suppress(OSError):
        real.flush()
    try:
        null = os.open(os.devnull, os.O_WRONLY)
        os.dup2(null, real.fileno())
        os.close(null)
    except (OSError, ValueError):  # a stdout with no descriptor: nothing to drop
        pass
