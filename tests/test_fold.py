# mypy: disable-error-code="union-attr,index,operator"
# (these tests reach into nn.Module attributes, which torch types as `Tensor | Module`)
"""Batch-norm folding pairs layers on the graph, never by a reused id, and never changes a map."""

from __future__ import annotations

import copy
import warnings

import numpy as np
import pytest
import torch
from torch import nn

from attnviz.explainer import Explainer
from attnviz.models.base import Encoder
from attnviz.models.folding import FoldingWarning, conv_bn_pairs, fold_batch_norms
from attnviz.models.timm_models import TimmEncoder
from attnviz.models.torchvision_models import TorchvisionEncoder

#: Families with batch norms in every arrangement: plain, dense concatenation, dual paths, residual, depthwise,
#: squeeze-excitation, grouped, re-parameterisable branches; and one without any batch norm.
TIMM = (
    "resnet18",
    "densenet121",
    "dpn68",
    "efficientnet_b0",
    "mobilenetv3_small_100",
    "regnetx_002",
    "ghostnet_100",
    "repvgg_a0",
    "vgg11_bn",
    "rexnet_100",
    "dla34",
    "convnext_atto",
)
TORCHVISION = ("resnet18", "resnext50_32x4d", "mobilenet_v3_small", "efficientnet_b0", "vgg11_bn")


def randomise_norms(model: nn.Module, seed: int = 0) -> nn.Module:
    """Give every batch norm statistics and affine parameters far from identity, so a wrong fold shows."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, nn.BatchNorm2d):
                n = module.num_features
                assert module.running_mean is not None and module.running_var is not None
                module.running_mean.copy_(torch.randn(n, generator=generator) * 0.5)
                module.running_var.copy_(torch.rand(n, generator=generator) * 2 + 0.5)
                if module.weight is not None:
                    module.weight.copy_(torch.rand(n, generator=generator) + 0.5)
                    module.bias.copy_(torch.randn(n, generator=generator) * 0.2)
    return model.eval()


def build(library: str, name: str) -> Encoder:
    torch.manual_seed(0)
    if library == "timm":
        import timm

        model = randomise_norms(timm.create_model(name, pretrained=False, num_classes=10))
        return TimmEncoder(f"timm:{name}", model, [f"c{i}" for i in range(10)], mean=(0.5,) * 3, std=(0.5,) * 3)
    from torchvision.models import get_model

    model = randomise_norms(get_model(name, weights=None, num_classes=10))
    return TorchvisionEncoder(name, model, [f"c{i}" for i in range(10)], mean=(0.5,) * 3, std=(0.5,) * 3)


@pytest.mark.parametrize(("library", "name"), [("timm", n) for n in TIMM] + [("torchvision", n) for n in TORCHVISION])
def test_folding_keeps_the_map(library: str, name: str) -> None:
    eager = build(library, name)
    eager.requires_grad_(False)
    folded = copy.deepcopy(eager)
    with warnings.catch_warnings():
        warnings.simplefilter("error", FoldingWarning)  # a refused fold would hide a pairing bug here
        folded.optimize()
    picture = torch.rand(1, 3, 96, 128, generator=torch.Generator().manual_seed(1))
    for mode in ("dot", "concat"):
        maps = []
        for encoder in (eager, folded):
            explainer = Explainer(encoder, mode, 96, classify_size=96, device="cpu")
            maps.append(explainer.infer_classes(picture, [[3]])[0][0].scores.ravel())
        assert np.corrcoef(maps[0], maps[1])[0, 1] > 0.999, (name, mode)


def test_pairs_do_not_depend_on_which_tensors_were_freed() -> None:
    """densenet reads concatenations, not conv outputs: no conv of it may pair with a norm of another block."""
    encoder = build("timm", "densenet121")
    probe = torch.rand(1, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    runs = [conv_bn_pairs(encoder, probe) for _ in range(3)]
    assert runs[0] == runs[1] == runs[2] and len(runs[0]) > 50
    for conv, bn in runs[0]:  # conv1 -> norm2 inside one dense layer, conv0 -> norm0 in the stem
        assert conv.rsplit(".", 1)[0] == bn.rsplit(".", 1)[0], (conv, bn)


def test_a_conv_whose_output_has_another_reader_is_not_folded() -> None:
    class Shared(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv = nn.Conv2d(3, 4, 3, padding=1)
            self.bn = nn.BatchNorm2d(4)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            y = self.conv(x)
            return self.bn(y) + y  # the residual branch reads the unnormalised output

    model = randomise_norms(Shared())
    probe = torch.rand(1, 3, 8, 8)
    assert conv_bn_pairs(model, probe) == []
    assert fold_batch_norms(model, probe) == 0


def test_a_fold_that_changes_the_output_is_undone_and_reported(monkeypatch: pytest.MonkeyPatch) -> None:
    import attnviz.models.folding as fuse

    model = randomise_norms(nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.ReLU()))
    probe = torch.rand(1, 3, 8, 8)
    with torch.no_grad():
        expected = model(probe)
    original = fuse._fold

    def wrong(model: nn.Module, conv: str, bn: str) -> fuse._Undo:
        undo = original(model, conv, bn)
        with torch.no_grad():
            undo.conv.weight.mul_(1.5)  # a fold with the wrong norm's statistics
        return undo

    monkeypatch.setattr(fuse, "_fold", wrong)
    with pytest.warns(FoldingWarning, match="left unfolded"):
        assert fold_batch_norms(model, probe, "toy") == 0
    assert isinstance(model[1], nn.BatchNorm2d)
    with torch.no_grad():
        torch.testing.assert_close(model(probe), expected)
