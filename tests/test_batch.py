"""`attnviz run` over folders and pipelines: mirroring, stdin, the JSON stream, failures, resuming."""

from __future__ import annotations

import io
import json
import os
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from helpers import SUBPROCESS_SETUP, TINY, errors_on_threads, run


def make_photo(path: Path, seed: int = 0, size: tuple[int, int] = (48, 32)) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    Image.fromarray(rng.integers(0, 255, (size[1], size[0], 3), dtype=np.uint8)).save(path)
    return path


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    """photos/{a,b}/cat.png, photos/b/deep/dog.jpg, a broken file and a text file."""
    root = tmp_path / "photos"
    make_photo(root / "a" / "cat.png", 1)
    make_photo(root / "b" / "cat.png", 2)
    make_photo(root / "b" / "deep" / "dog.jpg", 3)
    (root / "b" / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    (root / "notes.txt").write_text("not an image, skipped quietly")
    return root


def test_folder_is_mirrored_and_broken_files_do_not_stop_it(capsysbinary, tree: Path, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    out = tmp_path / "out"
    code, stdout, err = run(capsysbinary, "run", tree, *TINY, "-o", out)
    assert code == 1
    written = sorted(p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file())
    assert written == ["a/cat.attn-concat.png", "b/cat.attn-concat.png", "b/deep/dog.attn-concat.png"]
    lines = err.strip().splitlines()
    assert lines[0].startswith("attnviz: error: ") and "broken.jpg" in lines[0]
    assert lines[-1] == "attnviz: 3 written, 0 skipped, 1 failed"
    assert stdout == b"" and "Traceback" not in err


def test_json_stream_has_one_object_per_input_in_order(capsysbinary, tree: Path, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    code, stdout, _ = run(capsysbinary, "run", tree, *TINY, "-o", tmp_path / "out", "--json", "--workers", "3")
    records = [json.loads(line) for line in stdout.decode().splitlines()]
    inputs = [r["input"] for r in records]
    assert inputs == [str(tree / p) for p in ("a/cat.png", "b/broken.jpg", "b/cat.png", "b/deep/dog.jpg")]
    assert "error" in records[1] and "output" not in records[1]
    assert all("peak" in r for i, r in enumerate(records) if i != 1)
    assert code == 1


def test_paths_from_stdin_newline_and_nul(capsysbinary, tree: Path, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    a, b = tree / "a" / "cat.png", tree / "b" / "cat.png"
    listing = f"{a}\n{b}\n".encode()
    code, stdout, _ = run(capsysbinary, "run", "-", *TINY, "-o", tmp_path / "o1", "--json", stdin=listing)
    assert code == 0
    outputs = [json.loads(line)["output"] for line in stdout.decode().splitlines()]
    assert len(outputs) == 2 and len(set(outputs)) == 2  # two cat.png never collide
    assert all(Path(o).is_relative_to(tmp_path / "o1") for o in outputs)
    code, stdout, _ = run(
        capsysbinary, "run", "-", "-0", *TINY, "-o", tmp_path / "o2", "--json", stdin=listing.replace(b"\n", b"\0")
    )
    assert code == 0 and len(stdout.decode().splitlines()) == 2


def test_outputs_never_escape_the_output_folder(capsysbinary, tree: Path, tmp_path: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.chdir(tree / "b" / "deep")
    listing = f"../../a/cat.png\n{tree / 'b' / 'cat.png'}\n".encode()
    out = tmp_path / "jail"
    code, stdout, _ = run(capsysbinary, "run", "-", *TINY, "-o", out, "--json", stdin=listing)
    assert code == 0
    for record in map(json.loads, stdout.decode().splitlines()):
        assert Path(record["output"]).resolve().is_relative_to(out.resolve())
    assert not list((tmp_path / "photos").rglob("*.attn-*"))


def test_single_image_to_stdout_is_a_png(capsysbinary, tree: Path) -> None:  # type: ignore[no-untyped-def]
    code, stdout, err = run(capsysbinary, "run", tree / "a" / "cat.png", *TINY, "-o", "-")
    assert code == 0, err
    with Image.open(io.BytesIO(stdout)) as im:
        assert im.format == "PNG" and im.size == (48, 32)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["-o", "-", "--json"], "-o - and --json both want stdout"),
        (["-o", "-", "--save-scores"], "--save-scores needs an output file"),
    ],
)
def test_stdout_conflicts_are_usage_errors(capsysbinary, tree: Path, args: list[str], message: str) -> None:  # type: ignore[no-untyped-def]
    code, stdout, err = run(capsysbinary, "run", tree / "a" / "cat.png", *TINY, *args)
    assert code == 2 and message in err and stdout == b""


def test_several_inputs_need_a_folder(capsysbinary, tree: Path, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    (tmp_path / "file.png").write_bytes(b"x")
    code, _, err = run(capsysbinary, "run", tree, *TINY, "-o", tmp_path / "file.png")
    assert code == 2 and "several inputs need an output folder" in err
    code, _, err = run(capsysbinary, "run", tree, *TINY, "-o", "-")
    assert code == 2 and "needs exactly one input image" in err


def test_skip_existing_resumes_and_fail_fast_stops(capsysbinary, tree: Path, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    out = tmp_path / "out"
    (tree / "b" / "broken.jpg").unlink()
    run(capsysbinary, "run", tree / "a", *TINY, "-o", out / "a")  # an earlier run that only did folder a
    first = (out / "a" / "cat.attn-concat.png").stat().st_mtime_ns
    code, stdout, err = run(capsysbinary, "run", tree, *TINY, "-o", out, "--skip-existing", "--json")
    assert code == 0 and err.strip().endswith("2 written, 1 skipped, 0 failed")
    records = [json.loads(line) for line in stdout.decode().splitlines()]
    assert records[0]["skipped"] is True and len(records) == 3
    assert (out / "a" / "cat.attn-concat.png").stat().st_mtime_ns == first
    (tree / "a" / "zzz.png").write_text("broken")
    make_photo(tree / "a" / "zzzz.png")
    code, stdout, err = run(capsysbinary, "run", tree / "a", *TINY, "-o", tmp_path / "ff", "--fail-fast")
    assert code == 1 and "zzz.png" in err
    assert not (tmp_path / "ff" / "zzzz.attn-concat.png").exists()


def test_skip_existing_redoes_an_input_with_only_some_of_its_maps(capsysbinary, tree: Path, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """`-k 2` writes two maps per input; a run stopped between them (a Ray actor killed, a crash) left one. That
    input is not done: it is redone, its own maps replaced, and an input with both is skipped."""
    out = tmp_path / "out"
    code, _, err = run(capsysbinary, "run", tree / "a", *TINY, "-k", "2", "-o", out)
    assert code == 0, err
    (out / "cat.attn-concat.top1.png").unlink()
    left = out / "cat.attn-concat.top2.png"
    left.write_bytes(b"not the map")
    code, _, err = run(capsysbinary, "run", tree / "a", *TINY, "-k", "2", "-o", out, "--skip-existing")
    assert code == 0 and err.strip().endswith("1 written, 0 skipped, 0 failed"), err
    assert (out / "cat.attn-concat.top1.png").exists() and left.read_bytes().startswith(b"\x89PNG")
    code, _, err = run(capsysbinary, "run", tree / "a", *TINY, "-k", "2", "-o", out, "--skip-existing")
    assert code == 0 and err.strip().endswith("0 written, 1 skipped, 0 failed"), err


def test_skip_existing_on_one_photo_says_it_skipped(
    capsysbinary, small_png: Path, monkeypatch: pytest.MonkeyPatch
) -> None:  # type: ignore[no-untyped-def]
    """One input is reported in a line of its own: a skipped one has no class to report (it was a traceback)."""
    monkeypatch.chdir(small_png.parent)  # one photo's map goes to the working folder
    code, _, err = run(capsysbinary, "run", small_png, *TINY)
    assert code == 0 and err.startswith("wrote ")
    output = err.split()[1]  # as the run that wrote it named it
    code, stdout, err = run(capsysbinary, "run", small_png, *TINY, "--skip-existing")
    assert (code, stdout, err) == (0, b"", f"skipped {output}: it exists (--skip-existing)\n")


def test_ctrl_c_before_the_run_starts_is_said(capsysbinary, small_png: Path, monkeypatch: pytest.MonkeyPatch) -> None:  # type: ignore[no-untyped-def]
    """Typer turns a KeyboardInterrupt into a silent exit 130: one raised while the model loads is said too."""
    from attnviz.cli import run as run_command

    def interrupted() -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(run_command, "own_pixel_limit", interrupted)
    code, stdout, err = run(capsysbinary, "run", small_png, *TINY)
    assert (code, stdout, err.strip()) == (130, b"", "attnviz: interrupted")


def test_two_folders_with_the_same_names_collide_loudly(capsysbinary, tree: Path, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    code, _, err = run(capsysbinary, "run", tree / "a", tree / "b", *TINY, "-o", tmp_path / "o")
    assert code == 1 and "is also the output of" in err
    assert (tmp_path / "o" / "cat.attn-concat.png").exists()


def test_existing_outputs_fail_without_overwrite_and_are_kept(capsysbinary, tree: Path, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    out = tmp_path / "out"
    (out / "a").mkdir(parents=True)
    (out / "a" / "cat.attn-concat.png").write_bytes(b"keep me")
    code, _, err = run(capsysbinary, "run", tree / "a", *TINY, "-o", out / "a")
    assert code == 1 and "already exists" in err
    assert (out / "a" / "cat.attn-concat.png").read_bytes() == b"keep me"


def test_colliding_outputs_are_an_error_not_an_overwrite(capsysbinary, tree: Path, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    same = tree / "a" / "cat.png"
    code, _stdout, err = run(capsysbinary, "run", same, str(same).replace("/a/", "/a/./"), *TINY, "-o", tmp_path / "o")
    assert code == 1 and "is also the output of" in err


def test_no_temporary_files_are_left(capsysbinary, tree: Path, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    out = tmp_path / "out"
    run(capsysbinary, "run", tree, *TINY, "-o", out, "--save-scores")
    names = [p.name for p in out.rglob("*")]
    assert not [n for n in names if n.startswith(".attnviz-")]
    assert "cat.attn-concat.npy" in names


def test_non_utf8_and_newline_file_names(capsysbinary, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    folder = tmp_path / "odd"
    make_photo(folder / "new\nline.png")
    raw = os.fsencode(folder) + b"/caf\xe9.png"
    make_photo(Path(os.fsdecode(raw)))
    code, stdout, err = run(capsysbinary, "run", folder, *TINY, "-o", tmp_path / "out", "--json")
    assert code == 0, err
    records = [json.loads(line) for line in stdout.decode().splitlines()]
    assert len(records) == 2 and all(Path(r["output"]).exists() for r in records)


@pytest.mark.usefixtures("ctrl_c_reaches_python")
def test_ctrl_c_leaves_only_complete_files_and_a_rerun_finishes(tmp_path: Path) -> None:
    import signal
    import subprocess
    import time

    folder = tmp_path / "many"
    for i in range(60):
        make_photo(folder / f"{i:03d}.png", i, size=(320, 240))
    out = tmp_path / "out"
    # Each unit of work takes at least 50 ms, so however fast the machine, the run is still going when Ctrl-C comes.
    script = (
        SUBPROCESS_SETUP + "import time; from attnviz.batch.lanes import Lanes; from attnviz.cli import main\n"
        "process = Lanes.process\n"
        "Lanes.process = lambda self, chunk: (time.sleep(0.05), process(self, chunk))[1]\n"
        "sys.exit(main(sys.argv[1:]))"
    )
    command = [sys.executable, "-c", script, "run", str(folder), "-o", str(out), *TINY]
    root = Path(__file__).resolve().parent.parent
    proc = subprocess.Popen(command, cwd=root, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and len(list(out.glob("*.png"))) < 3:
        time.sleep(0.02)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err.decode()
    assert b"Traceback" not in err and b"interrupted" in err
    done = sorted(out.glob("*.png"))
    assert 3 <= len(done) < 60
    for path in done:
        with Image.open(path) as im:
            im.load()  # complete, decodable files only
    assert not list(out.glob(".attnviz-*"))
    rerun = subprocess.run([*command, "--skip-existing"], cwd=root, capture_output=True)
    assert rerun.returncode == 0, rerun.stderr.decode()
    assert len(list(out.glob("*.png"))) == 60
    assert f"{60 - len(done)} written, {len(done)} skipped, 0 failed" in rerun.stderr.decode()


def test_same_stem_different_extension_both_get_written(capsysbinary, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    make_photo(tmp_path / "in" / "photo.jpg", 1)
    make_photo(tmp_path / "in" / "photo.png", 2)
    code, _, err = run(capsysbinary, "run", tmp_path / "in", *TINY, "-o", tmp_path / "out")
    assert code == 0, err
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [
        "photo.attn-concat.png",
        "photo.png.attn-concat.png",
    ]


def records_of(stdout: bytes) -> list[dict[str, object]]:
    return [json.loads(line) for line in stdout.decode().splitlines()]


def test_batches_split_where_the_picture_size_changes(capsysbinary, tmp_path: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    from attnviz.explainer import Explainer

    for i, size in enumerate([(48, 32), (48, 32), (32, 48), (48, 32), (48, 32)]):
        make_photo(tmp_path / "in" / f"{i}.png", i, size)
    batches: list[int] = []
    infer = Explainer.infer_classes

    def counting(self, batch, *args, **kwargs):  # type: ignore[no-untyped-def]
        batches.append(len(batch))
        return infer(self, batch, *args, **kwargs)

    one_by_one = run(capsysbinary, "run", tmp_path / "in", *TINY, "-o", tmp_path / "one", "--json")[1]
    monkeypatch.setattr(Explainer, "infer_classes", counting)
    code, stdout, err = run(
        capsysbinary, "run", tmp_path / "in", *TINY, "-o", tmp_path / "three", "--json", "--batch-size", "3"
    )
    assert code == 0, err
    assert sorted(batches) == [1, 2, 2]  # [0 1 | 2] and [3 4]: the portrait photo gets a pass of its own
    for alone, batched in zip(records_of(one_by_one), records_of(stdout), strict=True):
        assert batched["input"] == alone["input"]
        assert batched["target"]["index"] == alone["target"]["index"]  # type: ignore[index]
        assert batched["peak"] == alone["peak"]


def test_each_lane_gets_its_share_of_the_cores(capsysbinary, tmp_path: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    import threading

    import torch

    from attnviz.batch import lanes as batch
    from attnviz.explainer import Explainer

    for i in range(6):
        make_photo(tmp_path / "in" / f"{i}.png", i)
    monkeypatch.setattr(batch, "cpu_count", lambda: 6)
    seen: set[tuple[str, int]] = set()
    infer = Explainer.infer_classes

    def recording(self, *args, **kwargs):  # type: ignore[no-untyped-def]
        seen.add((threading.current_thread().name, torch.get_num_threads()))
        return infer(self, *args, **kwargs)

    monkeypatch.setattr(Explainer, "infer_classes", recording)
    before = torch.get_num_threads()
    code, _, err = run(capsysbinary, "run", tmp_path / "in", *TINY, "-o", tmp_path / "out", "--workers", "2")
    assert code == 0, err
    assert {threads for _, threads in seen} == {3}  # 6 cores, 2 lanes
    assert all(name.startswith("attnviz-lane") for name, _ in seen)
    assert torch.get_num_threads() == before  # given back after the run


def test_fail_fast_writes_nothing_after_the_failure_whatever_the_lanes(capsysbinary, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    for i in range(8):
        make_photo(tmp_path / "in" / f"{i}.png", i)
    (tmp_path / "in" / "3.png").write_bytes(b"not a picture")
    code, _, err = run(
        capsysbinary, "run", tmp_path / "in", *TINY, "-o", tmp_path / "out", "--fail-fast", "--workers", "4"
    )
    assert code == 1 and "3.png" in err
    written = sorted(p.name for p in (tmp_path / "out").iterdir())
    assert written == [f"{i}.attn-concat.png" for i in range(3)]


def test_a_chosen_layer_is_captured_per_thread() -> None:
    """Two lanes running the network at once each get their own layer's features and gradients."""
    import torch

    from attnviz.models.registry import create_encoder

    encoder = create_encoder("efficientnet_lite0", layer="blocks.5")
    pictures = [torch.randn(1, 3, 96, 128, generator=torch.Generator().manual_seed(i)) for i in range(2)]
    expected = [encoder(x, track_features=True)[0].detach() for x in pictures]

    def lane(i: int) -> None:
        for _ in range(15):
            features, logits = encoder(pictures[i], track_features=True)
            (grad,) = torch.autograd.grad(logits[0, 0], features)  # the logits depend on *these* features
            assert torch.allclose(features.detach(), expected[i]) and grad.abs().sum() > 0

    errors = errors_on_threads(lane, 2)
    assert not errors, errors


@pytest.mark.usefixtures("ctrl_c_reaches_python")
def test_ctrl_c_while_files_are_written_waits_for_them(tmp_path: Path) -> None:
    import signal

    from attnviz.batch.options import RunOptions
    from attnviz.batch.runner import Runner

    runner = Runner(RunOptions(encoder="tiny_test", size=64, output=str(tmp_path)), io.StringIO())
    writer = runner.writer
    with writer.deferred_interrupts():
        writer.writing = True
        os.kill(os.getpid(), signal.SIGINT)  # held back: the files of the input being written come first
        assert writer.interrupt_pending
        writer.writing = False
        with pytest.raises(KeyboardInterrupt):
            os.kill(os.getpid(), signal.SIGINT)
            for _ in range(1000):  # the handler runs between bytecodes of this thread
                pass
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


def test_a_file_where_an_output_folder_should_be_is_a_one_line_error(capsysbinary, tree: Path, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    out = tmp_path / "out"
    out.mkdir()
    (out / "a").write_text("a file, not a folder")
    code, _, err = run(capsysbinary, "run", tree, *TINY, "-o", out)
    assert code == 1 and "Traceback" not in err
    assert f"{out / 'a' / 'cat.attn-concat.png'}: cannot write" in err
    assert (out / "b" / "cat.attn-concat.png").exists()  # the other inputs go on


def test_out_of_memory_fails_that_image_only(capsysbinary, tree: Path, tmp_path: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    from attnviz.explainer import Explainer

    infer = Explainer.infer_classes

    def picky(self, batch, *args, **kwargs):  # type: ignore[no-untyped-def]
        if batch.shape[-1] != batch.shape[-2]:  # every picture but the square one
            raise MemoryError
        return infer(self, batch, *args, **kwargs)

    monkeypatch.setattr(Explainer, "infer_classes", picky)
    make_photo(tree / "square.png", size=(40, 40))
    code, stdout, err = run(capsysbinary, "run", tree, *TINY, "-o", tmp_path / "out", "--json")
    assert code == 1 and "out of memory (try --batch-size 1 or --workers 1)" in err
    records = records_of(stdout)
    assert [str(r["input"]).endswith("square.png") for r in records if "error" not in r] == [True]


def test_paths_from_a_slow_pipe_are_reported_as_they_are_done(tmp_path: Path) -> None:
    """The first result comes out while the producer is still holding back the second path."""
    import subprocess
    import threading

    first, second = make_photo(tmp_path / "in" / "1.png", 1), make_photo(tmp_path / "in" / "2.png", 2)
    script = SUBPROCESS_SETUP + "from attnviz.cli import main; sys.exit(main(sys.argv[1:]))"
    command = [sys.executable, "-c", script, "run", "-", "-o", str(tmp_path / "out"), "--json", *TINY]
    root = Path(__file__).resolve().parent.parent
    proc = subprocess.Popen(command, cwd=root, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert proc.stdin is not None and proc.stdout is not None
    watchdog = threading.Timer(60, proc.kill)  # a hang ends as a failure (empty line), not a stuck test run
    watchdog.start()
    try:
        proc.stdin.write(f"{first}\n".encode())
        proc.stdin.flush()
        line = proc.stdout.readline()  # blocks until attnviz reports; before the fix it waited for the next path
        assert json.loads(line)["input"] == str(first)
        proc.stdin.write(f"{second}\n".encode())
        proc.stdin.close()
        assert json.loads(proc.stdout.readline())["input"] == str(second)
        assert proc.wait(timeout=60) == 0
    finally:
        watchdog.cancel()
        proc.kill()
