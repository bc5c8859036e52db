"""`make install`'s disk check (scripts/check_disk.py): a fresh install on a full disk stops in one line, before pip
fails half-way with an OSError (what CI printed once, at 4.3 GB free)."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def run(venv: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "check_disk.py"), str(venv)], capture_output=True, text=True
    )


def test_a_disk_with_room_passes_in_silence(tmp_path: Path) -> None:
    free = shutil.disk_usage(tmp_path).free / 2**30
    if free < 9:
        pytest.skip(f"this disk has only {free:.1f} GiB free")
    done = run(tmp_path / "not-yet" / ".venv")
    assert (done.returncode, done.stdout, done.stderr) == (0, "", "")


def test_the_refusal_says_where_and_how_much(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    sys.path.insert(0, str(ROOT / "scripts"))
    import check_disk

    monkeypatch.setattr(check_disk, "free_gib", lambda path: 4.3)
    assert check_disk.main([str(tmp_path / ".venv")]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert f"({tmp_path / '.venv'}) has 4.3 GiB free" in err and f"needs about {check_disk.NEEDED_GIB:.0f} GiB" in err
