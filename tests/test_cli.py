"""`attnviz run` on one image: every option, every error, through the real entry point."""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from attnviz.cli.app import main

from helpers import SUBPROCESS_SETUP, TINY, run

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(autouse=True)
def _in_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)


def test_default_output_name_size_and_rgb(capsysbinary, samples: Path) -> None:  # type: ignore[no-untyped-def]
    code, out, err = run(capsysbinary, "run", samples / "chelsea.png", "--mode", "dot")
    assert code == 0, err
    written = Path("chelsea.attn-dot.png")
    with Image.open(written) as im:
        assert im.size == (451, 300) and im.mode == "RGB" and im.format == "PNG"
    assert out == b""
    assert "wrote chelsea.attn-dot.png" in err and "Egyptian cat" in err


def test_json_reports_every_field(capsysbinary, samples: Path) -> None:  # type: ignore[no-untyped-def]
    code, out, _ = run(capsysbinary, "run", samples / "coffee.png", "--json", "-o", "cup.png", "--save-scores")
    assert code == 0
    record = json.loads(out)
    assert record["input"] == str(samples / "coffee.png") and record["output"] == "cup.png"
    assert record["mode"] == "concat" and record["encoder"] == "efficientnet_lite0"
    assert record["size"] == [672, 448] and record["grid"] == [14, 21]
    assert record["target"]["index"] == 967 and record["target"]["label"] == "espresso"
    assert 0 < record["target"]["prob"] <= 1
    assert next(t["index"] for t in record["topk"]) == 967 and len(record["topk"]) == 5
    x, y = record["peak"]
    assert 0 <= x < 600 and 0 <= y < 400
    weights = np.load(record["scores"])
    assert weights.shape == (14, 21) and weights.dtype == np.float32
    assert weights.sum() == pytest.approx(1.0, abs=1e-5)


@pytest.mark.parametrize(("name", "fmt"), [("o.jpg", "JPEG"), ("o.jpeg", "JPEG"), ("o.webp", "WEBP"), ("o.PNG", "PNG")])
def test_format_follows_extension(capsysbinary, small_png: Path, name: str, fmt: str) -> None:  # type: ignore[no-untyped-def]
    code, _, err = run(capsysbinary, "run", small_png, *TINY, "-o", name)
    assert code == 0, err
    with Image.open(name) as im:
        assert im.format == fmt and im.size == (56, 40)


@pytest.mark.parametrize(
    ("option", "effect"),
    [
        (["--interpolation", "nearest"], "pixels"),
        (["--interpolation", "bicubic"], "pixels"),
        (["--smooth", "0"], "pixels"),
        (["--colormap", "viridis"], "pixels"),
        (["--alpha", "0.3"], "pixels"),
        (["--target", "lion"], "target"),
        (["--target", "2"], "target"),
        (["--mode", "general"], "mode"),
        (["--size", "96"], "size"),
        (["--classify-size", "96"], "classify_size"),
    ],
)
def test_each_option_does_what_it_says(capsysbinary, small_png: Path, option: list[str], effect: str) -> None:  # type: ignore[no-untyped-def]
    code, out, err = run(capsysbinary, "run", small_png, *TINY, "--json", "-o", "base.png")
    assert code == 0, err
    base = json.loads(out)
    code, out, err = run(capsysbinary, "run", small_png, *TINY, *option, "--json", "-o", "x.png")
    assert code == 0, err
    record = json.loads(out)
    if effect == "pixels":
        before, after = (np.asarray(Image.open(name), dtype=np.int16) for name in ("base.png", "x.png"))
        assert np.abs(before - after).max() > 0
    elif effect == "target":
        assert record["target"]["index"] == {"lion": 4, "2": 2}[option[1]]
    elif effect == "mode":
        assert record["mode"] == "general" and base["mode"] == "concat"
    elif effect == "size":
        assert min(record["size"]) == 96 and min(base["size"]) == 64
    else:
        assert min(record["classify_size"]) == 96 and min(base["classify_size"]) == 224


def test_options_change_the_picture(capsysbinary, small_png: Path) -> None:  # type: ignore[no-untyped-def]
    outputs = {}
    for name, option in {"base": [], "alpha": ["--alpha", "0.1"], "cmap": ["--colormap", "gray"]}.items():
        assert run(capsysbinary, "run", small_png, *TINY, "-o", f"{name}.png", *option)[0] == 0
        outputs[name] = np.asarray(Image.open(f"{name}.png"), dtype=np.int16)
    assert np.abs(outputs["base"] - outputs["alpha"]).max() > 0
    assert np.abs(outputs["base"] - outputs["cmap"]).max() > 0


def test_existing_output_is_kept_unless_overwrite(capsysbinary, small_png: Path) -> None:  # type: ignore[no-untyped-def]
    Path("x.png").write_bytes(b"precious")
    code, _, err = run(capsysbinary, "run", small_png, *TINY, "-o", "x.png")
    assert code == 1 and "x.png: already exists (use --overwrite to replace it)" in err
    assert Path("x.png").read_bytes() == b"precious"
    assert run(capsysbinary, "run", small_png, *TINY, "-o", "x.png", "--overwrite")[0] == 0
    assert Path("x.png").read_bytes()[:4] == b"\x89PNG"


def test_input_is_never_overwritten(capsysbinary, small_png: Path) -> None:  # type: ignore[no-untyped-def]
    before = small_png.read_bytes()
    code, _, err = run(capsysbinary, "run", small_png, *TINY, "-o", small_png, "--overwrite")
    assert code == 1 and "refusing to write over the input image" in err
    assert small_png.read_bytes() == before


def test_output_folder_for_one_image(capsysbinary, small_png: Path) -> None:  # type: ignore[no-untyped-def]
    Path("results").mkdir()
    assert run(capsysbinary, "run", small_png, *TINY, "-o", "results", "-m", "general")[0] == 0
    assert Path("results/small.attn-general.png").exists()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--mode", "cosine"], "Invalid value for '--mode' / '-m': 'cosine' is not one of 'dot', 'general', 'concat'"),
        (["--encoder", "nope"], "unknown encoder 'nope'; choose from:"),
        (["--target", "zebra"], "no class matches 'zebra'"),
        (["--target", "o"], "matches 4 classes"),
        (["--target", "99"], "target 99 is out of range"),
        (["--alpha", "2"], "--alpha must be between 0 and 1"),
        (["--colormap", "nope"], "unknown colormap 'nope'"),
        (["-o", "x.gif"], "cannot tell the output format from 'x.gif'"),
        (["--frobnicate"], "No such option: --frobnicate"),
    ],
)
def test_usage_errors_exit_2_with_one_line(capsysbinary, small_png: Path, args: list[str], message: str) -> None:  # type: ignore[no-untyped-def]
    code, out, err = run(capsysbinary, "run", small_png, *TINY, *args)
    assert code == 2
    assert message in err and err.count("\n") == 1 and err.startswith("attnviz: error: ")
    assert out == b"" and os.listdir(".") == ["small.png"]


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda p: None, "no such file"),
        (lambda p: p.write_text("hello"), "not an image file"),
        (lambda p: p.write_bytes(b""), "not an image file"),
        (lambda p: p.mkdir(), "found no image files in this folder"),
    ],
)
def test_bad_inputs_exit_1_with_one_line_and_no_output(capsysbinary, make, message: str) -> None:  # type: ignore[no-untyped-def]
    path = Path("in.jpg")
    make(path)
    code, _out, err = run(capsysbinary, "run", path, *TINY)
    assert code == 1
    assert err.splitlines()[0] == f"attnviz: error: in.jpg: {message}" or message in err.splitlines()[0]
    assert "Traceback" not in err and not Path("in.attn-concat.png").exists()
    assert not [n for n in os.listdir(".") if n.startswith(".attnviz-")]


def test_help_lists_every_option(capsysbinary) -> None:  # type: ignore[no-untyped-def]
    code, out, _ = run(capsysbinary, "run", "--help")
    assert code == 0
    for option in (
        "--mode",
        "--target",
        "--encoder",
        "--size",
        "--interpolation",
        "--colormap",
        "--alpha",
        "--output",
        "--overwrite",
        "--json",
        "--save-scores",
    ):
        assert option in out.decode()


def test_console_script_has_no_traceback(tmp_path: Path) -> None:
    bad = tmp_path / "bad.png"
    bad.write_text("not a png")
    proc = subprocess.run(
        [sys.executable, "-m", "attnviz.cli", "run", str(bad), "--mode", "dot"], capture_output=True, text=True
    )
    assert proc.returncode == 1
    assert proc.stderr.strip() == f"attnviz: error: {bad}: not an image file (or a format Pillow cannot read)"
    assert proc.stdout == ""


@pytest.mark.parametrize("args", [["labels"], ["run", "--help"], ["--help"], ["--version"], []])
def test_a_closed_stdout_exits_141_in_silence(args: list[str]) -> None:
    """`attnviz labels | head -1`: the shell's status for a program a closed pipe stopped, not Typer's silent 1
    (nor, for a bare `attnviz`, a traceback)."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "attnviz.cli", *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    assert proc.stdout is not None and proc.stderr is not None
    proc.stdout.close()  # the reader is gone before the first line is written
    err = proc.stderr.read()
    assert (proc.wait(), err) == (141, b"")


@pytest.mark.skipif(not Path("/dev/full").exists(), reason="no /dev/full on this system")
def test_a_full_stdout_is_one_line_not_a_traceback() -> None:
    with open("/dev/full", "wb") as full:
        proc = subprocess.run(
            [sys.executable, "-m", "attnviz.cli", "labels"], stdout=full, stderr=subprocess.PIPE, text=True
        )
    assert (proc.returncode, proc.stderr) == (1, "attnviz: error: stdout: No space left on device\n")


@pytest.mark.skipif(not Path("/dev/full").exists(), reason="no /dev/full on this system")
def test_run_json_into_a_full_stdout_is_one_line(tmp_path: Path) -> None:
    """The batch writer's records, not only `print`: the lanes' failure reaches the same one line."""
    command = SUBPROCESS_SETUP + "from attnviz.cli import main; sys.exit(main())"
    photo = str(ROOT / "sample_images" / "coffee.png")
    with open("/dev/full", "wb") as full:
        proc = subprocess.run(
            [sys.executable, "-c", command, "run", photo, *TINY, "-o", str(tmp_path), "--json"],
            stdout=full,
            stderr=subprocess.PIPE,
            text=True,
            cwd=ROOT,
        )
    assert (proc.returncode, proc.stderr) == (1, "attnviz: error: stdout: No space left on device\n")


def test_a_folder_run_twice_in_place_does_not_draw_maps_of_its_maps(
    capsysbinary: pytest.CaptureFixture[bytes], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`cd photos && attnviz run . && attnviz run . --skip-existing`: the second run finds the same photos, not
    `cat.attn-concat.attn-concat.png`; hidden files (macOS's `._cat.png`) are not photos either."""
    Image.new("RGB", (96, 80), (200, 30, 30)).save(tmp_path / "cat.png")
    (tmp_path / "._cat.png").write_bytes(b"\0\5\26\7 Mac OS X resource fork")
    monkeypatch.chdir(tmp_path)
    assert run(capsysbinary, "run", ".", *TINY)[0] == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["._cat.png", "cat.attn-concat.png", "cat.png"]
    code, _, err = run(capsysbinary, "run", ".", *TINY, "--skip-existing")
    assert code == 0, err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["._cat.png", "cat.attn-concat.png", "cat.png"]


def test_a_folder_of_nothing_but_outputs_says_what_was_skipped(
    capsysbinary: pytest.CaptureFixture[bytes], tmp_path: Path
) -> None:
    Image.new("RGB", (96, 80)).save(tmp_path / "cat.attn-dot.png")
    Image.new("RGB", (96, 80)).save(tmp_path / "cat.attn-concat.top2.png")
    Image.new("RGB", (96, 80)).save(tmp_path / "cat.compare.png")
    code, _, err = run(capsysbinary, "run", tmp_path, *TINY, "-o", tmp_path / "out")
    assert code == 1
    assert "found no image files in this folder (hidden files and attnviz's own outputs" in err


@pytest.mark.parametrize("command", ["run", "compare", "eval", "labels", "audit", "fit", "encoders"])
def test_help_shows_no_python_type_names(capsysbinary: pytest.CaptureFixture[bytes], command: str) -> None:
    """`<list[dot|general|...]>` and `[[TEXT]]` were what `compare --help` and `labels --help` showed."""
    code, out, _ = run(capsysbinary, command, "--help")
    assert code == 0
    text = out.decode()
    assert "list[" not in text and "[[" not in text and "<str>" not in text, text


def test_compare_help_says_what_its_default_draws(capsysbinary: pytest.CaptureFixture[bytes]) -> None:
    code, out, _ = run(capsysbinary, "compare", "--help")
    assert code == 0
    assert "photo.compare.png: dot and concat" in out.decode() and "all three modes" not in out.decode()


def test_an_existing_file_without_an_extension_is_no_output_folder(
    capsysbinary: pytest.CaptureFixture[bytes], tmp_path: Path, small_png: Path
) -> None:
    """`-o notes` where notes is a file: taken for a folder, each write failed with `notes/x.png: File exists`."""
    (tmp_path / "notes").write_text("mine")
    code, _, err = run(capsysbinary, "run", small_png, *TINY, "-o", tmp_path / "notes")
    assert code == 2
    assert (
        err.startswith(f"attnviz: error: -o {tmp_path / 'notes'}: exists and is not a folder") and err.count("\n") == 1
    )
    assert (tmp_path / "notes").read_text() == "mine"


@pytest.mark.parametrize(
    ("output", "extra", "message"),
    [
        ("-", ["--json"], "-o - and --json both want stdout"),
        ("map.gif", [], "cannot tell the output format from 'map.gif'"),
        ("-", ["--save-scores"], "--save-scores needs an output file"),
    ],
)
def test_an_output_usage_error_is_said_before_the_network_loads(
    capsysbinary: pytest.CaptureFixture[bytes],
    monkeypatch: pytest.MonkeyPatch,
    small_png: Path,
    output: str,
    extra: list[str],
    message: str,
) -> None:
    """These waited for the model to load (4 s for Lite0) before saying what the options alone show."""
    import attnviz.batch.runner

    def no_network(*args: object, **kwargs: object) -> None:
        raise AssertionError("the network was loaded before the options were checked")

    monkeypatch.setattr(attnviz.batch.runner, "Lanes", no_network)
    code, _, err = run(capsysbinary, "run", small_png, *TINY, "-o", output, *extra)
    assert code == 2
    assert message in err and err.count("\n") == 1, err


def test_an_oserror_not_from_stdout_is_not_passed_off_as_stdouts(monkeypatch: pytest.MonkeyPatch) -> None:
    """Only a full stdout is one line: any other unnamed OSError is a bug, and shows as one (a traceback)."""
    import errno

    import attnviz.commands.listing

    def too_many(*args: object) -> None:
        raise OSError(errno.EMFILE, "Too many open files")

    monkeypatch.setattr(attnviz.commands.listing, "labels", too_many)
    with pytest.raises(OSError, match="Too many open files"):
        main(["labels", "cat"])


def test_user_photos_named_like_outputs_but_not_ours_are_kept(
    capsysbinary: pytest.CaptureFixture[bytes], tmp_path: Path
) -> None:
    """Only the names attnviz writes are left out of a folder: a mode it has, a `.topN` or class-index tag."""
    photos = tmp_path / "photos"
    photos.mkdir()
    for name in ("holiday.attn-2019.jpg", "team.attn-2.png", "IMG.attn-a.b.png", "cat.attn-dot.tabby.png"):
        Image.new("RGB", (96, 80), (90, 140, 30)).save(photos / name)
    code, out, err = run(capsysbinary, "run", photos, *TINY, "-o", tmp_path / "out", "--json")
    assert code == 0, err
    assert len(out.decode().splitlines()) == 4


def test_a_run_started_with_stderr_closed_still_works(tmp_path: Path) -> None:
    """`attnviz run photo.jpg 2>&-`: Python's sys.stderr is None, and the lanes' `stderr.isatty()` raised."""
    command = SUBPROCESS_SETUP + "from attnviz.cli import main; sys.exit(main())"
    photo = ROOT / "sample_images" / "coffee.png"
    script = f"{shlex.quote(sys.executable)} -c {shlex.quote(command)} run {shlex.quote(str(photo))} "
    script += f"{' '.join(TINY)} -o {shlex.quote(str(tmp_path))}/ 2>&-"
    proc = subprocess.run(["bash", "-c", script], cwd=ROOT, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout
    assert (tmp_path / "coffee.attn-concat.png").is_file()
