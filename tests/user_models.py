"""A model of a user's own, as a user would write it: no attnviz code in it. Used as `--encoder user_models:small_net`."""

from __future__ import annotations

import torch
from torch import nn


class SmallNet(nn.Module):
    """Two conv stages, global pooling and a linear head: 3 classes."""

    def __init__(self) -> None:
        super().__init__()
        generator = torch.Generator().manual_seed(0)
        self.stem = nn.Sequential(nn.Conv2d(3, 8, 3, 2, 1), nn.BatchNorm2d(8), nn.ReLU(inplace=True))
        self.stage = nn.Sequential(nn.Conv2d(8, 16, 3, 2, 1), nn.BatchNorm2d(16), nn.ReLU(inplace=True))
        self.head = nn.Linear(16, 3)
        with torch.no_grad():
            for p in self.parameters():
                p.copy_(torch.randn(p.shape, generator=generator) * 0.5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.stage(self.stem(x)).mean(dim=(2, 3)))  # type: ignore[no-any-return]


def small_net() -> nn.Module:
    return SmallNet()


def not_a_model() -> str:
    return "nope"


class Detector(nn.Module):
    """Returns boxes and scores per image, as a detection model does."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, 2, 1)

    def forward(self, x: torch.Tensor) -> list[dict[str, torch.Tensor]]:
        y = self.conv(x)
        return [{"boxes": y.flatten(1)[:, :4], "scores": y.mean(dim=(1, 2, 3))}]
