"""VGG-16 with BatchNorm for CIFAR-size images, ending in a flatten-into-linear classifier."""

import torch
from torch import nn

from . import register

_CONFIG: tuple[int | str, ...] = (
    *(64, 64, "M"),
    *(128, 128, "M"),
    *(256, 256, 256, "M"),
    *(512, 512, 512, "M"),
    *(512, 512, 512, "M"),
)


class VGG(nn.Module):
    """Conv3x3+BN+ReLU stacks with pools, flattened into Linear(512*s*s, 512)-ReLU-Linear."""

    def __init__(self, in_channels: int = 3, num_classes: int = 10, image_size: int = 32) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        channels, size = in_channels, image_size
        for item in _CONFIG:
            if item == "M" and size >= 2:
                layers.append(nn.MaxPool2d(2))
                size //= 2
            elif item == "M":
                layers.append(nn.AdaptiveAvgPool2d(1))
                size = 1
            else:
                out = int(item)
                layers += [
                    nn.Conv2d(channels, out, 3, padding=1),
                    nn.BatchNorm2d(out),
                    nn.ReLU(),
                ]
                channels = out
        self.features = nn.Sequential(*layers)
        self.flatten = nn.Flatten(1)
        self.classifier = nn.Sequential(
            nn.Linear(channels * size * size, 512),
            nn.ReLU(),
            nn.Linear(512, num_classes),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.flatten(self.features(x)))


@register("vgg16_bn", input_shape=(3, 32, 32))
def vgg16_bn(in_channels: int = 3, num_classes: int = 10, image_size: int = 32) -> VGG:
    """VGG-16-BN (~15M params); a pool that would shrink below 1x1 becomes an adaptive 1x1 pool."""
    return VGG(in_channels, num_classes, image_size)
