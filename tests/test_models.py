# mypy: disable-error-code="union-attr,index,operator"
# (these tests reach into nn.Module attributes, which torch types as `Tensor | Module`)
"""Every model users bring: their own module, transformers at any size, the extra embedded encoders."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from attnviz.errors import UsageError
from attnviz.explainer import Explainer
from attnviz.models.generic import ModuleEncoder, logits_of, read_labels
from attnviz.models.grids import as_grid
from attnviz.models.registry import create_encoder

from helpers import SAMPLES, one_error_line, photo, run
from user_models import Detector, SmallNet


def test_a_users_module_works_through_the_python_api_and_is_left_as_it_was() -> None:
    net = SmallNet().train()
    explainer = Explainer(model=net, labels=["apple", "pear", "plum"], mean=(0.5,) * 3, std=(0.5,) * 3, size=64)
    assert explainer.encoder.layer == "stage"  # the last spatial map that feeds the head, found alone
    result = explainer.explain(np.asarray(photo("coffee.png")), target="plum")
    assert result.target.label == "plum" and result.weights.shape == result.grid
    assert net.training and all(p.requires_grad for p in net.parameters())  # the caller's module is untouched
    assert isinstance(net.stem[1], torch.nn.BatchNorm2d)


def test_a_named_layer_and_bad_labels() -> None:
    explainer = Explainer(model=SmallNet(), layer="stem", size=64)
    assert explainer.encoder.layer == "stem" and explainer.encoder.labels == ["class 0", "class 1", "class 2"]
    with pytest.raises(UsageError, match="2 labels for 3 classes"):
        Explainer(model=SmallNet(), labels=["a", "b"], size=64)


def test_the_cli_imports_a_users_factory_and_names_its_classes(capsysbinary, tmp_path: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.chdir(tmp_path)
    Path("labels.txt").write_text("apple\npear\nplum\n")
    code, out, err = run(
        capsysbinary, "run", SAMPLES / "coffee.png", "-e", "user_models:small_net", "--labels", "labels.txt",
        "-t", "pear", "-s", "64", "--json",
    )  # fmt: skip
    assert code == 0, err
    record = json.loads(out)
    assert record["target"]["label"] == "pear" and record["encoder"] == "user_models:small_net"
    assert {p["label"] for p in record["topk"]} == {"apple", "pear", "plum"}
    code, _, err = run(capsysbinary, "run", SAMPLES / "coffee.png", "-e", "user_models:not_a_model")
    assert code == 2
    one_error_line(err, "not_a_model gave a str, not a torch.nn.Module")
    code, _, err = run(capsysbinary, "run", SAMPLES / "coffee.png", "-e", "no_such_module:f")
    assert code == 2
    one_error_line(err, "cannot import no_such_module")
    code, _, err = run(capsysbinary, "run", SAMPLES / "coffee.png", "-e", "user_models:Detector")
    assert code == 2
    one_error_line(err, "attnviz explains classifiers")


def test_labels_files_in_every_form(tmp_path: Path) -> None:
    (tmp_path / "a.txt").write_text("cat\n\ndog\n")
    (tmp_path / "b.json").write_text('["cat", "dog"]')
    (tmp_path / "c.json").write_text('{"1": "dog", "0": "cat"}')
    for name in ("a.txt", "b.json", "c.json"):
        assert read_labels(tmp_path / name) == ["cat", "dog"]
    (tmp_path / "d.json").write_text("[oops")
    with pytest.raises(Exception, match="not valid JSON"):
        read_labels(tmp_path / "d.json")


def test_logits_are_found_in_what_models_return() -> None:
    logits = torch.zeros(2, 5)
    assert logits_of(logits) is logits
    assert logits_of((logits, torch.zeros(2, 3, 4))) is logits
    assert logits_of({"logits": logits}) is logits
    with pytest.raises(UsageError, match="for a detection or segmentation model"):
        logits_of(Detector()(torch.zeros(1, 3, 8, 8)))
    with pytest.raises(UsageError, match=r"returns \(1, 4, 8, 8\)"):
        logits_of(torch.zeros(1, 4, 8, 8))


def test_token_grids_follow_the_input_size_and_keep_their_prefix() -> None:
    tokens = torch.arange(2 * (1 + 6 * 8) * 3, dtype=torch.float32).reshape(2, 49, 3)  # (B, 1 + 6 x 8, C)
    grid = as_grid(tokens, 96, 128)
    assert grid is not None and grid.cells.shape == (2, 3, 6, 8)
    assert torch.equal(grid.rebuild(grid.cells), tokens)
    nhwc = torch.rand(1, 3, 4, 16)  # (B, H', W', C) as Swin keeps it
    grid = as_grid(nhwc, 96, 128)
    assert grid is not None and grid.cells.shape == (1, 16, 3, 4) and torch.equal(grid.rebuild(grid.cells), nhwc)
    assert as_grid(torch.rand(1, 10), 96, 128) is None and as_grid(torch.rand(1, 3, 1, 1), 96, 128) is None


def test_a_vision_transformer_draws_at_any_size_where_its_head_reads() -> None:
    """Under a class-token head the last block's patch tokens never reach the logits (their gradient is exactly
    zero), so the map comes from the block before, where every cell does."""
    import timm

    from attnviz.models.timm_models import create_timm_model, timm_encoder

    torch.manual_seed(0)
    model = create_timm_model("vit_tiny_patch16_224", num_classes=5)
    encoder = timm_encoder("timm:vit_tiny_patch16_224", model, [f"c{i}" for i in range(5)])
    assert isinstance(encoder, ModuleEncoder) and encoder.layer == "blocks.10"
    x = torch.rand(1, 3, 96, 128, requires_grad=True)
    last = []
    handle = model.blocks[11].register_forward_hook(lambda m, i, o: last.append(o))
    logits = model(x)
    handle.remove()
    (grad,) = torch.autograd.grad(logits[0, 2], last[0])
    assert float(grad[0, 1:].abs().max()) == 0.0 and float(grad[0, 0].abs().max()) > 0  # patches: exactly 0
    for side, grid in ((96, (6, 8)), (160, (10, 13))):
        result = Explainer(encoder, "concat", side, classify_size=side, device="cpu").explain(
            torch.rand(3, side, side * 4 // 3)
        )
        assert result.grid == grid
    del timm


@pytest.mark.parametrize("name", ["efficientnet_lite1", "efficientnet_lite2"])
def test_lite1_and_lite2_classify_the_bundled_photos_offline(name: str) -> None:
    encoder = create_encoder(name)
    assert encoder.trained_size == {"efficientnet_lite1": 240, "efficientnet_lite2": 260}[name]
    explainer = Explainer(encoder, "dot", device="cpu")
    assert explainer.explain(photo("chelsea.png")).target.index == 285
    assert explainer.explain(photo("coffee.png")).target.index == 967


def test_a_cnn_backbone_without_a_classifier_is_refused_in_one_line() -> None:
    """A backbone draws only a transformer's class-free modes (tests/test_relevance.py); a CNN has none."""
    from attnviz.models.timm_models import create_timm_model, timm_encoder

    encoder = timm_encoder("timm:resnet18", create_timm_model("resnet18", num_classes=0))
    assert encoder.headless and encoder.labels == []
    with pytest.raises(UsageError, match=r"no classifier \(a backbone without a head\), so --mode concat"):
        Explainer(encoder, "concat", device="cpu")
    with pytest.raises(UsageError, match="--mode cls needs a transformer"):
        Explainer(encoder, "cls", device="cpu")
