"""Any module that maps pictures to class logits: the user's own network, and every classifier whose head attnviz
has no special knowledge of (DenseNet, ShuffleNet, ViT, Swin, MaxViT, ...).

The attended layer is found, when not given, as the last layer whose output is a grid of cells (an NCHW or NHWC
map, or patch tokens) on which the logits depend: under a class-token head the last blocks' patch tokens do not
reach the logits (their gradient is exactly zero), so the block before them is taken. The query is the class
score's gradient, which needs nothing from the head.
"""

from __future__ import annotations

import copy
import importlib
import os
from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import Tensor, nn

from attnviz.errors import UsageError
from attnviz.models.base import IMAGENET_MEAN, IMAGENET_STD, SMALL_PROBE, Encoder
from attnviz.models.grids import DISCOVERY_STRIDE, as_grid
from attnviz.options import TRAINED_SIZE

#: Probe picture (h, w), 128 x 160: not square, so a model that takes only one size shows it, and rows are told
#: from columns.
_PROBE = (SMALL_PROBE, SMALL_PROBE * 5 // 4)
#: The probe for a model whose patches must divide its input and are 14 pixels (DINOv2, EVA-02): 112 x 140, with
#: (112, 224) as the sides of its small and geometry probes.
_PROBE_14 = (112, 140)


def logits_of(output: object) -> Tensor:
    """The (B, K) logits in whatever a model returns: a tensor, a tuple or list, a dict, or an object with
    `.logits` (Hugging Face). Anything else is not a classifier's output."""
    if isinstance(output, Tensor) and output.dim() == 2:
        return output
    if isinstance(output, Mapping):
        for key in ("logits", "out", "pred"):
            if isinstance(output.get(key), Tensor) and output[key].dim() == 2:
                return output[key]  # type: ignore[no-any-return]
        output = list(output.values())
    if hasattr(output, "logits") and isinstance(output.logits, Tensor):
        return output.logits
    if isinstance(output, Sequence) and not isinstance(output, str):
        for item in output:
            if isinstance(item, Tensor) and item.dim() == 2:
                return item
    shape = tuple(output.shape) if isinstance(output, Tensor) else type(output).__name__
    raise UsageError(
        f"the model returns {shape}, not (batch, classes) logits: attnviz explains classifiers; for a detection or "
        "segmentation model, explain its classification backbone instead"
    )


class ModuleEncoder(Encoder):
    """A whole module as the encoder: features come from a hooked layer, logits from its own forward."""

    def __init__(
        self,
        name: str,
        model: nn.Module,
        labels: list[str] | None = None,
        *,
        layer: str | None = None,
        headless: bool = False,
        **kwargs: Any,
    ) -> None:
        trained = int(kwargs.pop("trained_size", TRAINED_SIZE))
        super().__init__(name, labels or [], trained_size=trained, **kwargs)
        self.model = model.eval()
        self._probe_hw = _PROBE
        self.fixed_size, classes = self._sizes(trained)
        self.headless = headless  # the output is pooled features: no labels, and no class to explain
        if labels is not None and len(labels) != classes and not headless:
            raise UsageError(f"encoder {name}: {len(labels)} labels for {classes} classes")
        self.labels = [] if headless else labels or [f"class {i}" for i in range(classes)]
        if layer is None:  # found on the graph: a grid by construction, no need to check it again
            self.default_layer = self.find_layer()
            self.layer = self.default_layer
        else:
            self.default_layer = layer
            self.use_layer(layer)

    def _probe(self) -> Tensor:
        h, w = (self.fixed_size, self.fixed_size) if self.fixed_size else self._probe_hw
        return torch.rand(1, 3, h, w, generator=torch.Generator().manual_seed(0))  # (1, 3, h, w)

    def _sizes(self, trained: int) -> tuple[int | None, int]:
        """(the one square size the model takes, or None when it takes any; its number of classes)."""
        for probe in (_PROBE, _PROBE_14):
            try:
                with torch.inference_mode():
                    output = self.model(torch.zeros(1, 3, *probe))
                self._probe_hw = probe
                if probe is _PROBE_14:
                    self.probe_sides = (probe[0], 2 * probe[0])
                return None, int(logits_of(output).shape[-1])
            except UsageError:
                raise
            except Exception:  # a model that refuses the size, in whatever words: try the next, then its trained size
                pass
        try:
            with torch.inference_mode():
                classes = int(logits_of(self.model(torch.zeros(1, 3, trained, trained))).shape[-1])
        except UsageError:
            raise
        except Exception as exc:
            reason = (str(exc).splitlines() or [type(exc).__name__])[0][:120]
            raise UsageError(f"encoder {self.name}: the model fails on a {trained} px picture ({reason})") from None
        return trained, classes

    def forward_features(self, x: Tensor) -> Tensor:
        return self.model(x)  # type: ignore[no-any-return]  # the whole output; the hook captures the features

    def forward_head(self, features: Tensor) -> Tensor:
        return logits_of(features)

    def use_layer(self, name: str | None) -> None:
        super().use_layer(name or getattr(self, "default_layer", None))

    def find_layer(self) -> str:
        """The last layer whose output is a grid of cells that the head's input depends on.

        The head's input (what the last module producing the logits reads) rather than the logits themselves, so
        a head that is still zero (a fresh torchvision ViT) does not hide the dependence.
        """
        names = {module: name for name, module in self.model.named_modules() if name}
        seen: list[tuple[str, Tensor]] = []
        reads: list[tuple[Tensor, Tensor]] = []  # (input, output) of every module, to find the head's input

        def note(module: nn.Module, inputs: tuple[object, ...], output: object) -> None:
            if isinstance(output, Tensor) and inputs and isinstance(inputs[0], Tensor):
                reads.append((inputs[0], output))
            if isinstance(output, Tensor) and as_grid(output, height, width, DISCOVERY_STRIDE) is not None:
                seen.append((names[module], output))

        x = self._probe().requires_grad_()  # (1, 3, height, width)
        height, width = int(x.shape[-2]), int(x.shape[-1])
        handles = [module.register_forward_hook(note) for module in names]
        try:
            with torch.enable_grad():
                logits = logits_of(self.model(x))
                head_input = next((i for i, o in reversed(reads) if o is logits and i.dim() == 2), logits)
                weights = torch.rand(head_input.shape, generator=torch.Generator().manual_seed(0))
                outputs = [out for _, out in seen]
                scalar = (head_input * weights).sum()
                grads = torch.autograd.grad(scalar, outputs, allow_unused=True) if outputs else ()
        finally:
            for handle in handles:
                handle.remove()
        depends = [
            name
            for (name, _), grad in zip(seen, grads, strict=True)
            if grad is not None
            and (grid := as_grid(grad, height, width, DISCOVERY_STRIDE)) is not None
            and int((grid.cells.abs().sum(dim=1) > 0).sum()) > 1
        ]
        blocks = [name for name in depends if _is_block(self.model, name)]  # a whole block, not a part of one
        if blocks or depends:
            return (blocks or depends)[-1]
        raise UsageError(f"encoder {self.name}: no spatial feature map that its logits depend on")


def _is_block(model: nn.Module, name: str) -> bool:
    """A top-level child of the model, or an item of a Sequential, ModuleList or ModuleDict: a stage or a block."""
    parent_name = name.rpartition(".")[0]
    parent = model.get_submodule(parent_name) if parent_name else model
    return parent is model or isinstance(parent, (nn.Sequential, nn.ModuleList, nn.ModuleDict))


def import_factory(spec: str) -> nn.Module:
    """`package.module:factory` -> the module that `factory()` returns (or the module object named there)."""
    module_name, _, attribute = spec.partition(":")
    if not module_name or not attribute:
        raise UsageError(f"--encoder {spec!r}: give package.module:factory")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise UsageError(f"--encoder {spec}: cannot import {module_name} ({exc})") from None
    target = getattr(module, attribute, None)
    if target is None:
        raise UsageError(f"--encoder {spec}: {module_name} has no {attribute!r}")
    model = target if isinstance(target, nn.Module) else target()
    if not isinstance(model, nn.Module):
        raise UsageError(f"--encoder {spec}: {attribute} gave a {type(model).__name__}, not a torch.nn.Module")
    return model


def build_imported(spec: str, weights: str | None) -> Encoder:
    """The user's own module, from `package.module:factory`, with an optional state dict."""
    from attnviz.models.weights import load_into, load_state_dict

    model = import_factory(spec)
    if weights is not None:
        load_into(model, load_state_dict(weights), weights, spec)
    return ModuleEncoder(spec, model, mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225))


def read_labels(path: str | os.PathLike[str]) -> list[str]:
    """Class names from a file: one per line, or a JSON list, or a JSON object of index -> name."""
    import json

    from attnviz.errors import InputError

    name = os.fspath(path)
    try:
        with open(name, encoding="utf-8") as handle:
            text = handle.read()
    except OSError as exc:
        raise InputError(f"{name}: cannot read labels ({exc.strerror or exc})") from None
    except UnicodeDecodeError:
        raise InputError(f"{name}: labels must be UTF-8 text") from None
    stripped = text.strip()
    if stripped.startswith(("[", "{")):
        try:
            data = json.loads(stripped)
        except json.JSONDecodeError as exc:
            raise InputError(f"{name}: not valid JSON ({exc.msg} at line {exc.lineno})") from None
        if isinstance(data, dict):
            try:
                return [str(data[k]) for k in sorted(data, key=int)]
            except ValueError:
                raise InputError(f"{name}: a JSON object of labels needs class indices as keys") from None
        return [str(item) for item in data]
    labels = [line.strip() for line in text.splitlines() if line.strip()]
    if not labels:
        raise InputError(f"{name}: no labels in it")
    return labels


def wrap_module(
    model: nn.Module,
    *,
    layer: str | None = None,
    labels: Sequence[str] | None = None,
    mean: tuple[float, float, float] = IMAGENET_MEAN,
    std: tuple[float, float, float] = IMAGENET_STD,
) -> Encoder:
    """Any module that maps (B, 3, H, W) pictures to (B, K) logits, as an encoder. A copy is wrapped, frozen and
    put in eval mode, so the caller's module keeps its mode, its gradients and its device."""
    with torch.random.fork_rng(devices=[]):
        encoder = ModuleEncoder(
            type(model).__name__,
            copy.deepcopy(model),
            list(labels) if labels else None,
            layer=layer,
            mean=mean,
            std=std,
        )
    encoder.requires_grad_(False)
    return encoder
