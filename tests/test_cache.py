from __future__ import annotations

from pathlib import Path

import pytest
import torch

from attnviz.attention.cache import cached_tensor, fingerprint


def test_cached_tensor_computes_once_then_reads(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ATTNVIZ_CACHE", str(tmp_path))
    calls = []

    def compute() -> torch.Tensor:
        calls.append(1)
        return torch.arange(6.0).reshape(2, 3)

    first = cached_tensor("k", compute)
    second = cached_tensor("k", compute)
    assert calls == [1] and torch.equal(first, second)
    assert (tmp_path / "k.safetensors").exists()


def test_corrupt_or_unwritable_cache_is_skipped(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ATTNVIZ_CACHE", str(tmp_path))
    (tmp_path / "k.safetensors").write_bytes(b"garbage")
    assert torch.equal(cached_tensor("k", lambda: torch.ones(2)), torch.ones(2))
    blocked = tmp_path / "file"
    blocked.write_text("")
    monkeypatch.setenv("ATTNVIZ_CACHE", str(blocked / "sub"))  # a file where a folder should be
    assert torch.equal(cached_tensor("k", lambda: torch.zeros(2)), torch.zeros(2))


def test_fingerprint_follows_content() -> None:
    a = torch.ones(3, 4)
    assert fingerprint(a) == fingerprint(a.clone())
    b = a.clone()
    b[1, 2] = 1.0001
    assert fingerprint(a) != fingerprint(b)
