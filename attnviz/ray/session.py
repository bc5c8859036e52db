"""The cluster a Ray run uses: the caller's, one named by `--ray-address`, or a local one started for the run, kept
quiet and shut down after it."""

from __future__ import annotations

import logging
import os
import re
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from attnviz.errors import ComputeError, UsageError
from attnviz.models.devices import cpu_count

#: Seconds to wait for a named cluster's port before saying it cannot be reached (Ray's own wait is a minute).
REACH_TIMEOUT = 5.0

#: `host:port` or `[IPv6]:port`, optionally after `ray://`: the addresses whose port can be tried before Ray is.
_ADDRESS = re.compile(r"(?:ray://)?(?:\[(?P<ipv6>[0-9A-Fa-f:.]+)\]|(?P<host>[^:/\s\[\]]+)):(?P<port>\d{1,5})", re.I)
#: `scheme://...`: `ray://host` (Ray Client's default port, 10001) and Ray's `module://` client schemes.
_SCHEME = re.compile(r"(?P<scheme>[A-Za-z][A-Za-z0-9+.-]*)://(?P<rest>\S+)")
#: What --ray-address takes, as the error for anything else says it.
ADDRESS_FORMS = "HOST:PORT (the head's GCS port, 6379 unless changed), ray://HOST[:PORT], or auto"


def check_address(address: str) -> str:
    """The address as Ray takes it (stripped, `auto` and the scheme in lower case), or a usage error at once for
    what is no cluster address: Ray would answer some with advice about RAY_ADDRESS (which attnviz does not read)
    and retry others (a port over 65535) without end. `local` is refused: leaving the option out is that."""
    text = address.strip()
    if text.lower() == "auto":
        return "auto"
    if text.lower() == "local":
        raise UsageError("--ray-address local: leave --ray-address out for a Ray started for the run")
    scheme = _SCHEME.fullmatch(text)
    if scheme is not None:
        name = scheme["scheme"].lower()
        if name in ("http", "https"):
            raise UsageError(
                f"--ray-address {address!r} is the dashboard's address, for job submission; give {ADDRESS_FORMS}"
            )
        text = f"{name}://{scheme['rest']}"
        if name != "ray" or _ADDRESS.fullmatch(text) is None:
            return text  # ray://HOST without a port, or another client scheme: Ray's to judge
    match = _ADDRESS.fullmatch(text)
    if match is None:
        raise UsageError(f"--ray-address {address!r} is not a Ray cluster's address; give {ADDRESS_FORMS}")
    if not 0 < int(match["port"]) <= 65535:
        raise UsageError(f"--ray-address {address!r}: port {int(match['port'])} is not between 1 and 65535")
    return text


def check_reachable(address: str) -> None:
    """A `host:port` or `ray://host:port` address must accept a connection within `REACH_TIMEOUT`, else one line.

    Ray itself keeps retrying an unreachable address for about a minute before it gives up. Anything else (`auto`,
    `local`, `ray://host`) is left to Ray. A host name is looked up first, outside the timeout.
    """
    import socket

    match = _ADDRESS.fullmatch(address.strip())
    if match is None or not 0 < int(match["port"]) <= 65535:
        return
    host = match["ipv6"] or match["host"]
    try:
        socket.create_connection((host, int(match["port"])), timeout=REACH_TIMEOUT).close()
    except OSError as exc:
        reason = exc.strerror or str(exc) or type(exc).__name__
        raise ComputeError(f"cannot reach the Ray cluster at {address}: {reason}") from None


def last_line(exc: BaseException) -> str:
    lines = [line for line in str(exc).strip().splitlines() if line.strip()]
    return lines[-1].strip() if lines else type(exc).__name__


def _failure(address: str | None, exc: Exception) -> str:
    """Ray's reason, where it is not advice about its own flags: `auto` that finds nothing says so plainly."""
    if address is None:
        return f"cannot start a local Ray: {last_line(exc)}"
    if address == "auto" and isinstance(exc, ConnectionError):
        return "--ray-address auto found no Ray cluster on this machine (start one with `ray start --head`)"
    return f"cannot reach the Ray cluster at {address}: {last_line(exc)}"


def _set_environment(values: dict[str, str | None]) -> None:
    for key, value in values.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value


@contextmanager
def _scoped_environment(values: dict[str, str | None]) -> Iterator[None]:
    """`values` set (None: removed) for the block, and everything as it was after."""
    before = {key: os.environ.get(key) for key in values}
    _set_environment(values)
    try:
        yield
    finally:
        _set_environment(before)


@contextmanager
def _discarded_stderr() -> Iterator[None]:
    """File descriptor 2 goes nowhere for the block: Ray's C++ core writes to it directly."""
    sys.stderr.flush()
    saved = os.dup(2)
    with open(os.devnull, "wb") as nowhere:
        os.dup2(nowhere.fileno(), 2)
        try:
            yield
        finally:
            os.dup2(saved, 2)
            os.close(saved)


@contextmanager
def _children_ignore_ctrl_c() -> Iterator[None]:
    """Ctrl-C in a terminal signals the whole foreground process group, so the raylet and the GCS a local Ray
    starts would die at once, mid-run, under a driver still waiting on them (a raylet's death ends the driver in
    exit 1, nothing said). Started while SIGINT is ignored, they inherit that; only the driver stops, then shuts
    them down. The cost: a Ctrl-C in the seconds the local Ray takes to start is dropped. Python lets only its
    main thread set handlers, and the caller's handler is restored after."""
    import signal
    import threading

    if threading.current_thread() is not threading.main_thread():
        yield
        return
    handler = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        yield
    finally:  # None: a handler not set from Python (an embedding program's), which Python cannot put back
        signal.signal(signal.SIGINT, signal.default_int_handler if handler is None else handler)


@contextmanager
def _worker_errors_unprinted() -> Iterator[None]:
    """A driver started by `ray.init` prints every error its workers publish (a task retried, a worker that died,
    an actor that failed to start, tracebacks and all) on *stdout*, whatever `log_to_driver` says: that would break
    `--json` lines and the one-line errors. The job's failure still reaches us as an exception. Ray 2.x prints them
    through `ray._private.worker.print_to_stdstream`, looked up at each message; where it has no such function,
    nothing is changed."""
    from ray._private import worker

    printer = getattr(worker, "print_to_stdstream", None)
    if printer is None:
        yield
        return
    worker.print_to_stdstream = lambda data, ignore_prefix: None
    try:
        yield
    finally:
        worker.print_to_stdstream = printer


@contextmanager
def ray_session(address: str | None) -> Iterator[None]:
    """A cluster for the run: the caller's when Ray is already initialised, `address`'s, or a local one started
    for the run and shut down after it."""
    import ray

    if ray.is_initialized():
        yield
        return
    if address is not None:
        address = check_address(address)
        check_reachable(address)
    # Ray's C++ core logs to the process's stderr: at start it announces its log level and retries a connection
    # line by line, later it warns about actor arguments on every run. Its errors reach us as exceptions, so only
    # fatal ones are printed, nothing during ray.init, and a failure to start or connect is one line.
    # `auto` would also read RAY_ADDRESS, which attnviz does not.
    settings: dict[str, str | None] = {"RAY_BACKEND_LOG_LEVEL": "fatal", "RAY_ADDRESS": None}
    quiet: dict[str, Any] = {"log_to_driver": False, "logging_level": logging.ERROR}
    with _worker_errors_unprinted():
        try:
            with _scoped_environment(settings), _discarded_stderr():
                if address is None:  # "local": never the cluster RAY_ADDRESS or a `ray start` here names
                    with _children_ignore_ctrl_c():
                        ray.init(address="local", num_cpus=cpu_count(), include_dashboard=False, **quiet)
                else:
                    ray.init(address=address, **quiet)
        except Exception as exc:
            ray.shutdown()  # a head node started before the failure is not left behind
            raise ComputeError(_failure(address, exc)) from None
        try:
            yield
        finally:
            ray.shutdown()
