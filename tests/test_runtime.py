"""The runtime backends: the exported graph draws torch's maps (to 1e-4), is exported once and cached, a damaged
cache file is exported again, and every case the runtime cannot serve is torch under `auto` and one line when
asked for explicitly."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch
from test_sweep import CLASSES, build
from torch import Tensor, nn
from torch.nn import functional as F

from attnviz.errors import ComputeError, UsageError
from attnviz.explainer import Explainer
from attnviz.models.base import Encoder
from attnviz.models.export import ExportError, onnx_path
from attnviz.models.registry import create_encoder
from attnviz.models.runtime import choose_engine, load_engine
from attnviz.options import SCORER_MODES, Backend

from helpers import SAMPLES, TINY, TinyEncoder, one_error_line, photo, run

pytest.importorskip("onnxruntime")  # CI installs it with the test extra; a bare install runs the rest of the suite

#: Maps must match the torch path this closely (grid weights, which sum to 1).
MATCH = 1e-4


@pytest.fixture
def _cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A test of the cache exports into its own folder, and starts with no session loaded (the other tests share
    the session's cache, so the data-free heads of the real encoders are computed once)."""
    monkeypatch.setenv("ATTNVIZ_CACHE", str(tmp_path / "cache"))
    monkeypatch.chdir(tmp_path)
    load_engine.cache_clear()
    yield tmp_path / "cache"
    load_engine.cache_clear()


def grid_maps(explainer: Explainer, picture: Tensor, classes: list[int]) -> tuple[np.ndarray, list[int]]:
    """(M, rows, cols) weights for `classes`, and the top-5 class indices."""
    results = explainer.infer_classes(picture[None], [classes], recognise=picture[None])[0]
    return np.stack([r.weights for r in results]), [p.index for p in results[0].topk]


def assert_same_maps(encoder: Encoder, picture: Tensor, backend: Backend, classes: list[int]) -> None:
    for mode in SCORER_MODES:
        torch_way = Explainer(encoder, mode, device="cpu", backend=Backend.torch)
        runtime = Explainer(encoder, mode, device="cpu", backend=backend, notify=lambda _: None)
        assert runtime.engine is not None and runtime.engine.backend is backend, runtime.backend_note
        expected, top = grid_maps(torch_way, picture, classes)
        got, runtime_top = grid_maps(runtime, picture, classes)
        assert runtime_top == top
        np.testing.assert_allclose(got, expected, rtol=0, atol=MATCH)
        assert not np.array_equal(got[0], got[-1])  # two classes, two maps: the comparison is not of constants


@pytest.mark.parametrize("backend", [Backend.onnxruntime, Backend.openvino])
def test_the_default_encoder_draws_torchs_maps(lite0: Encoder, backend: Backend) -> None:
    if backend is Backend.openvino:
        pytest.importorskip("openvino")
    picture = lite0.preprocess(photo("coffee.png"), 256)  # (3, h, w)
    assert_same_maps(lite0, picture, backend, [967, 285])  # espresso, Egyptian cat


@pytest.mark.parametrize(
    ("library", "name"),
    [("timm", "resnet18"), ("timm", "efficientnet_b0"), ("torchvision", "resnet18")],
)
def test_other_architectures_draw_torchs_maps(library: str, name: str) -> None:
    encoder = build(library, name)  # random weights, as in the conformance sweep
    encoder.optimize()  # folded and channels-last, as the command line runs them
    picture = torch.rand(3, 96, 160, generator=torch.Generator().manual_seed(2))  # (3, h, w), not square
    assert_same_maps(encoder, picture, Backend.onnxruntime, [1, CLASSES - 1])


def test_the_export_is_cached_said_once_and_reused(_cache: Path) -> None:
    said: list[str] = []
    first = Explainer("tiny_test", "dot", 64, device="cpu", backend="onnxruntime", notify=said.append)
    path = onnx_path(first.encoder)
    assert path.parent == _cache / "onnx" and path.is_file()
    assert len(said) == 1 and said[0].startswith("exported tiny_test to ONNX (") and str(path) in said[0]
    inode = path.stat().st_ino  # an export is written anew and renamed over: another inode
    load_engine.cache_clear()  # a new process: only the file is left
    again = Explainer("tiny_test", "dot", 64, device="cpu", backend="onnxruntime", notify=said.append)
    assert again.engine is not None and len(said) == 1 and path.stat().st_ino == inode
    assert [p.name for p in path.parent.iterdir()] == [path.name]  # no temporary file left behind


@pytest.mark.usefixtures("_cache")
def test_other_weights_get_another_file() -> None:
    encoder = TinyEncoder()
    before = onnx_path(encoder)
    with torch.no_grad():
        encoder.fc.bias.add_(1e-3)
    assert onnx_path(encoder) != before


@pytest.mark.usefixtures("_cache")
def test_the_cache_follows_xdg_cache_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("ATTNVIZ_CACHE")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    Explainer("tiny_test", "dot", 64, device="cpu", backend="onnxruntime", notify=lambda _: None)
    assert len(list((tmp_path / "xdg" / "attnviz" / "onnx").glob("tiny_test-*.onnx"))) == 1


@pytest.mark.parametrize("damage", [b"", b"not a model", None])
@pytest.mark.usefixtures("_cache")
def test_a_damaged_cache_file_is_exported_again(damage: bytes | None) -> None:
    encoder = TinyEncoder()
    path = onnx_path(encoder)
    path.parent.mkdir(parents=True)
    Explainer(encoder, "dot", 64, device="cpu", backend="onnxruntime", notify=lambda _: None)
    whole = path.read_bytes()
    path.write_bytes(whole[: len(whole) // 2] if damage is None else damage)  # None: cut short
    load_engine.cache_clear()
    said: list[str] = []
    explainer = Explainer(encoder, "dot", 64, device="cpu", backend="onnxruntime", notify=said.append)
    assert len(said) == 1 and path.read_bytes() == whole
    picture = torch.rand(1, 3, 64, 96, generator=torch.Generator().manual_seed(0))  # (1, 3, h, w)
    expected = Explainer(encoder, "dot", 64, device="cpu").infer(picture, [2])[0].weights
    np.testing.assert_allclose(explainer.infer(picture, [2])[0].weights, expected, rtol=0, atol=MATCH)


class SizeBound(Encoder):
    """An encoder whose graph keeps the traced size (a Python int): it must not be trusted at other sizes."""

    def __init__(self) -> None:
        super().__init__("size_bound", ["a", "b"], mean=(0.5,) * 3, std=(0.5,) * 3)
        self.conv = nn.Conv2d(3, 4, 3, 8, 1)
        self.fc = nn.Linear(4, 2)

    def forward_features(self, x: Tensor) -> Tensor:
        h, w = int(x.shape[-2]) // 8, int(x.shape[-1]) // 8
        return F.interpolate(self.conv(x), size=(h, w))  # type: ignore[no-any-return]

    def forward_head(self, features: Tensor) -> Tensor:
        return self.fc(features.mean(dim=(2, 3)))  # type: ignore[no-any-return]

    def classifier(self) -> nn.Linear:
        return self.fc


@pytest.mark.usefixtures("_cache")
def test_an_export_that_keeps_the_traced_size_is_refused() -> None:
    encoder = SizeBound().eval()
    engine, why = choose_engine(encoder, "auto", classifier_query=True, device="cpu", notify=print)
    assert engine is None and why.startswith("torch: ") and "differ from torch" in why
    with pytest.raises(ExportError, match="ONNX graph's features differ"):
        choose_engine(encoder, "onnxruntime", classifier_query=True, device="cpu", notify=print)
    assert not list(onnx_path(encoder).parent.glob("*"))  # nothing cached


def test_what_the_runtime_cannot_serve_stays_on_torch() -> None:
    tiny = TinyEncoder()
    for query, device in ((False, "cpu"), (True, "cuda")):
        engine, why = choose_engine(tiny, "auto", classifier_query=query, device=device, notify=print)
        assert engine is None and why.startswith("torch: ")
        with pytest.raises(UsageError):
            choose_engine(tiny, "onnxruntime", classifier_query=query, device=device, notify=print)
    assert Explainer("tiny_test", "dot", 64, device="cpu").engine is None  # the library's default is torch


def test_a_runtime_error_is_one_line() -> None:
    explainer = Explainer("tiny_test", "dot", 64, device="cpu", backend="onnxruntime", notify=lambda _: None)
    with pytest.raises(ComputeError, match="under onnxruntime"):
        explainer.infer(torch.rand(1, 4, 64, 64), [None])  # 4 channels: the graph takes 3


@pytest.mark.usefixtures("_cache")
def test_the_command_line_defaults_to_a_runtime_and_says_why(capsysbinary: pytest.CaptureFixture[bytes]) -> None:
    coffee = SAMPLES / "coffee.png"
    code, _, err = run(capsysbinary, "run", coffee, *TINY, "-o", "a.png", "-v")
    assert code == 0 and "backend: onnxruntime" in err and "exported tiny_test to ONNX" in err, err
    code, _, err = run(capsysbinary, "run", coffee, *TINY, "-o", "b.png", "-v")
    assert code == 0 and "exported" not in err  # cached
    code, _, err = run(capsysbinary, "run", coffee, *TINY, "-o", "c.png", "--backend", "torch", "-v")
    assert code == 0 and "backend: torch" in err and Path("c.png").stat().st_size > 0
    code, _, err = run(capsysbinary, "run", coffee, *TINY, "-o", "d.png", "--query", "gradient", "-v")
    assert code == 0 and "backend: torch: this query is a class-score gradient" in err
    code, _, err = run(capsysbinary, "run", coffee, *TINY, "--query", "gradient", "--backend", "onnxruntime")
    assert code == 2
    one_error_line(err, "--backend onnxruntime", "gradient", "--backend torch")


@pytest.mark.usefixtures("_cache")
def test_a_missing_runtime_is_one_line_naming_the_extra(
    capsysbinary: pytest.CaptureFixture[bytes], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # as if not installed
    monkeypatch.setitem(sys.modules, "openvino", None)
    coffee = SAMPLES / "coffee.png"
    code, _, err = run(capsysbinary, "run", coffee, *TINY, "--backend", "onnxruntime")
    assert code == 2
    one_error_line(err, "onnxruntime", "pip install 'attnviz[runtime]'")
    code, _, err = run(capsysbinary, "run", coffee, *TINY, "-o", "a.png", "-v")
    assert code == 0 and "backend: torch: no runtime installed (pip install 'attnviz[runtime]')" in err


def test_a_cache_that_cannot_be_written_leaves_auto_on_torch(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "file").write_text("not a folder")
    monkeypatch.setenv("ATTNVIZ_CACHE", str(tmp_path / "file" / "cache"))
    tiny = TinyEncoder()
    engine, why = choose_engine(tiny, "auto", classifier_query=True, device="cpu", notify=print)
    assert engine is None and why.startswith("torch: encoder tiny_test could not be exported to ONNX (")
    with pytest.raises(ExportError, match="could not be exported"):
        choose_engine(tiny, "onnxruntime", classifier_query=True, device="cpu", notify=print)


def test_the_export_cache_keeps_the_most_recently_used(tmp_path: Path) -> None:
    """Each weight file is another export; the cache kept every one (16 of Lite0, 230 MB, on a new user's)."""
    from attnviz.models.export import prune

    for k in range(12):
        (tmp_path / f"net-{k:02d}.onnx").write_bytes(b"x")
        os.utime(tmp_path / f"net-{k:02d}.onnx", (1000 + k, 1000 + k))
    os.utime(tmp_path / "net-00.onnx", (5000, 5000))  # the oldest export, used last
    (tmp_path / "notes.txt").write_text("not an export")
    prune(tmp_path, keep=8)
    left = sorted(p.name for p in tmp_path.iterdir())
    assert left == ["net-00.onnx", *[f"net-{k:02d}.onnx" for k in range(5, 12)], "notes.txt"]


def test_an_export_prunes_the_least_recently_used_and_a_reuse_counts_as_use(
    _cache: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`ensure_onnx` touches an export it reuses and prunes the cache after writing a new one."""
    monkeypatch.setenv("ATTNVIZ_KEEP_EXPORTS", "2")
    folder = _cache / "onnx"
    folder.mkdir(parents=True, exist_ok=True)
    for k, stamp in enumerate((1000, 2000)):
        (folder / f"old-{k}.onnx").write_bytes(b"x")
        os.utime(folder / f"old-{k}.onnx", (stamp, stamp))
    Explainer("tiny_test", "dot", 64, device="cpu", backend="onnxruntime", notify=lambda _: None)
    path = onnx_path(create_encoder("tiny_test"))
    assert sorted(p.name for p in folder.iterdir()) == sorted(["old-1.onnx", path.name])
    os.utime(path, (500, 500))
    load_engine.cache_clear()  # a new process: only the file is left
    Explainer("tiny_test", "dot", 64, device="cpu", backend="onnxruntime", notify=lambda _: None)
    assert path.stat().st_mtime > 2000  # used now: the newest, kept at the next prune
