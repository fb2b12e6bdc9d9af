"""Networks written outside the project, kept as their authors wrote them: what post-training pruning
must hold on without having been tuned on them (issue 27)."""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F


def _cbr(cin: int, cout: int, stride: int = 1, groups: int = 1) -> nn.Sequential:
    conv = nn.Conv2d(cin, cout, 3, stride, 1, groups=groups, bias=False)
    return nn.Sequential(conv, nn.BatchNorm2d(cout), nn.ReLU())


class IssueNet(nn.Module):
    """Issue 27's Fashion-MNIST CNN: a 3x3 stem (32), a residual bottleneck whose middle 3x3 conv is
    grouped (4 groups) and whose output a squeeze-excitation gate scales, a strided conv to 64, a
    DenseNet-style concat to 96, a strided conv to 128, mean pooling and an MLP head (128-64-10)."""

    def __init__(self, in_channels: int = 1, num_classes: int = 10) -> None:
        super().__init__()
        self.stem = _cbr(in_channels, 32)
        self.a = nn.Sequential(nn.Conv2d(32, 32, 1, bias=False), nn.BatchNorm2d(32), nn.ReLU())
        self.b = _cbr(32, 32, groups=4)
        self.c = nn.Sequential(nn.Conv2d(32, 32, 1, bias=False), nn.BatchNorm2d(32))
        self.se = nn.Sequential(nn.Linear(32, 8), nn.ReLU(), nn.Linear(8, 32))
        self.down = _cbr(32, 64, stride=2)
        self.dense = _cbr(64, 32)
        self.down2 = _cbr(96, 128, stride=2)
        self.head = nn.Sequential(nn.Linear(128, 64), nn.ReLU(), nn.Linear(64, num_classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x)
        y = self.c(self.b(self.a(x)))
        x = F.relu(x + y * torch.sigmoid(self.se(y.mean((2, 3))))[:, :, None, None])
        x = self.down(x)
        x = torch.cat([x, self.dense(x)], 1)
        return self.head(self.down2(x).mean((2, 3)))
