"""Fitted scorer parameters ("heads") as safetensors files: tensors and text metadata only, never code."""

from __future__ import annotations

import os

import torch

from attnviz.attention.cache import fingerprint
from attnviz.attention.scorers import ConcatScorer, GeneralScorer, Scorer
from attnviz.errors import InputError, UsageError
from attnviz.io.outputs import write_bytes
from attnviz.models.base import Encoder
from attnviz.options import Mode
from attnviz.version import __version__

FORMAT = "attnviz-head/1"


def save_head(scorer: Scorer, encoder: Encoder, path: str | os.PathLike[str], *, overwrite: bool = False) -> None:
    from safetensors.torch import save

    if isinstance(scorer, GeneralScorer):
        dims = {
            "enc_dim": scorer.enc_proj.in_features,
            "query_dim": scorer.query_proj.in_features,
            "hidden_dim": scorer.enc_proj.out_features,
        }
    elif isinstance(scorer, ConcatScorer):
        dims = {
            "enc_dim": scorer.enc_dim,
            "query_dim": scorer.combine.in_features - scorer.enc_dim,
            "hidden_dim": scorer.combine.out_features,
        }
    else:
        raise UsageError(f"the {scorer.mode.value} scorer has no parameters to save")
    metadata = {
        "format": FORMAT,
        "attnviz_version": __version__,
        "mode": scorer.mode.value,
        "encoder": encoder.name,
        "layer": encoder.layer or "",
        "classifier": _classifier_fingerprint(encoder),
        **{k: str(v) for k, v in dims.items()},
    }
    tensors = {k: v.detach().cpu().contiguous() for k, v in scorer.state_dict().items()}
    write_bytes(path, save(tensors, metadata=metadata), overwrite=overwrite)


def load_head(path: str | os.PathLike[str], encoder: Encoder, mode: Mode) -> Scorer:
    """A saved head for this encoder and mode; anything else (corrupt, pickled, mismatched) is a one-line error."""
    with torch.random.fork_rng(devices=[]):  # its layers are built (drawing weights) before the file's are loaded
        return _load_head(path, encoder, mode)


def _load_head(path: str | os.PathLike[str], encoder: Encoder, mode: Mode) -> Scorer:
    from safetensors import SafetensorError, safe_open

    name = _head_file(path)
    try:
        with safe_open(name, framework="pt") as handle:
            metadata = handle.metadata() or {}
            tensors = {key: handle.get_tensor(key) for key in handle.keys()}  # noqa: SIM118
    except (SafetensorError, OSError, ValueError) as exc:
        raise InputError(f"{name}: not an attnviz head (not a valid safetensors file: {exc})") from None
    if metadata.get("format") != FORMAT:
        raise InputError(f"{name}: not an attnviz head (no {FORMAT} metadata)")
    if metadata.get("mode") != mode.value:
        raise UsageError(f"{name}: this head is for --mode {metadata.get('mode')}, not {mode.value}")
    if metadata.get("encoder") != encoder.name or metadata.get("layer", "") != (encoder.layer or ""):
        made_for = metadata.get("encoder", "?") + (f" layer {metadata['layer']}" if metadata.get("layer") else "")
        raise UsageError(f"{name}: this head was fitted for encoder {made_for}, not {encoder.name}")
    if metadata.get("classifier") != _classifier_fingerprint(encoder):
        raise UsageError(f"{name}: this head was fitted for other weights of {encoder.name}")
    try:
        enc_dim, query_dim, hidden = (int(metadata[k]) for k in ("enc_dim", "query_dim", "hidden_dim"))
    except (KeyError, ValueError):
        raise InputError(f"{name}: head metadata lacks its dimensions") from None
    scorer: Scorer = (GeneralScorer if mode is Mode.general else ConcatScorer)(enc_dim, query_dim, hidden)
    expected = scorer.state_dict()
    if set(tensors) != set(expected) or any(tensors[k].shape != expected[k].shape for k in expected):
        raise InputError(f"{name}: head tensors do not match its declared dimensions")
    if not all(torch.isfinite(t).all() for t in tensors.values()):
        raise InputError(f"{name}: head contains NaN or infinite parameters")
    scorer.load_state_dict(tensors)
    scorer.eval().freeze()  # a loaded head is attnviz's own: nobody changes it
    return scorer


def _classifier_fingerprint(encoder: Encoder) -> str:
    vectors = encoder.class_vectors()
    return fingerprint(vectors) if vectors is not None else "gradient"


def head_mode(path: str | os.PathLike[str]) -> Mode:
    """The mode a head file was fitted for (read from its metadata only)."""
    from safetensors import SafetensorError, safe_open

    name = _head_file(path)
    try:
        with safe_open(name, framework="pt") as handle:
            mode = (handle.metadata() or {}).get("mode", "")
    except (SafetensorError, OSError, ValueError) as exc:
        raise InputError(f"{name}: not an attnviz head (not a valid safetensors file: {exc})") from None
    if mode not in (Mode.general.value, Mode.concat.value):
        raise InputError(f"{name}: not an attnviz head (no mode in its metadata)")
    return Mode(mode)


def _head_file(path: str | os.PathLike[str]) -> str:
    """`path` as a name, when it is a file."""
    name = os.fspath(path)
    if not os.path.isfile(name):
        raise InputError(f"{name}: no such head file" if not os.path.exists(name) else f"{name}: not a file")
    return name
