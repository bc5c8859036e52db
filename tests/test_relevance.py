# mypy: disable-error-code="union-attr,index,operator,attr-defined"
# (these tests reach into nn.Module attributes, which torch types as `Tensor | Module`)
"""Class-specific transformer maps (`grad-rollout`, `legrad`) against the papers' formulas computed by hand, and
backbones without a classifier in the class-free modes."""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from safetensors.torch import save_file
from torch import Tensor, nn

from attnviz.errors import UsageError
from attnviz.explainer import Explainer
from attnviz.models.base import Encoder
from attnviz.options import Mode

from helpers import SAMPLES, one_error_line, run

CLASSES = 5
GRADIENT_MODES = (Mode.grad_rollout, Mode.legrad)


def tiny_timm(**kwargs: Any) -> tuple[Encoder, nn.Module]:
    from attnviz.models.timm_models import create_timm_model, timm_encoder

    torch.manual_seed(0)
    model = create_timm_model("vit_tiny_patch16_224", **{"depth": 3, "num_classes": CLASSES, **kwargs})
    labels = [f"c{i}" for i in range(CLASSES)] if model.num_classes == CLASSES else None
    return timm_encoder("timm:vit_tiny_patch16_224", model, labels), model.eval()


def tiny_torchvision() -> tuple[Encoder, nn.Module]:
    from torchvision.models import VisionTransformer

    from attnviz.models.torchvision_models import torchvision_encoder

    torch.manual_seed(0)
    model = VisionTransformer(image_size=224, patch_size=32, num_layers=3, num_heads=2, hidden_dim=32, mlp_dim=64)
    model.heads = nn.Sequential(nn.Linear(32, CLASSES))
    nn.init.normal_(model.heads[0].weight)  # torchvision starts the head at zero: every gradient would be zero
    labels = [f"c{i}" for i in range(CLASSES)]
    return torchvision_encoder("torchvision:tiny_vit", model.eval(), labels, mean=(0.5,) * 3, std=(0.5,) * 3), model


# -- the networks' forward passes written out, with every attention matrix a tensor of our own -----------------


def timm_by_hand(model: nn.Module, x: Tensor) -> tuple[Tensor, list[Tensor], list[Tensor]]:
    """(logits, each block's (B, heads, N, N) attention, each block's output tokens) of a timm ViT."""
    t = model.norm_pre(model._pos_embed(model.patch_embed(x)))  # (B, N, C)
    attentions, outputs = [], []
    for block in model.blocks:
        attn, h = block.attn, block.norm1(t)
        b, n, c = h.shape
        qkv = attn.qkv(h).reshape(b, n, 3, attn.num_heads, c // attn.num_heads).permute(2, 0, 3, 1, 4)
        q, k, v = attn.q_norm(qkv[0]), attn.k_norm(qkv[1]), qkv[2]  # (B, heads, N, d) each
        a = ((q * attn.scale) @ k.transpose(-2, -1)).softmax(dim=-1)  # (B, heads, N, N)
        attentions.append(a)
        mixed = attn.proj(attn.norm((a @ v).transpose(1, 2).reshape(b, n, c)))
        t = t + block.ls1(mixed)
        t = t + block.ls2(block.mlp(block.norm2(t)))
        outputs.append(t)
    return model.forward_head(model.norm(t)), attentions, outputs


def torchvision_by_hand(model: nn.Module, x: Tensor) -> tuple[Tensor, list[Tensor], list[Tensor]]:
    """The same for torchvision's VisionTransformer (batch-first nn.MultiheadAttention written out)."""
    t = model._process_input(x)
    t = torch.cat([model.class_token.expand(t.shape[0], -1, -1), t], dim=1) + model.encoder.pos_embedding
    attentions, outputs = [], []
    for layer in model.encoder.layers:
        mha, h = layer.self_attention, layer.ln_1(t)
        b, n, c = h.shape
        heads = mha.num_heads
        q, k, v = (
            p.reshape(b, n, heads, c // heads).transpose(1, 2)
            for p in nn.functional.linear(h, mha.in_proj_weight, mha.in_proj_bias).chunk(3, dim=-1)
        )  # (B, heads, N, d) each
        a = (q @ k.transpose(-2, -1) / math.sqrt(c // heads)).softmax(dim=-1)  # (B, heads, N, N)
        attentions.append(a)
        t = t + mha.out_proj((a @ v).transpose(1, 2).reshape(b, n, c))
        t = t + layer.mlp(layer.ln_2(t))
        outputs.append(t)
    head = lambda tokens: model.heads(model.encoder.ln(tokens)[:, 0])  # noqa: E731
    return head(t), attentions, outputs


def chefer_by_hand(logits: Tensor, attentions: list[Tensor], image: int, target: int) -> Tensor:
    grads = torch.autograd.grad(logits[image, target], attentions, retain_graph=True)
    n = attentions[0].shape[-1]
    relevance = torch.eye(n)
    for a, g in zip(attentions, grads, strict=True):
        relevance = relevance + (g[image] * a[image]).clamp(min=0).mean(dim=0) @ relevance
    return relevance[0]  # (N,): the class token's row


def legrad_by_hand(
    head: Callable[[Tensor], Tensor], attentions: list[Tensor], outputs: list[Tensor], image: int, target: int
) -> Tensor:
    layers = []
    for a, tokens in zip(attentions, outputs, strict=True):
        (g,) = torch.autograd.grad(head(tokens)[image, target], a, retain_graph=True)
        layers.append(g[image].clamp(min=0).mean(dim=(0, 1)))  # (N,): heads and query rows averaged
    return torch.stack(layers).mean(dim=0)


def as_weights(row: Tensor, prefix: int) -> np.ndarray:
    patches = row[prefix:].clamp(min=0)
    return (patches / patches.sum()).detach().numpy()


@pytest.mark.parametrize("mode", GRADIENT_MODES)
@pytest.mark.parametrize("family", ["timm", "torchvision"])
def test_class_specific_maps_match_the_papers_formulas_for_each_image_and_class(family: str, mode: Mode) -> None:
    encoder, model = tiny_timm() if family == "timm" else tiny_torchvision()
    x = torch.rand(2, 3, 224, 224, generator=torch.Generator().manual_seed(1))
    wanted = [[1, 3], [4]]  # two classes for the first image, one for the second: one batch
    results = Explainer(encoder, mode, 224, classify_size=224, device="cpu").infer_classes(x, wanted)
    by_hand = timm_by_hand if family == "timm" else torchvision_by_hand
    logits, attentions, outputs = by_hand(model, x)
    with torch.inference_mode():
        torch.testing.assert_close(logits, model(x), atol=1e-5, rtol=1e-4)  # the hand-written pass is the model's
    prefix = 1

    def head(tokens: Tensor) -> Tensor:
        if family == "timm":
            return model.forward_head(model.norm(tokens))
        return model.heads(model.encoder.ln(tokens)[:, 0])

    for image, classes in enumerate(wanted):
        for result, target in zip(results[image], classes, strict=True):
            assert result.target.index == target
            if mode is Mode.grad_rollout:
                row = chefer_by_hand(logits, attentions, image, target)
            else:
                row = legrad_by_hand(head, attentions, outputs, image, target)
            np.testing.assert_allclose(result.weights.ravel(), as_weights(row, prefix), atol=1e-6)
    assert not np.allclose(results[0][0].weights, results[0][1].weights)  # another class, another map


def test_class_specific_maps_leave_the_network_as_it_was() -> None:
    encoder, model = tiny_torchvision()
    x = torch.rand(1, 3, 224, 224)
    with torch.inference_mode():
        before = model(x)
    for mode in GRADIENT_MODES:
        Explainer(encoder, mode, 224, device="cpu").infer_classes(x, None)
    mha = model.encoder.layers[-1].self_attention
    assert not mha._forward_pre_hooks and not mha._forward_hooks and not model.encoder.layers[-1]._forward_hooks
    assert all(p.grad is None for p in model.parameters())
    with torch.inference_mode():
        assert torch.equal(model(x), before)


def test_the_cli_draws_a_class_specific_map_for_a_target(capsysbinary, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    _, model = tiny_timm(num_classes=1000, depth=12)  # the architecture the name stands for
    weights = tmp_path / "vit.safetensors"
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(weights))
    code, out, err = run(
        capsysbinary, "run", SAMPLES / "chelsea.png", "-e", "timm:vit_tiny_patch16_224", "-w", weights,
        "-m", "legrad", "-t", "7", "-t", "9", "-s", "224", "-o", tmp_path, "--json",
    )  # fmt: skip
    assert code == 0, err
    record = json.loads(out)
    assert [m["target"]["index"] for m in record["maps"]] == [7, 9]
    assert all(Path(m["output"]).is_file() for m in record["maps"])


# -- backbones without a classifier ------------------------------------------------------------------------------


def test_a_backbone_draws_class_free_maps_with_no_class() -> None:
    encoder, _ = tiny_timm(num_classes=0)
    assert encoder.headless and encoder.labels == []
    x = torch.rand(2, 3, 96, 128)
    for mode in (Mode.cls, Mode.rollout):
        explainer = Explainer(encoder, mode, 96, device="cpu")
        assert not explainer.two_pass  # no classes to rank at another scale
        results = explainer.infer_classes(x, None)
        assert [len(maps) for maps in results] == [1, 1]
        result = results[0][0]
        assert result.target is None and result.topk == [] and result.grid == (6, 8)
        assert np.isclose(result.weights.sum(), 1, atol=1e-5)


@pytest.mark.parametrize("mode", [Mode.dot, Mode.concat, Mode.grad_rollout, Mode.legrad])
def test_a_backbone_refuses_class_modes_naming_those_that_work(mode: Mode) -> None:
    encoder, _ = tiny_timm(num_classes=0)
    with pytest.raises(UsageError, match=f"no classifier.*--mode {mode.value}.*--mode cls or --mode rollout"):
        Explainer(encoder, mode, 96, device="cpu")
    with pytest.raises(UsageError, match="has no classifier, so no classes"):
        Explainer(encoder, Mode.cls, 96, device="cpu").target_index("cat")


def test_the_cli_on_a_state_dict_without_a_head(capsysbinary, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    _, model = tiny_timm(num_classes=0, depth=12)
    weights = tmp_path / "backbone.safetensors"
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(weights))
    assert not any(k.startswith("head.") for k in model.state_dict())
    args = ("-e", "timm:vit_tiny_patch16_224", "-w", weights, "-s", "96")
    code, out, err = run(
        capsysbinary, "run", SAMPLES / "chelsea.png", *args, "-m", "cls", "-o", tmp_path, "--json", "--annotate"
    )
    assert code == 0, err
    record = json.loads(out)
    assert record["target"] is None and record["topk"] == [] and Path(record["output"]).is_file()
    code, _, err = run(capsysbinary, "run", SAMPLES / "chelsea.png", *args, "-o", tmp_path / "x.png")
    assert code == 2
    one_error_line(err, "has no classifier", "--mode cls or --mode rollout")
    code, _, err = run(capsysbinary, "compare", SAMPLES / "chelsea.png", *args, "-m", "cls", "-m", "rollout",
                       "-o", tmp_path / "both.png")  # fmt: skip
    assert code == 0 and (tmp_path / "both.png").is_file(), err


def test_a_backbones_record_keeps_its_null_target_through_rays_schema() -> None:
    pytest.importorskip("pyarrow")
    from attnviz.ray.records import json_record, to_table
    from attnviz.record import Record

    row: Record = {"input": "a.jpg", "output": "a.png", "grid": [2, 2], "target": None, "topk": [], "peak": [1, 2]}
    error: Record = {"input": "b.jpg", "error": "b.jpg: not an image"}
    back = [json_record(r) for r in to_table([row, error]).to_pylist()]
    assert back[0]["target"] is None and back[0]["topk"] == []
    assert back[1] == error  # an error record's null fields stay left out


def test_class_specific_maps_inside_a_callers_no_grad_or_inference_mode() -> None:
    encoder, _ = tiny_timm()
    x = torch.rand(1, 3, 96, 128)
    for mode in GRADIENT_MODES:
        explainer = Explainer(encoder, mode, 96, device="cpu")
        expected = explainer.infer_classes(x, [[2]])[0][0].weights
        for context in (torch.no_grad, torch.inference_mode):
            with context():
                np.testing.assert_allclose(explainer.infer_classes(x, [[2]])[0][0].weights, expected, atol=1e-7)


def test_artifact_tokens_are_discounted_to_the_median_weight() -> None:
    from attnviz.attention.transformer import discount_outliers

    weights = torch.tensor([[0.1, 0.2, 0.3, 0.4]])
    norms = torch.tensor([[10.0, 10.0, 50.0, 11.0]])  # the third token: 5x the median norm
    torch.testing.assert_close(discount_outliers(weights, norms), torch.tensor([[0.1, 0.2, 0.2, 0.4]]))
