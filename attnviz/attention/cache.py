"""A small on-disk cache for tensors that are slow to derive and never change for given weights."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable

import torch
from torch import Tensor

from attnviz.io.cachedir import cache_dir


def fingerprint(tensor: Tensor) -> str:
    """Content hash, so a cache entry can never be used for other weights."""
    data = tensor.detach().to("cpu", torch.float32).contiguous().numpy().tobytes()
    return hashlib.sha256(data).hexdigest()[:20]


def cached_tensor(key: str, compute: Callable[[], Tensor]) -> Tensor:
    """`compute()`, remembered in a safetensors file; a cache that cannot be read or written is just skipped."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file, save_file

    path = cache_dir() / f"{key}.safetensors"
    try:
        return load_file(path)["value"]
    except (OSError, SafetensorError, KeyError):
        pass
    value = compute()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".{os.getpid()}.tmp")
        save_file({"value": value.contiguous()}, tmp)
        os.replace(tmp, path)
    except OSError:
        pass
    return value
