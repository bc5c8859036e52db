"""The layout's promises: stages in subpackages that say what they own, small modules, no import cycles, a
torch-free command line, and a library that leaves its caller's process as it found it."""

from __future__ import annotations

import ast
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import torch

from helpers import SAMPLES, SUBPROCESS_SETUP

PACKAGE = Path(__file__).resolve().parent.parent / "attnviz"
#: Modules stay small enough to read in one sitting.
MAX_LINES = 320


def modules() -> dict[str, Path]:
    found = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        found[name] = path
    return found


def top_level_imports(path: Path, known: dict[str, Path], inside_functions: bool = False) -> set[str]:
    """attnviz modules imported when `path` is imported: module level, outside `if TYPE_CHECKING:`; with
    `inside_functions`, every import anywhere in the module (a function's import is a dependency all the same).

    `from package import module` counts as importing the module (the package is already being imported).
    """
    tree = ast.parse(path.read_text())
    names: set[str] = set()
    typing_only = {
        id(n)
        for node in ast.walk(tree)
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test)
        for n in ast.walk(node)
    }
    nodes = [n for n in ast.walk(tree) if id(n) not in typing_only] if inside_functions else tree.body
    for node in nodes:
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("attnviz"):
            submodules = {f"{node.module}.{alias.name}" for alias in node.names} & set(known)
            names.update(submodules)
            if len(submodules) < len(node.names):
                names.add(node.module)
        elif isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names if alias.name.startswith("attnviz"))
    return names


def test_every_subpackage_says_what_it_owns_in_one_docstring() -> None:
    for init in PACKAGE.glob("*/__init__.py"):
        doc = ast.get_docstring(ast.parse(init.read_text()))
        assert doc and len(doc.split(".")[0]) < 200, init


def test_no_module_is_long() -> None:
    long = {name: n for name, path in modules().items() if (n := len(path.read_text().splitlines())) > MAX_LINES}
    assert not long, long


def test_there_are_no_import_cycles_counting_imports_inside_functions() -> None:
    known = modules()
    graph = {
        name: {m for m in top_level_imports(path, known, inside_functions=True) if m in known and m != name}
        for name, path in known.items()
    }
    state: dict[str, int] = {}

    def visit(node: str, trail: list[str]) -> None:
        state[node] = 1
        for nxt in graph[node]:
            if state.get(nxt) == 1:
                raise AssertionError("import cycle: " + " -> ".join([*trail[trail.index(nxt) :], nxt]))
            if nxt not in state:
                visit(nxt, [*trail, nxt])
        state[node] = 2

    for name in graph:
        if name not in state:
            visit(name, [name])


def test_help_and_version_import_no_torch() -> None:
    code = (
        "import sys\nfrom attnviz.cli import main\n"
        "for args in (['--help'], ['--version'], ['run', '--help']):\n"
        "    main(args)\n"
        "heavy = [m for m in ('torch', 'numpy', 'PIL', 'matplotlib', 'ray', 'pyarrow') if m in sys.modules]\n"
        "assert not heavy, heavy\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr


def test_the_library_leaves_the_callers_process_as_it_found_it(tmp_path: Path) -> None:
    """In a fresh interpreter: import attnviz and explain a photo; Pillow's guard, the umask, the torch thread count
    and both RNGs are as they were."""
    code = SUBPROCESS_SETUP + (
        "import os, random, numpy as np, torch\n"
        "from PIL import Image\n"
        "os.umask(0o027); torch.set_num_threads(1); torch.manual_seed(7); np.random.seed(7); random.seed(7)\n"
        "before = (Image.MAX_IMAGE_PIXELS, os.umask(0o027), torch.get_num_threads(), torch.random.get_rng_state(),\n"
        "          np.random.get_state()[1].copy(), random.getstate())\n"
        "import attnviz\n"
        f"attnviz.explain({str(SAMPLES / 'coffee.png')!r}, mode='concat', device='cpu')\n"
        "from attnviz.batch.options import RunOptions\n"
        "from attnviz.batch.runner import Runner\n"
        "import io\n"
        f"Runner(RunOptions(encoder='tiny_test', size=64, output={str(tmp_path)!r}), io.StringIO())"
        f".run([{str(SAMPLES / 'coffee.png')!r}], None, io.BytesIO())\n"
        "after = (Image.MAX_IMAGE_PIXELS, os.umask(0o027), torch.get_num_threads(), torch.random.get_rng_state(),\n"
        "         np.random.get_state()[1].copy(), random.getstate())\n"
        "assert before[0] == after[0] == 89478485, after[0]\n"
        "assert before[1] == after[1] == 0o027\n"
        "assert before[2] == after[2] == 1, after[2]\n"
        "assert torch.equal(before[3], after[3])\n"
        "assert (before[4] == after[4]).all() and before[5] == after[5]\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "coffee.attn-concat.png").exists()


def test_huggingface_settings_are_never_rewritten(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    import huggingface_hub.constants as hub
    import pytest

    from attnviz.errors import AttnvizError
    from attnviz.models.registry import create_encoder

    before = hub.HF_HUB_OFFLINE
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(AttnvizError):
        create_encoder("timm:resnet18")  # not cached here: a one-line error, whatever the network
    assert before == hub.HF_HUB_OFFLINE
    assert "socket" not in (PACKAGE / "models" / "timm_models.py").read_text()


def test_explainers_on_two_devices_do_not_share_a_moved_encoder() -> None:
    from attnviz.explainer import Explainer

    first = Explainer("tiny_test", "dot", 64, device="cpu")
    other = Explainer("tiny_test", "dot", 64, device="meta")  # any non-CPU device gets its own copy
    assert next(other.encoder.parameters()).device.type == "meta"
    assert next(first.encoder.parameters()).device.type == "cpu"
    assert Explainer("tiny_test", "dot", 64, device="cpu").encoder is first.encoder  # the CPU one is shared


def test_a_runner_runs_twice(tmp_path: Path) -> None:
    import io

    from attnviz.batch.options import RunOptions
    from attnviz.batch.runner import Runner

    options = RunOptions(encoder="tiny_test", size=64, output=str(tmp_path), overwrite=True)
    runner = Runner(options, io.StringIO())
    photo = str(SAMPLES / "coffee.png")
    assert runner.run([photo], None, io.BytesIO()) == 0
    assert runner.run([photo], None, io.BytesIO()) == 0  # the same output again: not refused as a collision


def test_overflowing_scores_are_rescaled_but_the_context_is_of_the_real_features() -> None:
    from attnviz.attention.scorers import DotScorer

    h = torch.full((1, 3, 2), 1e30)  # (B, N, C): h . q overflows float32
    h[0, 1] *= 2
    q = torch.full((1, 2), 1e20)
    attention = DotScorer()(h, q)
    assert torch.isfinite(attention.scores).all() and int(attention.weights.argmax()) == 1
    expected = (attention.weights[..., None] * h).sum(1)  # (B, C)
    torch.testing.assert_close(attention.context, expected)
    assert float(attention.context.max()) > 1e29


def test_declared_numpy_floor_has_what_the_code_uses() -> None:
    text = (PACKAGE.parent / "pyproject.toml").read_text()
    floor = next(line for line in text.splitlines() if line.strip().startswith('"numpy>='))
    assert floor.strip().startswith('"numpy>=2'), floor  # np.trapezoid is NumPy 2.0
    assert hasattr(np, "trapezoid")
    assert os.environ.get("CI") is None or sys.version_info >= (3, 10)


def test_nothing_outside_cli_imports_from_it() -> None:
    known = modules()
    leaks = {
        name: sorted(m for m in top_level_imports(path, known, inside_functions=True) if m.startswith("attnviz.cli"))
        for name, path in known.items()
        if not name.startswith("attnviz.cli")
    }
    assert not {name: found for name, found in leaks.items() if found}


def test_a_record_field_is_declared_once_and_the_arrow_schema_and_the_audit_follow_it() -> None:
    # in a subprocess: importing attnviz.ray imports Ray, whose auth settings are read once per process, and
    # tests/test_ray.py's cluster must be the first to set them in this one
    code = (
        "from typing import get_type_hints\n"
        "from attnviz.audit.records import _KEPT, AuditRecord\n"
        "from attnviz.ray.records import SCHEMA\n"
        "from attnviz.record import NOT_IN_JSON, Record\n"
        "declared = list(get_type_hints(Record))\n"
        "assert SCHEMA.names == declared, SCHEMA.names  # the columns in the JSON line's order\n"
        "assert str(SCHEMA.field('weights').type) == 'list<item: float>'  # float32: the audit's contract\n"
        "assert str(SCHEMA.field('target').type) == 'struct<index: int64, label: string, prob: double>'\n"
        "assert set(declared) - set(NOT_IN_JSON) <= _KEPT <= set(get_type_hints(AuditRecord))\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=PACKAGE.parent)
    assert result.returncode == 0, result.stderr
