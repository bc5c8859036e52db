"""`attnviz.ray` and `run --engine ray` on one local Ray cluster shared by the tests (`-m 'not ray'` leaves them
out): the same files and JSON lines as the local engine, error records for broken files, a killed worker that
loses and duplicates nothing, resuming, and the README's recipe as written."""

from __future__ import annotations

import json
import logging
import os
import re
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image

from helpers import SAMPLES, SUBPROCESS_SETUP, TESTS, TINY, run

ROOT = TESTS.parent
RAY_SETTINGS = ("HOME", "PYTHONPATH", "RAY_AUTH_MODE", "RAY_AUTH_TOKEN", "RAY_local_fs_capacity_threshold")


def _register_tiny() -> None:
    """Each Ray worker runs this first; unpickling it there imports this module, whose `helpers` import registers
    the tiny encoder, as it is registered here."""


def _ray_processes(marker: str) -> list[int]:
    """Processes whose command line names `marker` (the cluster's own temporary folder)."""
    found = []
    for entry in Path("/proc").iterdir():
        try:
            if entry.name.isdigit() and marker in (entry / "cmdline").read_bytes().decode(errors="replace"):
                found.append(int(entry.name))
        except OSError:
            continue
    return found


@pytest.fixture(scope="module")
def cluster() -> Iterator[None]:
    """One `ray.init(num_cpus=2)` for every test here. Token auth gets its token from the environment and HOME
    points at a temporary folder, so nothing is written under the real home; no Ray process outlives it. Module
    scope: the cluster (raylet, GCS, idle workers: cores and gigabytes) is shut down when this module is done, not
    kept running through the rest of the suite (the architecture sweep)."""
    real_token = Path.home() / ".ray" / "auth_token"
    had_token = real_token.exists()
    saved = {key: os.environ.get(key) for key in RAY_SETTINGS}
    home, temp = tempfile.mkdtemp(prefix="attnviz-ray-home-"), tempfile.mkdtemp(prefix="avr-")
    os.environ.update(
        HOME=home,
        PYTHONPATH=os.pathsep.join([str(TESTS), str(ROOT), *filter(None, [saved["PYTHONPATH"]])]),
        RAY_AUTH_MODE="token",  # read when Ray is imported, so set before
        RAY_AUTH_TOKEN=secrets.token_hex(16),
        # The raylet warns, line by line, when the disk is fuller than this (95% by default, as on CI's machine):
        # at 1% it always does, so no test here depends on how full the disk happens to be.
        RAY_local_fs_capacity_threshold="0.01",
    )
    ray = pytest.importorskip("ray")
    ray.init(
        num_cpus=2,
        _temp_dir=temp,
        include_dashboard=False,
        logging_level=logging.WARNING,
        log_to_driver=False,  # as attnviz's own Ray: a raylet's warnings (a disk over 95% full) are not attnviz's
        runtime_env={"worker_process_setup_hook": _register_tiny},
    )
    try:
        yield
    finally:
        ray.shutdown()
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        deadline = time.monotonic() + 60  # Ray stops its processes asynchronously; slow on a loaded machine
        while _ray_processes(temp) and time.monotonic() < deadline:
            time.sleep(0.5)
        left = _ray_processes(temp)
        shutil.rmtree(home, ignore_errors=True)
        shutil.rmtree(temp, ignore_errors=True)
        assert not left, f"Ray processes left running: {left}"
        assert real_token.exists() == had_token, "a Ray auth token was left under the home folder"


def _photos(folder: Path, count: int, size: tuple[int, int] = (72, 56)) -> Path:
    rng = np.random.default_rng(count)
    (folder / "sub").mkdir(parents=True, exist_ok=True)
    for i in range(count):
        where = folder / "sub" if i % 2 else folder
        Image.fromarray(rng.integers(0, 255, (size[1], size[0], 3), dtype=np.uint8)).save(where / f"p{i}.png")
    return folder


def _lines(out: bytes, prefix: str) -> list[dict[str, Any]]:
    """JSON lines with the output folder taken out of the paths, so two runs into two folders compare."""
    return [json.loads(line.replace(prefix, "OUT")) for line in out.decode().splitlines()]


def _outputs(folder: Path) -> set[str]:
    return {str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file()}


@pytest.mark.ray
def test_the_same_files_and_json_lines_as_the_local_engine(capsysbinary, cluster, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    photos = tmp_path / "photos"
    (photos / "sub").mkdir(parents=True)
    for name, where in (("chelsea.png", photos), ("coffee.png", photos / "sub"), ("astronaut.png", photos)):
        shutil.copy(SAMPLES / name, where / name)
    code, local_out, err = run(capsysbinary, "run", photos, "-o", tmp_path / "local", "--json", "-k", "2")
    assert code == 0, err
    code, ray_out, err = run(
        capsysbinary, "run", photos, "-o", tmp_path / "ray", "--json", "-k", "2", "--engine", "ray", "--workers", "1"
    )
    assert code == 0, err
    assert "attnviz: 3 written, 0 skipped, 0 failed" in err
    assert _outputs(tmp_path / "ray") == _outputs(tmp_path / "local") and len(_outputs(tmp_path / "local")) == 6
    for name in _outputs(tmp_path / "local"):
        drawn = np.asarray(Image.open(tmp_path / "local" / name), np.int16)
        again = np.asarray(Image.open(tmp_path / "ray" / name), np.int16)
        assert drawn.shape == again.shape and np.abs(drawn - again).max() <= 2, name
    local = _lines(local_out, str(tmp_path / "local"))
    ray = _lines(ray_out, str(tmp_path / "ray"))
    assert [list(r) for r in ray] == [list(r) for r in local]  # the same fields, in the same order
    for a, b in zip(local, ray, strict=True):
        for field in ("input", "output", "mode", "encoder", "size", "classify_size", "grid", "target"):
            if field == "target":
                assert a[field]["index"] == b[field]["index"] and a[field]["prob"] == pytest.approx(
                    b[field]["prob"], abs=1e-4
                )
            else:
                assert a[field] == b[field], field
        assert [t["index"] for t in a["topk"]] == [t["index"] for t in b["topk"]]
        assert [m["output"] for m in a["maps"]] == [m["output"] for m in b["maps"]]
        assert np.abs(np.subtract(a["peak"], b["peak"])).max() <= 8


def _broken_folder(folder: Path) -> Path:
    _photos(folder, 2)
    (folder / "empty.png").write_bytes(b"")
    (folder / "text.png").write_text("not an image\n")
    jpeg = folder / "cut.jpg"
    Image.fromarray(np.zeros((64, 64, 3), np.uint8)).save(jpeg)
    jpeg.write_bytes(jpeg.read_bytes()[:200])
    (folder / "gone.png").symlink_to(folder / "nowhere.png")
    return folder


@pytest.mark.ray
def test_broken_files_are_error_records_and_exit_1_not_a_failed_job(capsysbinary, cluster, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    photos = _broken_folder(tmp_path / "photos")
    code, local_out, _ = run(capsysbinary, "run", photos, *TINY, "-o", tmp_path / "local", "--json")
    assert code == 1
    code, ray_out, err = run(
        capsysbinary, "run", photos, *TINY, "-o", tmp_path / "ray", "--json", "--engine", "ray", "--workers", "1"
    )
    assert code == 1
    assert "Ray job failed" not in err and "attnviz: 2 written, 0 skipped, 4 failed" in err
    ray, local = _lines(ray_out, str(tmp_path / "ray")), _lines(local_out, str(tmp_path / "local"))
    errors = [r for r in ray if "error" in r]
    assert errors == [r for r in local if "error" in r] and len(errors) == 4  # the same messages, in input order
    assert {e["input"].rsplit("/", 1)[-1] for e in errors} == {"empty.png", "text.png", "cut.jpg", "gone.png"}
    assert [r["input"] for r in ray] == [r["input"] for r in local]
    assert (
        _outputs(tmp_path / "ray") == _outputs(tmp_path / "local") == {"p0.attn-concat.png", "sub/p1.attn-concat.png"}
    )


class DyingOnce:
    """`ExplainBatches` whose process exits, once, right after writing its first batch's files: the worst moment,
    files on disk and no record returned. Whether it has died yet is a file, shared by its restarts."""

    def __init__(self, marker: str, **settings: Any) -> None:
        from attnviz.ray import ExplainBatches

        self.inner = ExplainBatches(**settings)
        self.marker = Path(marker)

    def __call__(self, batch: dict[str, Any]) -> Any:
        table = self.inner(batch)
        if not self.marker.exists():
            self.marker.touch()
            os._exit(1)
        return table


@pytest.mark.ray
@pytest.mark.filterwarnings("ignore:`ray_remote_args` is deprecated")  # Ray 2.60's only way to set retries
def test_a_worker_killed_mid_run_loses_and_duplicates_nothing(cluster, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    import ray

    from attnviz.ray.engine import ACTOR_OPTIONS, RETRIES

    photos = _photos(tmp_path / "photos", 6)
    settings = {"output": str(tmp_path / "maps"), "root": str(photos), "encoder": "tiny_test", "size": 64}
    records = (
        ray.data.read_binary_files(str(photos), include_paths=True)
        .map_batches(
            DyingOnce,
            fn_constructor_kwargs={"marker": str(tmp_path / "died"), **settings},
            compute=ray.data.ActorPoolStrategy(size=1),
            batch_size=2,
            **ACTOR_OPTIONS,
            **RETRIES,
        )
        .take_all()
    )
    assert (tmp_path / "died").exists()  # the worker did die
    assert sorted(Path(r["input"]).name for r in records) == [f"p{i}.png" for i in range(6)]
    assert all(r["error"] is None and len(r["weights"]) == np.prod(r["grid"]) for r in records)
    expected = {f"{'sub/' if i % 2 else ''}p{i}.attn-concat.png" for i in range(6)}
    assert _outputs(tmp_path / "maps") == expected  # every map once, no temporary files left


class AlwaysDying:
    """A worker that dies on every batch: a file that crashes its decoder, say."""

    def __init__(self, **settings: Any) -> None:
        pass

    def __call__(self, batch: dict[str, Any]) -> Any:
        os._exit(1)


@pytest.mark.ray
def test_a_batch_that_always_kills_its_worker_ends_the_run_in_one_line(  # type: ignore[no-untyped-def]
    capsysbinary, cluster, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Retries are finite (Ray's default would restart forever), and a run that cannot finish says so in one line."""
    from attnviz.ray import engine

    monkeypatch.setattr(engine, "ExplainBatches", AlwaysDying)
    monkeypatch.setattr(engine, "RETRIES", {"max_restarts": 1, "max_task_retries": 1})
    photos = _photos(tmp_path / "photos", 2)
    code, _, err = run(capsysbinary, "run", photos, *TINY, "-o", tmp_path / "maps", "--engine", "ray", "--workers=1")
    assert code == 1
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("attnviz: error: the Ray job failed: "), err


def _own_ray_environment(tmp_path: Path, ray_tmp: str, **env: str) -> dict[str, str]:
    """No Ray settings but `env`'s; HOME and Ray's temporary root (RAY_TMPDIR, short for Ray's socket paths) in
    folders of the test's own: the local Ray that attnviz starts there is attnviz's alone."""
    (tmp_path / "home").mkdir()
    settings = {k: v for k, v in os.environ.items() if not k.startswith("RAY_")}
    settings.update(HOME=str(tmp_path / "home"), RAY_TMPDIR=ray_tmp, **env)
    return settings


def _attnvizs_own_ray(tmp_path: Path, code: str, **env: str) -> subprocess.CompletedProcess[str]:
    """`python -c code` in `_own_ray_environment`."""
    ray_tmp = tempfile.mkdtemp(prefix="avr-")
    settings = _own_ray_environment(tmp_path, ray_tmp, **env)
    try:
        return subprocess.run(
            [sys.executable, "-c", SUBPROCESS_SETUP + code],
            capture_output=True,
            text=True,
            cwd=tmp_path,
            env=settings,
            timeout=300,
        )
    finally:
        shutil.rmtree(ray_tmp, ignore_errors=True)


@pytest.mark.ray
def test_attnvizs_own_ray_keeps_its_logs_off_stderr_on_a_nearly_full_disk(tmp_path: Path) -> None:
    """Without --ray-address, attnviz starts a local Ray. Its raylet warns when the disk is over a threshold (95%
    full by default, as on CI's machine; here 1%) and when a worker dies; none of that reaches the user, whose
    stderr holds the failed run's one line."""
    photos = _photos(tmp_path / "photos", 2)
    code = (
        "import os\n"
        "from attnviz.cli.process import ray_token\n"
        "ray_token()\n"  # what the CLI does before Ray is imported, as the next line imports it
        "from attnviz.ray import engine\n"
        "class AlwaysDying:\n"
        "    def __init__(self, **settings): pass\n"
        "    def __call__(self, batch): os._exit(1)\n"
        "engine.ExplainBatches = AlwaysDying\n"  # defined in __main__: Ray ships it to the workers by value
        "engine.RETRIES = {'max_restarts': 1, 'max_task_retries': 1}\n"
        "from attnviz.cli import main\n"
        f"sys.exit(main(['run', {str(photos)!r}, *{TINY!r}, '-o', 'maps', '--engine', 'ray', '--workers=1', '--json']))\n"
    )
    done = _attnvizs_own_ray(tmp_path, code, RAY_local_fs_capacity_threshold="0.01")
    assert done.returncode == 1, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("attnviz: error: the Ray job failed: "), done.stderr
    assert done.stdout == ""  # Ray's driver prints its workers' errors on stdout, in the JSON lines' way
    assert not (tmp_path / "maps").exists() or not any((tmp_path / "maps").iterdir())


def _program(pid: int) -> str:
    try:
        return Path(Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")[0].decode()).name
    except OSError:  # it has just exited
        return ""


def _ignores_sigint(pid: int) -> bool:
    """From /proc: bit SIGINT - 1 of the process's mask of ignored signals."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return False
    for line in status.splitlines():
        if line.startswith("SigIgn:"):
            return bool(int(line.split()[1], 16) >> (signal.SIGINT - 1) & 1)
    return False


@pytest.mark.ray
@pytest.mark.usefixtures("ctrl_c_reaches_python")
def test_ctrl_c_stops_the_driver_which_shuts_its_ray_down(tmp_path: Path) -> None:
    """Ctrl-C in a terminal signals the whole process group: attnviz and the Ray it started. Ray's processes are
    started ignoring it, so the driver alone stops, says so with the summary, exits 130 and shuts its Ray down."""
    photos = _photos(tmp_path / "photos", 3)
    started, hit = tmp_path / "started", tmp_path / "the actor got SIGINT"
    code = SUBPROCESS_SETUP + (
        "import os, time\n"
        "from attnviz.cli.process import ray_token\n"
        "ray_token()\n"
        "from attnviz.ray import engine\n"
        "class Stuck:\n"
        "    def __init__(self, **settings): pass\n"
        "    def __call__(self, batch):\n"
        f"        open({str(started)!r}, 'w').close()\n"
        "        try: time.sleep(120)\n"
        f"        except KeyboardInterrupt: open({str(hit)!r}, 'w').close(); raise\n"
        "engine.ExplainBatches = Stuck\n"
        "from attnviz.cli import main\n"
        f"sys.exit(main(['run', {str(photos)!r}, *{TINY!r}, '-o', 'maps', '--engine', 'ray', '--workers=1', '--json']))\n"
    )
    ray_tmp = tempfile.mkdtemp(prefix="avr-")
    proc = subprocess.Popen(
        [sys.executable, "-c", code],
        cwd=tmp_path,
        env=_own_ray_environment(tmp_path, ray_tmp),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,  # a process group of its own, as a terminal's foreground job has
    )
    try:
        deadline = time.monotonic() + 120
        while not started.exists() and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.2)
        assert started.exists(), proc.communicate(timeout=60)
        # the raylet and the GCS: the raylet's death would end the driver at once, in exit 1 with nothing said
        core = [pid for pid in _ray_processes(ray_tmp) if _program(pid) in ("raylet", "gcs_server")]
        assert len(core) == 2 and all(_ignores_sigint(pid) for pid in core)
        os.killpg(proc.pid, signal.SIGINT)
        stdout, stderr = proc.communicate(timeout=120)
        assert proc.returncode == 130, stderr
        assert stderr.strip().splitlines() == [
            "attnviz: error: interrupted; every file written so far is complete (--skip-existing resumes: actors "
            "may have finished more than is reported)",
            "attnviz: 0 written, 0 skipped, 0 failed",
        ]
        assert stdout == ""
        assert not hit.exists()
        deadline = time.monotonic() + 60
        while _ray_processes(ray_tmp) and time.monotonic() < deadline:
            time.sleep(0.5)
        assert not _ray_processes(ray_tmp), "Ray processes were left running"
    finally:
        if proc.poll() is None:  # the driver, and whatever of its Ray is in its process group
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=60)
        for pid in _ray_processes(ray_tmp):
            os.kill(pid, signal.SIGKILL)
        shutil.rmtree(ray_tmp, ignore_errors=True)


@pytest.mark.ray
@pytest.mark.parametrize("stray", ["ray start's file", "RAY_ADDRESS"])
def test_without_ray_address_attnviz_starts_its_own_ray_whatever_else_is_about(tmp_path: Path, stray: str) -> None:
    """A cluster that `ray start` began on this machine (its address in Ray's `ray_current_cluster` file) and
    RAY_ADDRESS are both what a bare `ray.init()` would join, and then refuse: "When connecting to an existing
    cluster, num_cpus ... must not be provided". Without --ray-address the run is on a Ray of its own, as --help
    says; here, the real default encoder on two photos."""
    photos = tmp_path / "photos"
    photos.mkdir()
    for name in ("chelsea.png", "coffee.png"):
        shutil.copy(SAMPLES / name, photos / name)
    code = (
        "from attnviz.cli import main\n"
        f"sys.exit(main(['run', {str(photos)!r}, '-o', 'maps', '--engine', 'ray', '--workers=1', '--quiet']))\n"
    )
    nowhere = "127.0.0.1:1"  # nothing listens there
    if stray == "RAY_ADDRESS":
        done = _attnvizs_own_ray(tmp_path, code, RAY_ADDRESS=nowhere)
    else:
        plant = (
            "import os, pathlib\n"
            "file = pathlib.Path(os.environ['RAY_TMPDIR'], 'ray', 'ray_current_cluster')\n"
            f"file.parent.mkdir(); file.write_text({nowhere!r})\n"
        )
        done = _attnvizs_own_ray(tmp_path, plant + code)
    assert done.returncode == 0, done.stderr
    assert _outputs(tmp_path / "maps") == {"chelsea.attn-concat.png", "coffee.attn-concat.png"}


@pytest.mark.ray
def test_skip_existing_resumes_a_run(capsysbinary, cluster, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    photos = _photos(tmp_path / "photos", 4)
    code, _, err = run(capsysbinary, "run", photos, *TINY, "-o", tmp_path / "maps")
    assert code == 0, err
    lost = tmp_path / "maps" / "sub" / "p3.attn-concat.png"
    kept = tmp_path / "maps" / "p0.attn-concat.png"
    lost.unlink()
    before = kept.stat().st_mtime_ns
    args = (
        "run",
        photos,
        *TINY,
        "-o",
        tmp_path / "maps",
        "--skip-existing",
        "--json",
        "--engine",
        "ray",
        "--workers=1",
    )
    code, out, err = run(capsysbinary, *args)
    assert code == 0, err
    assert "attnviz: 1 written, 3 skipped, 0 failed" in err
    lines = [json.loads(line) for line in out.decode().splitlines()]
    assert [bool(r.get("skipped")) for r in lines] == [True, True, True, False]
    assert lost.exists() and kept.stat().st_mtime_ns == before


@pytest.mark.ray
def test_rows_from_read_images_with_overlays_in_the_records(cluster, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    import io

    import ray

    from attnviz.ray import ACTOR_OPTIONS, ExplainBatches

    photos = _photos(tmp_path / "photos", 2, size=(80, 48))
    rows = (
        ray.data.read_images(str(photos), include_paths=True, mode="RGB")
        .map_batches(
            ExplainBatches,
            fn_constructor_kwargs={"root": str(photos), "overlays": True, "encoder": "tiny_test", "size": 64},
            compute=ray.data.ActorPoolStrategy(size=1),
            batch_size=2,
            **ACTOR_OPTIONS,
        )
        .take_all()
    )
    assert sorted(r["output"] for r in rows) == ["p0.attn-concat.png", "sub/p1.attn-concat.png"]
    for r in rows:
        (png,) = r["overlays"]
        assert Image.open(io.BytesIO(png)).size == (80, 48)
    assert not (Path.cwd() / "p0.attn-concat.png").exists()  # no output folder: nothing written


@pytest.mark.ray
def test_the_readme_recipe_runs_as_written(cluster, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:  # type: ignore[no-untyped-def]
    import pyarrow.parquet as pq

    readme = (ROOT / "README.md").read_text()
    recipe = re.search(r"\n## On Ray\n.*?```python\n(.*?)```", readme, re.S)
    assert recipe is not None
    (tmp_path / "photos").mkdir()
    for name in ("chelsea.png", "coffee.png"):
        shutil.copy(SAMPLES / name, tmp_path / "photos" / name)
    monkeypatch.chdir(tmp_path)
    exec(compile(recipe.group(1), "README.md", "exec"), {})
    assert _outputs(tmp_path / "maps") == {"chelsea.attn-concat.png", "coffee.attn-concat.png"}
    table = pq.read_table(tmp_path / "records").to_pylist()
    assert sorted(r["target"]["label"] for r in table) == ["Egyptian cat", "espresso"]
    for r in table:
        weights = np.asarray(r["weights"], np.float32)
        assert weights.size == r["grid"][0] * r["grid"][1] and weights.sum() == pytest.approx(1.0, abs=1e-4)
    from attnviz.cli import main  # the run's records are an audit's: `audit --from` reports on them, no network

    assert main(["audit", "--from", "records", "-o", "audit", "-q"]) == 0
    audited = [json.loads(line) for line in (tmp_path / "audit" / "records.jsonl").read_text().splitlines()]
    assert sorted(r["target"]["label"] for r in audited) == ["Egyptian cat", "espresso"]
    assert all(
        r["weights"] == pytest.approx(t["weights"])
        for r, t in zip(audited, sorted(table, key=lambda t: t["input"]), strict=True)
    )
    assert "Egyptian cat" in (tmp_path / "audit" / "report.html").read_text()


def test_without_ray_the_engine_is_one_line_naming_the_extra(tmp_path: Path, small_png: Path) -> None:
    code = SUBPROCESS_SETUP + (
        "sys.modules['ray'] = None\n"  # what `import ray` does where Ray is not installed: ImportError
        "from attnviz.cli import main\n"
        f"sys.exit(main(['run', {str(small_png)!r}, *{TINY!r}, '--engine', 'ray']))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path)
    assert done.returncode == 1
    assert done.stderr.strip().splitlines() == [
        "attnviz: error: --engine ray and attnviz.ray need Ray Data: pip install 'attnviz[ray]'"
    ]
    assert not list(tmp_path.glob("*.attn-*"))


@pytest.mark.ray
def test_explain_batches_in_the_callers_own_process_changes_nothing_global(tmp_path: Path) -> None:
    """Called outside an actor (no Ray needed), the class gives the same records and leaves threads, cwd and
    Pillow's guard as they were."""
    import torch

    from attnviz.ray import ExplainBatches

    photos = _photos(tmp_path / "photos", 2)
    threads, cwd, guard = torch.get_num_threads(), os.getcwd(), Image.MAX_IMAGE_PIXELS
    explain = ExplainBatches(str(tmp_path / "maps"), str(photos), encoder="tiny_test", size=64, threads=threads + 1)
    paths = [str(photos / "p0.png"), str(photos / "sub" / "p1.png"), str(photos / "bad.png")]
    batch = {
        "path": np.array(paths),
        "bytes": np.array([Path(p).read_bytes() for p in paths[:2]] + [b"GIF89a"], object),
    }
    rows = explain(batch).to_pylist()
    assert (torch.get_num_threads(), os.getcwd(), Image.MAX_IMAGE_PIXELS) == (threads, cwd, guard)
    assert [r["output"] for r in rows[:2]] == [
        str(tmp_path / "maps" / n) for n in ("p0.attn-concat.png", "sub/p1.attn-concat.png")
    ]
    assert rows[2]["error"] == f"{paths[2]}: not an image file (or a format Pillow cannot read)"
    assert rows[2]["output"] is None and rows[2]["weights"] is None
    assert all(len(r["weights"]) == r["grid"][0] * r["grid"][1] for r in rows[:2])
    assert _outputs(tmp_path / "maps") == {"p0.attn-concat.png", "sub/p1.attn-concat.png"}


def test_an_unreachable_cluster_is_one_line_without_waiting_for_ray(monkeypatch: pytest.MonkeyPatch) -> None:
    """Ray retries an address that does not answer for about a minute; attnviz tries its port first."""
    import socket

    ray = pytest.importorskip("ray")

    from attnviz.errors import ComputeError
    from attnviz.ray.session import check_reachable, ray_session

    with socket.socket() as closed:  # a port that was free a moment ago: nothing listens there
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]

    def refuse(**_: object) -> None:
        pytest.fail("ray.init was called for an address that cannot be reached")  # a BaseException: not caught

    monkeypatch.setattr(ray, "is_initialized", lambda: False)
    monkeypatch.setattr(ray, "init", refuse)
    for address in (f"127.0.0.1:{port}", f"ray://127.0.0.1:{port}"):
        message = rf"cannot reach the Ray cluster at {re.escape(address)}: "
        with pytest.raises(ComputeError, match=message), ray_session(address):
            pass
    check_reachable("auto")  # no port: left to Ray


def test_only_host_and_port_addresses_are_tried_before_ray(monkeypatch: pytest.MonkeyPatch) -> None:
    import socket

    from attnviz.errors import ComputeError
    from attnviz.ray.session import check_reachable

    tried: list[tuple[str, int]] = []

    def connect(target: tuple[str, int], timeout: float) -> socket.socket:
        tried.append(target)
        raise ConnectionRefusedError(111, "Connection refused")

    monkeypatch.setattr(socket, "create_connection", connect)
    for address in ("auto", "local", "::1", "http://127.0.0.1:8265", "ray://head", "head:99999"):
        check_reachable(address)  # left to Ray: nothing tried
    assert tried == []
    for address, target in (
        (" head:6379 ", ("head", 6379)),
        ("RAY://10.0.0.1:10001", ("10.0.0.1", 10001)),
        ("[::1]:6379", ("::1", 6379)),
    ):
        with pytest.raises(ComputeError, match="cannot reach the Ray cluster at"):
            check_reachable(address)
        assert tried.pop() == target


def test_what_is_no_cluster_address_is_a_usage_error_before_anything_starts(
    capsysbinary: pytest.CaptureFixture[bytes], small_png: Path
) -> None:
    """Ray answers some of these with advice about RAY_ADDRESS and retries others (a port over 65535) without end;
    what passes is handed to Ray as Ray reads it (it takes neither `AUTO` nor a space)."""
    pytest.importorskip("ray.data")
    from attnviz.errors import UsageError
    from attnviz.ray.session import check_address

    for address, canonical in (
        (" AUTO ", "auto"),
        ("ray://head", "ray://head"),
        ("RAY://h:10001", "ray://h:10001"),
        ("ray://[::1]", "ray://[::1]"),
        ("head-1.example.org:6379 ", "head-1.example.org:6379"),
        ("[::1]:6379", "[::1]:6379"),
        ("anyscale://cluster", "anyscale://cluster"),  # a client scheme of Ray's: Ray's to judge
    ):
        assert check_address(address) == canonical
    for address, message in (
        ("", "is not a Ray cluster's address; give HOST:PORT"),
        ("nonsense", "is not a Ray cluster's address"),
        ("::1", "is not a Ray cluster's address"),
        ("http://127.0.0.1:8265", "is the dashboard's address, for job submission"),
        ("127.0.0.1:99999", "port 99999 is not between 1 and 65535"),
        ("ray://head:0", "port 0 is not between 1 and 65535"),
        ("local", "leave --ray-address out for a Ray started for the run"),
    ):
        with pytest.raises(UsageError, match=re.escape(message)):
            check_address(address)
    started = time.monotonic()
    code, stdout, err = run(
        capsysbinary, "run", small_png, *TINY, "--engine", "ray", "--ray-address", "127.0.0.1:99999"
    )
    assert (code, stdout) == (2, b"") and time.monotonic() - started < 60  # refused up front, not after Ray's wait
    assert err.strip().splitlines() == [
        "attnviz: error: --ray-address '127.0.0.1:99999': port 99999 is not between 1 and 65535"
    ]


def test_auto_without_a_cluster_says_so_in_attnvizs_words(monkeypatch: pytest.MonkeyPatch) -> None:
    """And the session leaves the process as it found it, on the failure path too: Ray's printer, the SIGINT
    handler and the environment (RAY_ADDRESS, which `auto` would read, is hidden from ray.init only)."""
    ray = pytest.importorskip("ray")
    from ray._private import worker

    from attnviz.errors import ComputeError
    from attnviz.ray.session import ray_session

    seen: dict[str, object] = {}

    def nothing_found(**kwargs: object) -> None:
        seen.update(address=kwargs.get("address"), env=os.environ.get("RAY_ADDRESS"))
        raise ConnectionError("Could not find any running Ray instance. Please specify ... RAY_ADDRESS ...")

    monkeypatch.setattr(ray, "is_initialized", lambda: False)
    monkeypatch.setattr(ray, "init", nothing_found)
    monkeypatch.setattr(ray, "shutdown", lambda: None)
    monkeypatch.setenv("RAY_ADDRESS", "127.0.0.1:1")
    monkeypatch.delenv("RAY_BACKEND_LOG_LEVEL", raising=False)
    printer, handler = worker.print_to_stdstream, signal.getsignal(signal.SIGINT)
    message = r"^--ray-address auto found no Ray cluster on this machine \(start one"
    with pytest.raises(ComputeError, match=message), ray_session(" Auto "):
        pass
    assert seen == {"address": "auto", "env": None}
    assert (worker.print_to_stdstream, signal.getsignal(signal.SIGINT)) == (printer, handler)
    assert os.environ["RAY_ADDRESS"] == "127.0.0.1:1" and "RAY_BACKEND_LOG_LEVEL" not in os.environ


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has the device")
def test_a_device_this_machine_lacks_is_a_usage_error_before_ray_starts(
    capsysbinary: pytest.CaptureFixture[bytes], small_png: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Without --ray-address the workers run here: the local engine's one line and exit 2, not a failed job whose
    actors retry three times."""
    ray = pytest.importorskip("ray")
    pytest.importorskip("ray.data")
    from attnviz.ray import engine

    def no_cluster(address: str | None) -> None:
        pytest.fail("a cluster was started")

    monkeypatch.setattr(engine, "ray_session", no_cluster)
    monkeypatch.setattr(ray, "is_initialized", lambda: False)  # the shared test cluster may be up: not a caller's
    code, stdout, err = run(capsysbinary, "run", small_png, *TINY, "--engine", "ray", "--device", "cuda")
    assert (code, stdout) == (2, b"")
    assert err.strip().splitlines() == ["attnviz: error: --device cuda: no CUDA device is available"]
