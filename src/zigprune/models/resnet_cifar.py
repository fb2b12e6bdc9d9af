"""CIFAR-style ResNet-(6n+2) (He et al. 2016, section 4.2) with projection shortcuts."""

import torch
from torch import nn

from . import register
from .resnet import BasicBlock, make_stage


class CifarResNet(nn.Module):
    """Three BasicBlock stages of widths 16/32/64 (times `width`) and adaptive pooling."""

    def __init__(
        self,
        depth: int,
        in_channels: int = 3,
        num_classes: int = 10,
        width: float = 1.0,
    ) -> None:
        super().__init__()
        if depth < 8 or (depth - 2) % 6:
            raise ValueError(f"CIFAR ResNet depth must be 6n+2 with n >= 1, got {depth}")
        n = (depth - 2) // 6
        w1, w2, w3 = (max(1, round(c * width)) for c in (16, 32, 64))
        self.conv1 = nn.Conv2d(in_channels, w1, 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(w1)
        self.relu = nn.ReLU()
        self.layer1 = make_stage(BasicBlock, w1, w1, n, 1)
        self.layer2 = make_stage(BasicBlock, w1, w2, n, 2)
        self.layer3 = make_stage(BasicBlock, w2, w3, n, 2)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.flatten = nn.Flatten(1)
        self.fc = nn.Linear(w3, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.relu(self.bn1(self.conv1(x)))
        x = self.layer3(self.layer2(self.layer1(x)))
        return self.fc(self.flatten(self.pool(x)))


@register("resnet20", input_shape=(3, 32, 32))
def resnet20(in_channels: int = 3, num_classes: int = 10, width: float = 1.0) -> CifarResNet:
    """ResNet-20 for CIFAR (~0.27M params): the standard small residual pruning benchmark."""
    return CifarResNet(20, in_channels, num_classes, width)


@register("resnet32", input_shape=(3, 32, 32))
def resnet32(in_channels: int = 3, num_classes: int = 10, width: float = 1.0) -> CifarResNet:
    """ResNet-32 for CIFAR (~0.46M params)."""
    return CifarResNet(32, in_channels, num_classes, width)


@register("resnet56", input_shape=(3, 32, 32))
def resnet56(in_channels: int = 3, num_classes: int = 10, width: float = 1.0) -> CifarResNet:
    """ResNet-56 for CIFAR (~0.85M params): the usual deep residual pruning benchmark."""
    return CifarResNet(56, in_channels, num_classes, width)


@register("resnet110", input_shape=(3, 32, 32))
def resnet110(in_channels: int = 3, num_classes: int = 10, width: float = 1.0) -> CifarResNet:
    """ResNet-110 for CIFAR (~1.7M params): a very deep, narrow residual network."""
    return CifarResNet(110, in_channels, num_classes, width)
