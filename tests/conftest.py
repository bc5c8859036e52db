"""Fixtures; shared helpers live in `helpers.py`."""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from attnviz.models.base import Encoder
from attnviz.models.registry import create_encoder
from attnviz.options import Backend

import helpers

# Under pytest-xdist (`make test` runs two workers), each worker gives torch's intra-op threads its share of the
# cores: two workers at torch's default of every core would spin on each other's. (ONNX Runtime sessions and the
# CLI's subprocesses still size themselves to the machine.)
if os.environ.get("PYTEST_XDIST_WORKER_COUNT"):
    import torch

    from attnviz.models.devices import cpu_count

    torch.set_num_threads(max(1, cpu_count() // int(os.environ["PYTEST_XDIST_WORKER_COUNT"])))


@pytest.hookimpl(tryfirst=True)  # before pytest-xdist's own hook, which reads the groups into the node ids
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Under pytest-xdist's `--dist loadgroup`, the Ray tests share one worker, and so one local cluster."""
    for item in items:
        if item.get_closest_marker("ray") is not None:
            item.add_marker(pytest.mark.xdist_group("ray"))


@pytest.hookimpl(trylast=True)
def pytest_collection_finish(session: pytest.Session) -> None:
    """Refuse to run on a pytest-xdist worker whose groups did not take: pytest-xdist 3.8 cannot name them on pytest
    9.2 (pytest-xdist issue 1386), and the sweep's giants would then share the machine's memory."""
    if not os.environ.get("PYTEST_XDIST_WORKER") or session.config.getoption("dist", None) != "loadgroup":
        return
    for item in session.items:
        if item.get_closest_marker("xdist_group") is not None and "@" not in item.nodeid:
            raise pytest.UsageError(
                f"{item.nodeid}: its xdist_group was not applied (pytest-xdist issue 1386); use pytest<9.2"
            )


# Keep the derived-tensor cache of the test run out of the user's home, and remove it afterwards. pytest-xdist's
# workers share the controller's (set here before they start): its files are written atomically, and the tests that
# look at a cache's contents make their own.
if "ATTNVIZ_CACHE" not in os.environ:
    os.environ["ATTNVIZ_CACHE"] = tempfile.mkdtemp(prefix="attnviz-test-cache-")
    atexit.register(shutil.rmtree, os.environ["ATTNVIZ_CACHE"], ignore_errors=True)
# The suite exports many weight files to ONNX; the tiny encoder's export (below) must outlive them all.
os.environ.setdefault("ATTNVIZ_KEEP_EXPORTS", "100000")


@pytest.fixture(scope="session", autouse=True)
def _tiny_exported() -> None:
    """The tiny encoder's ONNX export made once, up front: the first run of an encoder says "exported ..." on
    stderr, and the CLI tests read stderr as a run with the export cached has it (test_runtime checks the line)."""
    from attnviz.models.export import ensure_onnx
    from attnviz.models.runtime import NEEDS, installed

    if all(installed(module) for module in NEEDS[Backend.onnxruntime]):
        ensure_onnx(create_encoder("tiny_test"), lambda _: None)


@pytest.fixture(scope="session")
def lite0() -> Encoder:
    return create_encoder("efficientnet_lite0")


@pytest.fixture(scope="session")
def samples() -> Path:
    return helpers.SAMPLES


@pytest.fixture
def small_png(tmp_path: Path) -> Path:
    path = tmp_path / "small.png"
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 255, (40, 56, 3), dtype=np.uint8)).save(path)
    return path


@pytest.fixture
def ctrl_c_reaches_python() -> Iterator[None]:
    """Python's own Ctrl-C handler for the test, and for its child processes.

    A shell starts a background job (`make test &`) with SIGINT ignored, and attnviz rightly leaves an ignored
    SIGINT ignored; these tests are about what Ctrl-C does, so they put the handler an interactive run has.
    """
    import signal

    before = signal.signal(signal.SIGINT, signal.default_int_handler)  # children start with SIGINT at default
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, before)
