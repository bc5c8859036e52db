"""Loading parameter files without ever unpickling arbitrary objects, and saying exactly why a file does not fit."""

from __future__ import annotations

import os
import pickle
import warnings
from collections import OrderedDict
from collections.abc import Mapping

import torch
from torch import Tensor, nn

from attnviz.errors import InputError

_SHOWN = 4


#: What a file of other bytes (a picture, text) given as weights is told.
NOT_A_CHECKPOINT = "{name}: cannot read weights: not a torch checkpoint (.pt, .pth) or .safetensors file"


def load_state_dict(path: str | os.PathLike[str]) -> dict[str, Tensor]:
    """Tensors from a .safetensors file, or from a torch checkpoint read with `weights_only=True`.

    `weights_only` lets torch rebuild tensors and plain containers only; a pickle that would run code is refused
    before anything in it executes. Checkpoints that wrap the weights in {"state_dict": ...} or {"model": ...} are
    unwrapped.
    """
    name = os.fspath(path)
    if not os.path.isfile(name):
        raise InputError(f"{name}: no such file" if not os.path.exists(name) else f"{name}: not a file")
    if name.endswith(".safetensors"):
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        try:
            return dict(load_file(name))
        except (SafetensorError, OSError, ValueError) as exc:
            raise InputError(f"{name}: not a valid safetensors file ({exc})") from None
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # torch's own advice would be to unpickle it anyway
            loaded = torch.load(name, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError:
        if not _is_checkpoint(name):  # bytes that are no pickle at all (a picture): torch's "Unsupported operand"
            raise InputError(NOT_A_CHECKPOINT.format(name=name)) from None
        raise InputError(
            f"{name}: refused: not a plain weights file (it holds objects other than tensors, and loading those "
            "could run code)"
        ) from None
    except (RuntimeError, OSError, ValueError, EOFError, KeyError, IndexError) as exc:  # damaged files, or others
        if not _is_checkpoint(name):  # a pickle's opcodes read from bytes that are none: `KeyError: 101`
            raise InputError(NOT_A_CHECKPOINT.format(name=name)) from None
        raise InputError(
            f"{name}: cannot read weights ({str(exc).splitlines()[0] if str(exc) else type(exc).__name__})"
        ) from None
    for key in ("state_dict", "model", "model_state_dict"):
        if isinstance(loaded, Mapping) and isinstance(loaded.get(key), Mapping):
            loaded = loaded[key]
    if not isinstance(loaded, Mapping) or not all(isinstance(v, Tensor) for v in loaded.values()):
        raise InputError(f"{name}: does not hold a state dict (a mapping of names to tensors)")
    return {str(k).removeprefix("module."): v for k, v in loaded.items()}


def mismatch(model: nn.Module, state: Mapping[str, Tensor]) -> str | None:
    """None when `state` fits `model` exactly, else a one-line account of the missing, unexpected and misshapen."""
    expected = model.state_dict()
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    shapes = [
        f"{k} {tuple(state[k].shape)} vs {tuple(v.shape)}"
        for k, v in expected.items()
        if k in state and tuple(state[k].shape) != tuple(v.shape)
    ]
    parts = []
    for label, items in (("missing", missing), ("unexpected", unexpected), ("wrong shape (file vs model)", shapes)):
        if items:
            more = f" and {len(items) - _SHOWN} more" if len(items) > _SHOWN else ""
            parts.append(f"{len(items)} {label}: {', '.join(items[:_SHOWN])}{more}")
    return "; ".join(parts) or None


def load_into(model: nn.Module, state: Mapping[str, Tensor], source: str, what: str) -> None:
    """A strict load of `state` into `model`, or one line naming the keys that differ.

    A safetensors file (or a dict rebuilt from a checkpoint) carries no module versions, which some modules read
    while loading (torchvision's MNASNet refuses a state dict without one). The keys and shapes were checked to be
    exactly the model's own, so the model's own versions are the file's.
    """
    problem = mismatch(model, state)
    if problem is not None:
        raise InputError(f"{source} does not fit {what}: {problem}")
    versioned = OrderedDict(state)
    versioned._metadata = getattr(state, "_metadata", None) or model.state_dict()._metadata  # type: ignore[attr-defined]
    model.load_state_dict(versioned, strict=True)


def _is_checkpoint(name: str) -> bool:
    """Whether a file starts as torch's zip checkpoints or a pickle (its PROTO opcode) do."""
    with open(name, "rb") as handle:
        start = handle.read(2)
    return start == b"PK" or start[:1] == b"\x80"
