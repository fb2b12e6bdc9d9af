"""A small DenseNet-BC (Huang et al. 2017): concatenation-based feature reuse."""

import torch
from torch import nn

from . import register


class DenseLayer(nn.Module):
    """BN-ReLU-Conv1x1-BN-ReLU-Conv3x3 bottleneck whose `growth` new maps join its input."""

    def __init__(self, in_planes: int, growth: int) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.BatchNorm2d(in_planes),
            nn.ReLU(),
            nn.Conv2d(in_planes, 4 * growth, 1, bias=False),
            nn.BatchNorm2d(4 * growth),
            nn.ReLU(),
            nn.Conv2d(4 * growth, growth, 3, padding=1, bias=False),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([x, self.body(x)], dim=1)


def _transition(in_planes: int, out_planes: int) -> nn.Sequential:
    """BN-ReLU-Conv1x1 to compress channels, then a 2x2 average pool to halve resolution."""
    return nn.Sequential(
        nn.BatchNorm2d(in_planes),
        nn.ReLU(),
        nn.Conv2d(in_planes, out_planes, 1, bias=False),
        nn.AvgPool2d(2),
    )


class DenseNet(nn.Module):
    """3x3 stem, dense blocks joined by compressing transitions, pooled linear classifier."""

    def __init__(
        self,
        in_channels: int = 3,
        num_classes: int = 10,
        growth: int = 12,
        block_layers: tuple[int, ...] = (4, 4, 4),
        reduction: float = 0.5,
    ) -> None:
        super().__init__()
        planes = 2 * growth
        layers: list[nn.Module] = [nn.Conv2d(in_channels, planes, 3, padding=1, bias=False)]
        for i, count in enumerate(block_layers):
            for _ in range(count):
                layers.append(DenseLayer(planes, growth))
                planes += growth
            if i < len(block_layers) - 1:
                out = int(planes * reduction)
                layers.append(_transition(planes, out))
                planes = out
        layers += [nn.BatchNorm2d(planes), nn.ReLU()]
        self.features = nn.Sequential(*layers)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.flatten = nn.Flatten(1)
        self.classifier = nn.Linear(planes, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.flatten(self.pool(self.features(x))))


@register("densenet_small", input_shape=(3, 32, 32))
def densenet_small(in_channels: int = 3, num_classes: int = 10, growth: int = 12) -> DenseNet:
    """DenseNet-BC with growth 12 and three 4-layer blocks: channels grow by concatenation."""
    return DenseNet(in_channels, num_classes, growth)
