# mypy: disable-error-code="union-attr,index,operator"
# (these tests reach into nn.Module attributes, which torch types as `Tensor | Module`)
"""The transformer's own attention as a map: `--mode cls` and `--mode rollout`."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from torch import Tensor

from attnviz.attention.transformer import rollout
from attnviz.errors import UsageError
from attnviz.explainer import Explainer
from attnviz.models.base import Encoder
from attnviz.options import ATTENTION_MODES, Mode

from helpers import SAMPLES, TINY, TinyEncoder, one_error_line, run


def tiny_vit(name: str = "vit_tiny_patch16_224", **kwargs: Any) -> tuple[Encoder, torch.nn.Module]:
    from attnviz.models.timm_models import create_timm_model, timm_encoder

    torch.manual_seed(0)
    model = create_timm_model(name, num_classes=5, depth=3, **kwargs)
    return timm_encoder(f"timm:{name}", model, [f"c{i}" for i in range(5)]), model


def manual_cls_row(model: torch.nn.Module, x: Tensor) -> Tensor:
    """The last block's class-token attention over the patches, computed from its q and k by hand."""
    seen: list[Tensor] = []
    attn = model.blocks[-1].attn
    handle = attn.register_forward_hook(lambda m, i, o: seen.append(i[0]))
    with torch.inference_mode():
        model(x)
    handle.remove()
    tokens = seen[0]  # (B, N, C)
    b, n, c = tokens.shape
    with torch.inference_mode():
        return _cls_row(model, attn, tokens, b, n, c)


def _cls_row(model: torch.nn.Module, attn: torch.nn.Module, tokens: Tensor, b: int, n: int, c: int) -> Tensor:
    qkv = attn.qkv(tokens).reshape(b, n, 3, attn.num_heads, c // attn.num_heads).permute(2, 0, 3, 1, 4)
    q, k = attn.q_norm(qkv[0]), attn.k_norm(qkv[1])  # (B, heads, N, d)
    weights = ((q * attn.scale) @ k.transpose(-2, -1)).softmax(dim=-1).mean(dim=1)  # (B, N, N)
    row = weights[:, 0, model.num_prefix_tokens :]  # (B, patches)
    return row / row.sum(dim=1, keepdim=True)


def test_cls_is_the_class_tokens_attention_at_any_size_and_leaves_timm_as_it_was() -> None:
    import timm.layers

    encoder, model = tiny_vit()
    fused_before = timm.layers.use_fused_attn()
    reference = model.blocks[-1].attn.fused_attn
    other_model = tiny_vit()[1]
    for side, width, grid in ((96, 128, (6, 8)), (160, 208, (10, 13))):
        x = torch.rand(1, 3, side, width)
        result = Explainer(encoder, Mode.cls, side, classify_size=side, device="cpu").infer_classes(x, None)[0][0]
        assert result.grid == grid
        expected = manual_cls_row(model, x).reshape(grid).numpy()
        np.testing.assert_allclose(result.weights, expected, atol=1e-6)
        assert np.isclose(result.weights.sum(), 1, atol=1e-5)
    assert timm.layers.use_fused_attn() == fused_before  # the global setting is untouched
    assert other_model.blocks[-1].attn.fused_attn == reference  # and so is every other model


def test_the_map_does_not_change_what_the_network_predicts() -> None:
    encoder, model = tiny_vit()
    x = torch.rand(2, 3, 96, 128)
    with torch.inference_mode():
        before = model(x)
    results = Explainer(encoder, Mode.rollout, 96, classify_size=96, device="cpu").infer_classes(x, None, top=2)
    probs = before.softmax(dim=-1)
    for i, maps in enumerate(results):
        assert [m.target.index for m in maps] == probs[i].topk(2).indices.tolist()
        assert np.isclose(maps[0].target.prob, float(probs[i].max()), atol=1e-5)
        np.testing.assert_array_equal(maps[0].weights, maps[1].weights)  # the same map for every class


def test_rollout_adds_the_residual_and_multiplies_the_blocks_in_order() -> None:
    first = torch.tensor([[0.0, 1.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]])
    second = torch.tensor([[0.0, 0.0, 1.0], [1.0, 0.0, 0.0], [0.0, 1.0, 0.0]])
    mix = [0.5 * a + 0.5 * torch.eye(3) for a in (first, second)]
    expected = mix[1] @ mix[0]
    got = rollout([first[None, None], torch.stack([second, second])[None]])[0]  # two heads, the same attention
    torch.testing.assert_close(got, expected)
    assert torch.allclose(got.sum(dim=-1), torch.ones(3))


def test_rollout_drops_the_weakest_links_of_each_block_first() -> None:
    attention = torch.tensor([[0.1, 0.6, 0.3], [0.2, 0.2, 0.6], [0.7, 0.05, 0.25]])
    kept = torch.where(attention >= 0.3, attention, torch.zeros(()))  # 5 of 9 links dropped: discard 5/9
    mix = 0.5 * kept + 0.5 * torch.eye(3)
    expected = mix / mix.sum(dim=-1, keepdim=True)
    got = rollout([attention[None, None]], discard=5 / 9 + 1e-6)[0]
    torch.testing.assert_close(got, expected)
    assert not torch.allclose(got, rollout([attention[None, None]])[0])


def test_registers_and_distillation_tokens_are_not_drawn_as_patches() -> None:
    for name, kwargs in (("vit_small_patch14_reg4_dinov2", {"img_size": 98}), ("deit_tiny_distilled_patch16_224", {})):
        encoder, model = tiny_vit(name, **kwargs)
        x = torch.rand(1, 3, 98, 126) if "dinov2" in name else torch.rand(1, 3, 96, 128)
        result = Explainer(encoder, Mode.cls, 96, classify_size=96, device="cpu").infer_classes(x, None)[0][0]
        expected = manual_cls_row(model, x).reshape(result.grid).numpy()
        np.testing.assert_allclose(result.weights, expected, atol=1e-6)


@pytest.mark.parametrize("mode", ATTENTION_MODES)
def test_networks_without_readable_attention_or_a_class_token_are_refused_in_one_line(mode: Mode) -> None:
    with pytest.raises(UsageError, match=f"--mode {mode.value} needs a transformer"):
        Explainer(TinyEncoder(), mode, 64, device="cpu")
    from attnviz.models.timm_models import create_timm_model, timm_encoder

    swin = timm_encoder(
        "timm:swin_tiny_patch4_window7_224", create_timm_model("swin_tiny_patch4_window7_224", num_classes=3)
    )
    with pytest.raises(UsageError, match="has no class token"):
        Explainer(swin, mode, 224, device="cpu")
    if mode is Mode.rollout:
        pit = timm_encoder("timm:pit_ti_224", create_timm_model("pit_ti_224", num_classes=3))
        explainer = Explainer(pit, mode, 224, device="cpu")
        with pytest.raises(UsageError, match="pools tokens or adds class-attention blocks: use --mode cls"):
            explainer.infer_classes(torch.rand(1, 3, 224, 224), None)


def test_the_cli_refuses_classes_for_a_class_free_map_and_cnns_in_one_line(capsysbinary, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    code, _, err = run(capsysbinary, "run", SAMPLES / "coffee.png", "-m", "cls", "-k", "3", "-o", tmp_path)
    assert code == 2
    one_error_line(err, "--mode cls shows the class token's attention, the same for every class")
    code, _, err = run(capsysbinary, "run", SAMPLES / "coffee.png", *TINY, "-m", "rollout", "-o", tmp_path)
    assert code == 2
    one_error_line(err, "--mode rollout needs a transformer")


def tiny_torchvision_vit() -> tuple[Encoder, torch.nn.Module]:
    from torchvision.models import VisionTransformer

    from attnviz.models.torchvision_models import torchvision_encoder

    torch.manual_seed(0)
    model = VisionTransformer(image_size=224, patch_size=32, num_layers=3, num_heads=2, hidden_dim=32, mlp_dim=64)
    model.heads = torch.nn.Sequential(torch.nn.Linear(32, 5))  # 5 classes
    labels = [f"c{i}" for i in range(5)]
    return torchvision_encoder("torchvision:tiny_vit", model.eval(), labels, mean=(0.5,) * 3, std=(0.5,) * 3), model


def test_torchvisions_vit_hands_over_its_attention_only_while_a_map_is_drawn() -> None:
    """torchvision's blocks call nn.MultiheadAttention with need_weights=False: the weights are asked for during the
    recorded pass only, and they are the ones the block computes."""
    encoder, model = tiny_torchvision_vit()
    x = torch.rand(1, 3, 224, 224)
    last = model.encoder.layers[-1]
    normed: list[Tensor] = []
    handle = last.ln_1.register_forward_hook(lambda m, i, o: normed.append(o))
    with torch.inference_mode():
        before = model(x)
        handle.remove()
        _, expected = last.self_attention(normed[0], normed[0], normed[0], need_weights=True)  # (1, N, N)
    row = expected[:, 0, 1:] / expected[:, 0, 1:].sum(dim=1, keepdim=True)  # the class token's row, heads averaged
    for mode in ATTENTION_MODES:
        result = Explainer(encoder, mode, 224, device="cpu").infer_classes(x, None)[0][0]
        assert result.grid == (7, 7) and np.isclose(result.weights.sum(), 1, atol=1e-5)
        if mode is Mode.cls:
            np.testing.assert_allclose(result.weights.ravel(), row[0].numpy(), atol=1e-6)
    assert not last.self_attention._forward_pre_hooks and not last.self_attention._forward_hooks
    with torch.inference_mode():
        assert torch.equal(model(x), before)  # and the network predicts as it did


def test_other_threads_attention_calls_are_left_as_they_were_made_while_a_map_is_recorded() -> None:
    import threading

    from attnviz.attention.transformer import TransformerAttention

    encoder, model = tiny_torchvision_vit()
    attention = TransformerAttention(encoder, Mode.cls, encoder.name)
    block = model.encoder.layers[-1].self_attention
    tokens = torch.rand(1, 50, 32)
    seen: list[object] = []
    with attention.recording():
        other = threading.Thread(target=lambda: seen.append(block(tokens, tokens, tokens, need_weights=False)[1]))
        other.start()
        other.join()
    assert seen == [None]  # that caller asked for no weights, and got none
