# mypy: disable-error-code="union-attr,index,operator"
# (these tests reach into nn.Module attributes, which torch types as `Tensor | Module`)
"""Other encoders: torchvision and timm architectures with local weights, layers, gradient queries."""

from __future__ import annotations

import json
import pickle
import re
from pathlib import Path

import numpy as np
import pytest
import torch

from attnviz.cli.app import main
from attnviz.errors import InputError, UsageError
from attnviz.explainer import Explainer
from attnviz.models.base import Encoder
from attnviz.models.registry import create_encoder
from attnviz.models.weights import load_state_dict
from attnviz.options import SCORER_MODES, Query

from helpers import Evil, photo


@pytest.fixture(scope="module")
def resnet18_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    import torchvision

    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("weights") / "resnet18.pth"
    torch.save(torchvision.models.resnet18(weights=None).state_dict(), path)
    return path


def test_gradient_query_equals_the_classifier_query_on_the_default_encoder(lite0: Encoder) -> None:
    image = photo("chelsea.png")
    for mode in SCORER_MODES:
        by_row = Explainer(lite0, mode, query=Query.classifier).explain(image)
        by_grad = Explainer(lite0, mode, query=Query.gradient).explain(image)
        assert by_row.target.index == by_grad.target.index
        assert np.corrcoef(by_row.scores.ravel(), by_grad.scores.ravel())[0, 1] > 0.999, mode


def test_gradient_query_is_the_classifier_row_for_pool_linear_heads() -> None:
    tiny = create_encoder("tiny_test")
    explainer = Explainer(tiny, "dot", size=64, query=Query.gradient)
    features, logits = tiny(torch.rand(2, 3, 64, 96), track_features=True)
    queries = explainer.queries(features, logits, [[1, 3], [0]])
    assert torch.allclose(queries, tiny.fc.weight[[1, 3, 0]], atol=1e-5)


def test_torchvision_architecture_with_a_local_state_dict(resnet18_file: Path, samples: Path) -> None:
    encoder = create_encoder("resnet18", weights=str(resnet18_file))
    assert encoder.channels == 512 and encoder.stride == 32 and encoder.class_vectors() is not None
    assert encoder.labels[285] == "Egyptian cat"
    result = Explainer(encoder, "concat").explain(photo("coffee.png"))
    assert result.weights.shape == result.grid and abs(float(result.weights.sum()) - 1) < 1e-4


def test_mlp_heads_use_gradient_queries(tmp_path: Path) -> None:
    import torchvision

    path = tmp_path / "mnv3.safetensors"
    from safetensors.torch import save_file

    save_file(torchvision.models.mobilenet_v3_large(weights=None).state_dict(), path)
    encoder = create_encoder("mobilenet_v3_large", weights=str(path))
    assert encoder.class_vectors() is None  # pool -> linear -> hardswish -> linear
    explainer = Explainer(encoder, "concat", size=224)
    assert explainer.query is Query.gradient
    result = explainer.explain(photo("chelsea.png"))
    assert np.isfinite(result.scores).all()


def test_fine_tuned_head_with_other_classes(tmp_path: Path) -> None:
    import torchvision

    model = torchvision.models.resnet18(weights=None, num_classes=7)
    path = tmp_path / "ft.pth"
    torch.save({"state_dict": model.state_dict()}, path)
    encoder = create_encoder("resnet18", weights=str(path))
    assert len(encoder.labels) == 7 and encoder.labels[3] == "class 3"


def test_timm_architecture_with_a_local_state_dict(tmp_path: Path) -> None:
    import timm

    path = tmp_path / "t.pth"
    torch.save(timm.create_model("resnet10t", pretrained=False).state_dict(), path)
    encoder = create_encoder("timm:resnet10t", weights=str(path))
    assert encoder.name == "timm:resnet10t" and encoder.class_vectors() is not None
    assert Explainer(encoder, "dot", size=128).explain(photo("coffee.png")).grid == (4, 6)


def test_weights_that_do_not_fit_name_the_mismatch(tmp_path: Path, resnet18_file: Path) -> None:
    state = torch.load(resnet18_file, weights_only=True)
    state.pop("layer4.1.bn2.weight")
    state["extra.weight"] = torch.zeros(1)
    state["conv1.weight"] = torch.zeros(64, 3, 3, 3)
    bad = tmp_path / "bad.pth"
    torch.save(state, bad)
    with pytest.raises(
        InputError,
        match=r"bad\.pth does not fit resnet18: 1 missing: layer4\.1\.bn2\.weight; 1 unexpected: extra\.weight; 1 wrong shape \(file vs model\): conv1\.weight \(64, 3, 3, 3\) vs \(64, 3, 7, 7\)",
    ):
        create_encoder("resnet18", weights=str(bad))


@pytest.mark.parametrize("option", ["--weights"])
def test_a_pickle_that_runs_code_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys, option: str
) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.chdir(tmp_path)
    evil = tmp_path / "evil.pth"
    evil.write_bytes(pickle.dumps({"conv1.weight": Evil()}))
    code = main(["run", str(photo_path()), option, str(evil), "--encoder", "resnet18"])
    err = capsys.readouterr().err
    assert code == 1 and "refused: not a plain weights file" in err and err.count("\n") == 1
    assert not (tmp_path / "pwned").exists()


def photo_path() -> Path:
    return Path(__file__).resolve().parent.parent / "sample_images" / "coffee.png"


def test_layer_choice_and_errors(lite0: Encoder) -> None:
    encoder = create_encoder("efficientnet_lite0", layer="blocks.5")
    assert encoder.channels == 192 and encoder.class_vectors() is None
    result = Explainer(encoder, "dot").explain(photo("chelsea.png"))
    assert result.grid == (14, 21)
    with pytest.raises(
        UsageError, match=r"encoder efficientnet_lite0 has no layer 'blocks\.99'; spatial layers include: .*blocks\.5"
    ):
        create_encoder("efficientnet_lite0", layer="blocks.99")
    with pytest.raises(UsageError, match="use --query gradient"):
        Explainer(encoder, "dot", query=Query.classifier)


def test_missing_pretrained_weights_say_how_to_supply_them(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from attnviz.models import common as zoo

    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path))
    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", _offline)
    with pytest.raises(
        zoo.WeightsUnavailable,
        match=r"weights for resnet18 are not in torchvision's cache .* pass a state dict with --weights FILE",
    ):
        create_encoder("resnet18")


def _offline(*args: object, **kwargs: object) -> None:
    raise OSError("network is unreachable")


def test_topk_writes_k_maps_from_one_pass(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsysbinary) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.chdir(tmp_path)
    calls = []
    original = Encoder.forward

    def counting(self, x, track_features=False):  # type: ignore[no-untyped-def]
        if tuple(x.shape[-2:]) == (448, 672):  # the photo, not the encoder's own shape probes
            calls.append(1)
        return original(self, x, track_features)

    monkeypatch.setattr(Encoder, "forward", counting)
    from attnviz.models.runtime import Engine  # the default backend's forward pass, where a runtime is installed

    run_engine = Engine.__call__

    def counting_engine(self, x):  # type: ignore[no-untyped-def]
        if tuple(x.shape[-2:]) == (448, 672):
            calls.append(1)
        return run_engine(self, x)

    monkeypatch.setattr(Engine, "__call__", counting_engine)
    code = main(["run", str(photo_path()), "--topk", "3", "--json", "-m", "dot"])
    out = capsysbinary.readouterr().out
    assert code == 0 and len(calls) == 1
    record = json.loads(out)
    assert [m["target"]["index"] for m in record["maps"]] == [t["index"] for t in record["topk"][:3]]
    assert [Path(m["output"]).name for m in record["maps"]] == [f"coffee.attn-dot.top{r}.png" for r in (1, 2, 3)]
    assert all(Path(m["output"]).exists() for m in record["maps"])


def test_several_targets(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsysbinary) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.chdir(tmp_path)
    code = main(["run", str(photo_path()), "-t", "espresso", "-t", "cup", "--json", "-m", "dot"])
    record = json.loads(capsysbinary.readouterr().out)
    assert code == 0 and [m["target"]["index"] for m in record["maps"]] == [967, 968]
    assert Path("coffee.attn-dot.967.png").exists() and Path("coffee.attn-dot.968.png").exists()
    assert main(["run", str(photo_path()), "-t", "cup", "--topk", "2"]) == 2


def test_the_same_target_twice_is_one_map(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsysbinary) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.chdir(tmp_path)
    assert main(["run", str(photo_path()), "-t", "cup", "-t", "968", "--json", "-m", "dot"]) == 0
    record = json.loads(capsysbinary.readouterr().out)
    assert "maps" not in record and record["target"]["index"] == 968
    assert Path("coffee.attn-dot.png").exists()


@pytest.mark.parametrize(
    ("name", "content"), [("notes.jpg", b"hello\n"), ("photo.pth", b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 8)]
)
def test_a_file_that_is_no_checkpoint_says_so(tmp_path: Path, name: str, content: bytes) -> None:
    """A text file gave `cannot read weights (101)` (pickle's KeyError) and a picture `refused: ... could run
    code`: both are only bytes that are no checkpoint."""
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(InputError, match=re.escape(f"{path}: cannot read weights: not a torch checkpoint")):
        load_state_dict(path)


def test_a_truncated_checkpoint_is_said_to_be_damaged_not_something_else(tmp_path: Path) -> None:
    whole = tmp_path / "whole.pt"
    torch.save({"w": torch.ones(64, 64)}, whole, _use_new_zipfile_serialization=False)  # a plain pickle
    cut = tmp_path / "cut.pt"
    cut.write_bytes(whole.read_bytes()[:200])
    with pytest.raises(InputError, match=re.escape(f"{cut}: cannot read weights (")):
        load_state_dict(cut)
