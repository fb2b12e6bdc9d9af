"""ImageNet-style ResNet-18 and ResNet-50 (He et al. 2016), optionally with a small-image stem."""

import torch
from torch import nn

from . import register


def _shortcut(in_planes: int, out_planes: int, stride: int) -> nn.Module:
    """Identity when shapes match, else a 1x1 conv + BN projection (option B)."""
    if stride == 1 and in_planes == out_planes:
        return nn.Identity()
    return nn.Sequential(
        nn.Conv2d(in_planes, out_planes, 1, stride, bias=False),
        nn.BatchNorm2d(out_planes),
    )


class BasicBlock(nn.Module):
    """Two 3x3 conv+BN layers around a residual add; the ResNet-18 and CIFAR ResNet block."""

    expansion = 1

    def __init__(self, in_planes: int, planes: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_planes, planes, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.relu1 = nn.ReLU()
        self.conv2 = nn.Conv2d(planes, planes, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.shortcut = _shortcut(in_planes, planes, stride)
        self.relu2 = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu1(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu2(out + self.shortcut(x))


class Bottleneck(nn.Module):
    """1x1 reduce, 3x3 (strided), 1x1 expand by 4, around a residual add; the ResNet-50 block."""

    expansion = 4

    def __init__(self, in_planes: int, planes: int, stride: int = 1) -> None:
        super().__init__()
        out_planes = planes * self.expansion
        self.conv1 = nn.Conv2d(in_planes, planes, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.relu1 = nn.ReLU()
        self.conv2 = nn.Conv2d(planes, planes, 3, stride, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.relu2 = nn.ReLU()
        self.conv3 = nn.Conv2d(planes, out_planes, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(out_planes)
        self.shortcut = _shortcut(in_planes, out_planes, stride)
        self.relu3 = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu1(self.bn1(self.conv1(x)))
        out = self.relu2(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return self.relu3(out + self.shortcut(x))


Block = type[BasicBlock] | type[Bottleneck]


def make_stage(block: Block, in_planes: int, planes: int, blocks: int, stride: int) -> nn.Sequential:
    """A stage of `blocks` residual blocks; only the first one strides and changes width."""
    layers = [block(in_planes, planes, stride)]
    layers += [block(planes * block.expansion, planes) for _ in range(blocks - 1)]
    return nn.Sequential(*layers)


class ResNet(nn.Module):
    """Four-stage ResNet (widths 64-512) with a 7x7/max-pool stem, or 3x3 for small images."""

    def __init__(
        self,
        block: Block,
        layers: tuple[int, int, int, int],
        in_channels: int = 3,
        num_classes: int = 10,
        small_input: bool = False,
    ) -> None:
        super().__init__()
        if small_input:
            self.conv1 = nn.Conv2d(in_channels, 64, 3, 1, 1, bias=False)
            self.maxpool: nn.Module = nn.Identity()
        else:
            self.conv1 = nn.Conv2d(in_channels, 64, 7, 2, 3, bias=False)
            self.maxpool = nn.MaxPool2d(3, 2, 1)
        self.bn1 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU()
        e = block.expansion
        self.layer1 = make_stage(block, 64, 64, layers[0], 1)
        self.layer2 = make_stage(block, 64 * e, 128, layers[1], 2)
        self.layer3 = make_stage(block, 128 * e, 256, layers[2], 2)
        self.layer4 = make_stage(block, 256 * e, 512, layers[3], 2)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.flatten = nn.Flatten(1)
        self.fc = nn.Linear(512 * e, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.fc(self.flatten(self.pool(x)))


@register("resnet18", input_shape=(3, 64, 64))
def resnet18(in_channels: int = 3, num_classes: int = 10, small_input: bool = False) -> ResNet:
    """ResNet-18 (BasicBlock, 11M params): the common mid-size residual pruning target."""
    return ResNet(BasicBlock, (2, 2, 2, 2), in_channels, num_classes, small_input)


@register("resnet50", input_shape=(3, 64, 64))
def resnet50(in_channels: int = 3, num_classes: int = 10, small_input: bool = False) -> ResNet:
    """ResNet-50 (Bottleneck, 23.5M params): residual adds over 4x-expanded channels."""
    return ResNet(Bottleneck, (3, 4, 6, 3), in_channels, num_classes, small_input)
