"""The encoder's inference graph (pixels -> features, logits) as an ONNX file, exported once per encoder and
weights and cached on disk, for the runtime backends (`models/runtime.py`).

The file is keyed by a fingerprint of everything that decides the graph: the export version, the encoder's class,
name and layer, and every tensor of its state dict. Batch, height and width stay dynamic, so one file serves every
photo size and both passes (recognition and map). The export is checked before it is trusted: run under ONNX
Runtime at the traced size and at another size and batch, it must reproduce the torch encoder, else it is refused
(and `auto` stays on torch). Files are written to a temporary name and renamed into place, so a cache entry is
whole or absent; one that does not load is exported again.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import time
import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from torch import Tensor, nn

from attnviz.errors import ComputeError
from attnviz.io.cachedir import cache_dir
from attnviz.models.base import Encoder

#: Bump whenever the exported graph changes (inputs, outputs, opset, wrapper): old cache files are then unused.
EXPORT_VERSION = 1
OPSET = 17
INPUT, FEATURES, LOGITS = "pixels", "features", "logits"
#: Largest difference from torch allowed in the check, relative to the largest feature or logit.
TOLERANCE = 1e-4


class ExportError(ComputeError):
    """The encoder could not be exported, or the exported graph does not reproduce it."""


class _Graph(nn.Module):
    """What the runtime runs: (B, 3, H, W) pixels -> ((B, C, H', W') features, (B, K) logits)."""

    def __init__(self, encoder: Encoder) -> None:
        super().__init__()
        self.encoder = encoder

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        return self.encoder(x)  # type: ignore[no-any-return]


def fingerprint(encoder: Encoder) -> str:
    """Content hash of what the exported graph depends on: another weight or layer gives another file."""
    digest = hashlib.sha256(f"{EXPORT_VERSION}|{type(encoder).__qualname__}|{encoder.name}|{encoder.layer}".encode())
    for key, tensor in encoder.state_dict().items():
        value = tensor.detach().to("cpu").contiguous()
        digest.update(f"|{key}|{tuple(value.shape)}|{value.dtype}|".encode())
        digest.update(value.reshape(-1).view(torch.uint8).numpy())  # raw bytes, no copy
    return digest.hexdigest()[:24]


def onnx_path(encoder: Encoder) -> Path:
    safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in encoder.name)
    return cache_dir() / "onnx" / f"{safe}-{fingerprint(encoder)}.onnx"


def probe_sizes(encoder: Encoder) -> tuple[tuple[int, int, int], tuple[int, int, int]]:
    """(batch, h, w) of the traced input and of the check at another size: whole multiples of the stride, not
    square, so a graph that kept the traced size anywhere (a reshape, a padding) fails the check."""
    if encoder.fixed_size is not None:
        side = encoder.fixed_size
        return (1, side, side), (2, side, side)
    s = encoder.stride
    return (1, 4 * s, 5 * s), (2, 6 * s, 3 * s)


def ensure_onnx(encoder: Encoder, notify: Callable[[str], None]) -> Path:
    """The cached ONNX file of `encoder`, exported (and `notify`-ed, once) when there is none yet."""
    path = onnx_path(encoder)
    if path.is_file():
        with contextlib.suppress(OSError):  # a read-only cache still serves
            os.utime(path)  # last used: what `prune` keeps
        return path
    start = time.perf_counter()
    export(encoder, path)
    notify(f"exported {encoder.name} to ONNX ({time.perf_counter() - start:.1f} s), cached at {path}")
    prune(path.parent, keep=kept_exports())
    return path


#: Exports kept in the cache: each other weight file (a fine-tuned head, a planted shortcut) is another export of
#: 5-100 MB, so without a bound the cache only grows (a new user's held 16 of Lite0, 230 MB).
KEEP_EXPORTS = 8


def kept_exports() -> int:
    """`ATTNVIZ_KEEP_EXPORTS` when set to a whole number (a cache shared by many weight files), else 8."""
    value = os.environ.get("ATTNVIZ_KEEP_EXPORTS", "")
    return int(value) if value.isdigit() else KEEP_EXPORTS


def prune(folder: Path, keep: int) -> None:
    """Removes all but the `keep` most recently used exports in `folder`."""
    exports = []
    for path in folder.glob("*.onnx"):
        with contextlib.suppress(OSError):  # another process's prune got there first
            exports.append((path.stat().st_mtime, path))
    for _, path in sorted(exports, reverse=True)[keep:]:
        with contextlib.suppress(OSError):
            path.unlink()


def export(encoder: Encoder, path: Path) -> None:
    """Trace `encoder` to ONNX at `path` (atomically), after checking the graph against torch."""
    traced, other = probe_sizes(encoder)
    device = next(encoder.parameters()).device
    generator = torch.Generator().manual_seed(0)
    probes = [torch.rand(b, 3, h, w, generator=generator).to(device) for b, h, w in (traced, other)]  # (B, 3, h, w)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with warnings.catch_warnings(), torch.no_grad():
            warnings.simplefilter("ignore")  # the TorchScript exporter's deprecation and tracer warnings
            torch.onnx.export(
                _Graph(encoder).eval(),
                (probes[0],),
                str(tmp),
                dynamo=False,  # the dynamo exporter took over 5 minutes on EfficientNet-Lite0 here; this, 0.5 s
                input_names=[INPUT],
                output_names=[FEATURES, LOGITS],
                dynamic_axes={
                    INPUT: {0: "batch", 2: "height", 3: "width"},
                    FEATURES: {0: "batch", 2: "rows", 3: "cols"},
                    LOGITS: {0: "batch"},
                },
                opset_version=OPSET,
            )
        check(encoder, tmp, probes)
        os.replace(tmp, path)
    except ExportError:
        raise
    except Exception as exc:  # anything from anywhere: an unsupported op, a Python branch, a read-only cache
        reason = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:160]
        raise ExportError(f"encoder {encoder.name} could not be exported to ONNX ({reason})") from None
    finally:
        with contextlib.suppress(OSError):  # gone already, or its folder could not be made
            tmp.unlink()


def check(encoder: Encoder, path: Path, probes: list[Tensor]) -> None:
    """The exported graph must give torch's features and logits on every probe, within `TOLERANCE`."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.log_severity_level = 3  # errors only
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    for x in probes:
        with torch.inference_mode():
            expected = [t.float().cpu().numpy() for t in encoder(x)]  # (B, C, H', W'), (B, K)
        got = session.run([FEATURES, LOGITS], {INPUT: x.cpu().contiguous().numpy()})
        for name, want, have in zip((FEATURES, LOGITS), expected, got, strict=True):
            scale = max(1.0, float(np.abs(want).max()))
            if want.shape != have.shape or not float(np.abs(want - have).max()) <= TOLERANCE * scale:
                size = f"{x.shape[-1]} x {x.shape[-2]}"
                raise ExportError(f"encoder {encoder.name}: the ONNX graph's {name} differ from torch's at {size}")
