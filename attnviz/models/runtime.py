"""Runtime backends: the exported encoder (`models/export.py`) under ONNX Runtime or OpenVINO on the CPU, and the
choice between them and torch that `--backend` makes.

A runtime runs the same graph as the torch encoder (checked at export) about 1.7x faster on one CPU thread (64 ms
against 107-112 ms at 608 x 448, issue 15), but it has no autograd: gradient queries, `fit` and anything that
differentiates stay on torch. Each engine takes its thread count from its own session settings, never from
process-wide state, so the caller's torch settings stay.
"""

from __future__ import annotations

import importlib.util
import threading
from collections.abc import Callable
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from attnviz.errors import ComputeError, UsageError
from attnviz.models.base import Encoder
from attnviz.models.export import FEATURES, INPUT, LOGITS, ExportError, ensure_onnx
from attnviz.options import Backend

#: Modules each runtime backend needs: its own, plus onnx (the exporter) and onnxruntime (the export's check).
NEEDS = {
    Backend.onnxruntime: ("onnxruntime", "onnx"),
    Backend.openvino: ("openvino", "onnxruntime", "onnx"),
}
EXTRAS = {Backend.onnxruntime: "attnviz[runtime]", Backend.openvino: "attnviz[openvino]"}
#: What `auto` tries, in order, among the installed runtimes (see README, *Speed*: measured with scripts/bench.py).
AUTO_ORDER = (Backend.onnxruntime, Backend.openvino)


class Engine:
    """An exported encoder under a runtime: (B, 3, h, w) pixels -> ((B, C, H', W') features, (B, K) logits)."""

    backend: Backend

    def __init__(self, name: str) -> None:
        self.name = name  # the encoder's, for messages

    def run(self, pixels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        raise NotImplementedError

    def __call__(self, x: Tensor) -> tuple[Tensor, Tensor]:
        pixels = x.detach().to("cpu", torch.float32).contiguous().numpy()  # (B, 3, h, w) NCHW, as the graph takes
        try:
            features, logits = self.run(pixels)  # (B, C, H', W'), (B, K)
        except MemoryError:
            raise
        except Exception as exc:  # each runtime has its own exception types
            reason = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:160]
            raise ComputeError(
                f"encoder {self.name} cannot run on a {x.shape[-1]} x {x.shape[-2]} input under "
                f"{self.backend.value} ({reason}); try another --size or --backend torch"
            ) from None
        return torch.from_numpy(features), torch.from_numpy(logits)


class OnnxRuntimeEngine(Engine):
    backend = Backend.onnxruntime

    def __init__(self, name: str, path: Path, threads: int) -> None:
        import onnxruntime as ort

        super().__init__(name)
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads  # 0: ONNX Runtime's default, one per physical core
        options.inter_op_num_threads = 1
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        options.log_severity_level = 3  # errors only: no warnings about the graph on the user's terminal
        self.session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])

    def run(self, pixels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        # one session serves every lane: ONNX Runtime's `run` is thread-safe, each call computing on its caller's thread
        features, logits = self.session.run([FEATURES, LOGITS], {INPUT: pixels})
        return features, logits


class OpenVinoEngine(Engine):
    backend = Backend.openvino

    def __init__(self, name: str, path: Path, threads: int) -> None:
        import openvino as ov

        super().__init__(name)
        core = ov.Core()
        # f32 throughout: on CPUs with bf16 units OpenVINO would otherwise compute in bf16, and maps would drift
        config = {"INFERENCE_PRECISION_HINT": "f32", "PERFORMANCE_HINT": "LATENCY"}
        if threads:
            config["INFERENCE_NUM_THREADS"] = str(threads)
        self.model = core.compile_model(core.read_model(str(path)), "CPU", config)
        self.local = threading.local()  # an infer request belongs to one thread: one per lane

    def run(self, pixels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        request = getattr(self.local, "request", None)
        if request is None:
            request = self.local.request = self.model.create_infer_request()
        result = request.infer({INPUT: pixels})  # outputs are copies: the next pass does not overwrite them
        return result[self.model.output(FEATURES)], result[self.model.output(LOGITS)]


def installed(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):  # a module set to None in sys.modules: as good as missing
        return False


@lru_cache(maxsize=4)
def load_engine(backend: Backend, name: str, path: Path, threads: int) -> Engine:
    """A session on the exported file, shared by the explainers of one process (loading one takes 50 ms)."""
    engine = OnnxRuntimeEngine if backend is Backend.onnxruntime else OpenVinoEngine
    try:
        return engine(name, path, threads)
    except Exception as exc:  # a file the runtime rejects
        reason = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:160]
        raise ExportError(f"{backend.value} cannot load {path} ({reason})") from None


def choose_engine(
    encoder: Encoder,
    backend: Backend | str,
    *,
    classifier_query: bool,
    device: str,
    threads: int = 0,
    notify: Callable[[str], None] = print,
) -> tuple[Engine | None, str]:
    """The engine for `--backend` (None: torch), and why, for `--verbose`.

    `auto` takes the first installed runtime of `AUTO_ORDER`, and torch where no runtime applies: a gradient
    query, a GPU, no runtime installed, or an export that failed or did not reproduce torch. An explicit runtime
    that cannot apply is a one-line error instead.
    """
    backend = Backend(backend)
    auto = backend is Backend.auto
    if backend is Backend.torch:
        return None, "torch (as asked)"
    if not classifier_query:
        if auto:
            return None, "torch: this query is a class-score gradient, which needs autograd"
        raise UsageError(
            f"--backend {backend.value} runs classifier queries only; this one is a gradient (autograd): "
            "use --backend torch"
        )
    if device != "cpu":
        if auto:
            return None, f"torch: the runtimes run on the CPU, and the device is {device}"
        raise UsageError(f"--backend {backend.value} runs on the CPU; use --device cpu, or --backend torch")
    for candidate in AUTO_ORDER if auto else (backend,):
        missing = [m for m in NEEDS[candidate] if not installed(m)]
        if missing and not auto:
            raise UsageError(f"--backend {backend.value} needs {', '.join(missing)}: pip install '{EXTRAS[backend]}'")
        if missing:
            continue
        try:
            engine = _engine(candidate, encoder, threads, notify)
        except ExportError as exc:
            if auto:
                return None, f"torch: {exc}"
            raise
        return engine, f"{candidate.value}, intra-op threads per session: {threads or 'the runtime default'}"
    return None, f"torch: no runtime installed (pip install '{EXTRAS[Backend.onnxruntime]}')"


def _engine(backend: Backend, encoder: Encoder, threads: int, notify: Callable[[str], None]) -> Engine:
    """The engine on the cached export; a cache file the runtime cannot load (cut short, damaged) is exported again."""
    path = ensure_onnx(encoder, notify)
    try:
        return load_engine(backend, encoder.name, path, threads)
    except ExportError:
        path.unlink(missing_ok=True)
    return load_engine(backend, encoder.name, ensure_onnx(encoder, notify), threads)
