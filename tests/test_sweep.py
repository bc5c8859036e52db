# mypy: disable-error-code="union-attr,index,operator"
# (these tests reach into nn.Module attributes, which torch types as `Tensor | Module`)
"""The conformance sweep: every torchvision classifier and timm architectures of every family, with random weights
at a small input, either draw a map in every mode or refuse in one line that says why. Never a traceback.

Weights are filled fast and deterministically (the architectures' own initialisers take minutes for the largest);
batch norms get statistics far from identity so that folding is really exercised. Every architecture is then loaded
the way a user loads it: its state dict saved to a file and read back through the product's own builder, as
`attnviz run -e torchvision:NAME -w FILE` does.
"""

from __future__ import annotations

import contextlib
import copy
import math
import tempfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from attnviz.errors import AttnvizError
from attnviz.explainer import Explainer
from attnviz.models.base import Encoder
from attnviz.models.timm_models import build_timm
from attnviz.models.torchvision_models import build_torchvision
from attnviz.options import ATTENTION_MODES, SCORER_MODES, Mode, Query

from helpers import SAMPLES, run

#: Input side for the sweep: small, a multiple of 32, and not square (rows and columns must not be confused).
SIZE = 96
CLASSES = 7


def torchvision_names() -> list[str]:
    import torchvision

    return sorted(torchvision.models.list_models(module=torchvision.models))


#: At least 40 timm architectures across families: CNNs, then transformers and hybrids.
TIMM_NAMES = [
    # CNNs
    "resnet18", "resnext26ts", "regnetx_002", "regnety_002", "densenet121", "dpn68", "efficientnet_b0",
    "tf_efficientnetv2_b0", "mobilenetv3_small_100", "mobilenetv4_conv_small", "ghostnet_100", "convnext_atto",
    "convnextv2_atto", "vgg11_bn", "inception_v3", "repvgg_a0", "fastvit_t8", "efficientformer_l1", "rexnet_100",
    "dla34", "mixnet_s", "hrnet_w18_small", "res2net50_26w_4s", "cspresnet50", "resnest14d", "selecsls42b",
    "lcnet_050", "tinynet_e",
    # transformers and hybrids
    "vit_tiny_patch16_224", "deit_tiny_patch16_224", "deit_tiny_distilled_patch16_224", "beit_base_patch16_224",
    "eva02_tiny_patch14_224", "vit_small_patch14_dinov2", "vit_betwixt_patch16_reg4_gap_256", "swin_tiny_patch4_window7_224",
    "swinv2_cr_tiny_ns_224", "maxvit_tiny_rw_224", "coatnet_0_rw_224", "levit_128s", "pit_ti_224", "cait_xxs24_224",
    "xcit_nano_12_p16_224", "mobilevit_xxs", "poolformer_s12", "edgenext_xx_small", "twins_svt_small",
]  # fmt: skip


#: The architectures whose class-token attention `cls` and `rollout` must draw.
READABLE_ATTENTION = {
    "vit_tiny_patch16_224", "deit_tiny_patch16_224", "deit_tiny_distilled_patch16_224", "beit_base_patch16_224",
    "eva02_tiny_patch14_224", "vit_small_patch14_dinov2", "vit_b_16", "vit_b_32", "vit_l_16", "vit_l_32", "vit_h_14",
}  # fmt: skip


_INITIALISERS = (
    "uniform_", "normal_", "trunc_normal_", "constant_", "ones_", "zeros_", "eye_", "dirac_", "xavier_uniform_",
    "xavier_normal_", "kaiming_uniform_", "kaiming_normal_", "orthogonal_", "sparse_",
)  # fmt: skip


@contextlib.contextmanager
def skipped_initialisers() -> Iterator[None]:
    """Build a network without running torch's initialisers (its parameters are filled by `fast_init` after):
    the index tables and masks its constructor computes stay as they are."""
    saved = {name: getattr(nn.init, name) for name in _INITIALISERS}
    try:
        for name in _INITIALISERS:
            setattr(nn.init, name, lambda tensor, *args, **kwargs: tensor)
        yield
    finally:
        for name, function in saved.items():
            setattr(nn.init, name, function)


def fast_init(model: nn.Module, seed: int = 0) -> nn.Module:
    """Every parameter filled from one seeded generator, scaled by fan-in; batch norms far from identity."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, tensor in model.named_parameters():
            if tensor.dim() >= 2:
                fan_in = math.prod(tensor.shape[1:])
                tensor.copy_(torch.randn(tensor.shape, generator=generator) / math.sqrt(fan_in))
            elif name.endswith("weight") or name.endswith("gamma"):  # norm and layer scales
                tensor.copy_(torch.rand(tensor.shape, generator=generator) + 0.5)
            else:
                tensor.copy_(torch.randn(tensor.shape, generator=generator) * 0.05)
        for module in model.modules():
            if isinstance(module, nn.modules.batchnorm._BatchNorm) and module.running_var is not None:
                module.running_var.copy_(torch.rand(module.running_var.shape, generator=generator) + 0.5)
                module.running_mean.copy_(torch.randn(module.running_mean.shape, generator=generator) * 0.1)
    return model.eval()


def build(library: str, name: str) -> Encoder:
    """The architecture with `fast_init` weights and CLASSES classes, loaded as a user loads it: its state dict saved
    to a file and read back by the product's own builder (`-e torchvision:NAME -w FILE`, `-e timm:NAME -w FILE`).
    The names at even places in their list are saved as .safetensors, those at odd places with `torch.save` as .pth:
    both formats over every family."""
    with skipped_initialisers(), torch.random.fork_rng(devices=[]):
        if library == "torchvision":
            from torchvision.models import get_model

            model = fast_init(get_model(name, weights=None, num_classes=CLASSES))
            index = torchvision_names().index(name)
        else:
            from attnviz.models.timm_models import create_timm_model

            model = fast_init(create_timm_model(name, num_classes=CLASSES))
            index = TIMM_NAMES.index(name)
    state = model.state_dict()
    del model  # the state holds the tensors: one copy of a giant, not two
    builder = build_torchvision if library == "torchvision" else build_timm
    with tempfile.TemporaryDirectory(prefix="attnviz-sweep-") as folder:
        path = Path(folder) / f"{name}{'.pth' if index % 2 else '.safetensors'}"
        save_state(state, path)
        del state
        with skipped_initialisers(), torch.random.fork_rng(devices=[]):
            encoder = builder(name, str(path))
        path.unlink()  # at once: the largest are gigabytes
    return encoder


def save_state(state: dict[str, torch.Tensor], path: Path) -> None:
    """`state` as a .safetensors file (each tensor a contiguous copy of its own: safetensors refuses tensors that
    share memory, as tied weights and views do) or, for any other suffix, with `torch.save`."""
    if path.suffix != ".safetensors":
        torch.save(state, path)
        return
    from safetensors.torch import save_file

    own = {}
    for key in list(state):  # copied one at a time, each original let go: never two copies of a giant
        own[key] = state.pop(key).detach().clone().contiguous()
    save_file(own, str(path))


def maps(
    encoder: Encoder, size: int, query: Query = Query.auto, modes: tuple[Mode, ...] = SCORER_MODES, jitter: float = 0.0
) -> dict[Mode, np.ndarray]:
    picture = torch.rand(1, 3, size, size * 4 // 3, generator=torch.Generator().manual_seed(1)) * (1 + jitter)
    out = {}
    for mode in modes:
        explainer = Explainer(encoder, mode, size, classify_size=size, device="cpu", query=query)
        result = explainer.infer_classes(_resize(encoder, picture, size), [[3]])[0][0]
        assert result.weights.shape == result.grid and abs(float(result.weights.sum()) - 1) < 1e-3
        assert np.isfinite(result.scores).all()
        out[mode] = result.scores.ravel()
    return out


def _resize(encoder: Encoder, picture: torch.Tensor, size: int) -> torch.Tensor:
    """The picture at the network input the encoder asks for (fixed-size models get their one size)."""
    w, h = encoder.input_size(picture.shape[-1], picture.shape[-2], size)
    return nn.functional.interpolate(picture, size=(h, w), mode="bilinear", align_corners=False)


def check(library: str, name: str) -> str:
    """'ok', or the one-line refusal. A network too small-minded for the sweep's size is tried at its trained size
    too, as a user would after its refusal said to try another --size."""
    try:
        eager = build(library, name)
        eager.requires_grad_(False)
        has_norms = any(isinstance(m, nn.BatchNorm2d) for m in eager.modules())
        folded = copy.deepcopy(eager) if has_norms else eager  # nothing to fold: no copy of a giant
        folded.optimize()
    except AttnvizError as exc:
        return one_line(exc)
    for size in dict.fromkeys((SIZE, eager.trained_size)):
        try:
            by_default = maps(folded, size)
            break
        except AttnvizError as exc:
            refusal = one_line(exc)
    else:
        return refusal
    for mode in ATTENTION_MODES:  # a transformer's own attention: drawn where it can be read, else one line
        try:
            maps(folded, size, modes=(mode,))
        except AttnvizError as exc:
            assert name not in READABLE_ATTENTION, (name, mode, one_line(exc))
            one_line(exc)
    dot = (Mode.dot,)
    norms = [sum(isinstance(m, nn.BatchNorm2d) for m in e.modules()) for e in (eager, folded)]
    if (not has_norms or norms[0] == norms[1]) and eager.class_vectors() is None:
        return "ok"  # nothing was folded, and there is no classifier query to compare: nothing left to check
    plain = maps(eager, size, modes=dot)[Mode.dot]
    folding = np.corrcoef(plain, by_default[Mode.dot])[0, 1]
    if folding <= 0.999:  # a random network can be chaotic: then folding may move the map as much as float noise
        noise = np.corrcoef(plain, maps(eager, size, modes=dot, jitter=1e-6)[Mode.dot])[0, 1]
        assert folding >= noise - 1e-3, (name, folding, noise)
    if eager.class_vectors() is not None:  # a pool-then-linear head: both kinds of query draw the same map
        by_gradient = maps(eager, size, Query.gradient, modes=dot)[Mode.dot]
        assert np.corrcoef(plain, by_gradient)[0, 1] > 0.999, name
    return "ok"


def one_line(exc: AttnvizError) -> str:
    message = str(exc)
    assert message and "\n" not in message, message
    return message


#: The six architectures with the largest peak memory in the sweep (RegNetY-128GF 12.9 GB; all six took 15-82 s
#: each): under pytest-xdist one worker takes them all, one after another, so two never share the machine's memory.
GIANTS = {"regnet_y_128gf", "regnet_y_32gf", "regnet_x_32gf", "vit_h_14", "vit_l_16", "vit_l_32"}


def one_worker_for_giants(names: list[str]) -> list[object]:
    return [pytest.param(n, marks=pytest.mark.xdist_group("giants")) if n in GIANTS else n for n in names]


@pytest.mark.slow
@pytest.mark.parametrize("name", one_worker_for_giants(torchvision_names()))
def test_every_torchvision_classifier(name: str) -> None:
    outcome = check("torchvision", name)
    assert outcome == "ok", outcome


@pytest.mark.slow
@pytest.mark.parametrize("name", TIMM_NAMES)
def test_timm_architectures_of_every_family(name: str) -> None:
    outcome = check("timm", name)
    assert outcome == "ok", outcome


def test_the_sweep_is_broad() -> None:
    assert len(TIMM_NAMES) >= 40 and len(torchvision_names()) >= 70


@pytest.mark.parametrize("suffix", [".safetensors", ".pth"])
@pytest.mark.parametrize(
    ("library", "name"),
    [("torchvision", "mnasnet0_5"), ("torchvision", "regnet_y_400mf"), ("timm", "eva02_tiny_patch14_224")],
)
def test_own_state_dicts_load_without_a_traceback(
    library: str, name: str, suffix: str, tmp_path: Path, capsysbinary: pytest.CaptureFixture[bytes]
) -> None:
    """A state dict saved from the very architecture a user names, with torch's own default initialisation, loads
    through `-w` and draws a map: MNASNet's needs its module versions, RegNet's builder cannot be probed on the meta
    device, EVA-02's is a backbone saved without a head (it draws its own attention, `-m cls`)."""
    if library == "torchvision":
        from torchvision.models import get_model

        model = get_model(name, weights=None)
    else:
        import timm

        model = timm.create_model(name)
    path = tmp_path / f"{name}{suffix}"
    save_state(model.state_dict(), path)
    mode = ["-m", "cls"] if name.startswith("eva02") else []
    out = tmp_path / "out.png"
    code, _, err = run(
        capsysbinary, "run", SAMPLES / "chelsea.png", "-e", f"{library}:{name}", "-w", path, "-o", out, *mode
    )
    assert code == 0, err
    assert out.is_file(), err
