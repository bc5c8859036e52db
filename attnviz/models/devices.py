"""Where the network runs: `auto` picks CUDA, then Apple's MPS, then the CPU; and how many CPU cores there are."""

from __future__ import annotations

import os

import torch

from attnviz.errors import UsageError


def pick_device(name: str) -> str:
    """`auto`: CUDA, then Apple's MPS, then the CPU. A named device that is missing is a usage error."""
    mps = hasattr(torch.backends, "mps") and torch.backends.mps.is_available()
    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "mps" if mps else "cpu"
    kind = name.split(":")[0]
    if (kind == "cuda" and not torch.cuda.is_available()) or (kind == "mps" and not mps):
        raise UsageError(f"--device {name}: no {kind.upper()} device is available")
    return name


def cpu_count() -> int:
    """Cores this process may run on (its affinity mask, not the machine's count)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # macOS, Windows
        return os.cpu_count() or 1
