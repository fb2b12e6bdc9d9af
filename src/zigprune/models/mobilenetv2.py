"""MobileNetV2 (Sandler et al. 2018) with a stride-1 stem for small images."""

import torch
from torch import nn

from . import register

# (expansion t, output channels c, repeats n, first stride s) per stage, from the paper.
_SETTINGS = (
    (1, 16, 1, 1),
    (6, 24, 2, 2),
    (6, 32, 3, 2),
    (6, 64, 4, 2),
    (6, 96, 3, 1),
    (6, 160, 3, 2),
    (6, 320, 1, 1),
)


def _divisible(value: float, divisor: int = 8) -> int:
    """Round a channel count to a multiple of `divisor`, losing at most 10%, as the paper does."""
    rounded = max(divisor, int(value + divisor / 2) // divisor * divisor)
    return rounded + divisor if rounded < 0.9 * value else rounded


def _conv_bn_relu6(
    in_planes: int, out_planes: int, kernel: int, stride: int = 1, groups: int = 1
) -> nn.Sequential:
    """Conv + BN + ReLU6 with 'same' padding; groups=channels makes it depthwise."""
    return nn.Sequential(
        nn.Conv2d(
            in_planes,
            out_planes,
            kernel,
            stride,
            (kernel - 1) // 2,
            groups=groups,
            bias=False,
        ),
        nn.BatchNorm2d(out_planes),
        nn.ReLU6(),
    )


class InvertedResidual(nn.Module):
    """1x1 expand, depthwise 3x3, linear 1x1 project; residual add when shapes match."""

    def __init__(self, in_planes: int, out_planes: int, stride: int, expand_ratio: int) -> None:
        super().__init__()
        hidden = in_planes * expand_ratio
        layers: list[nn.Module] = []
        if expand_ratio != 1:
            layers.append(_conv_bn_relu6(in_planes, hidden, 1))
        layers += [
            _conv_bn_relu6(hidden, hidden, 3, stride, groups=hidden),
            nn.Conv2d(hidden, out_planes, 1, bias=False),
            nn.BatchNorm2d(out_planes),
        ]
        self.conv = nn.Sequential(*layers)
        self.use_residual = stride == 1 and in_planes == out_planes

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.conv(x)
        return x + out if self.use_residual else out


class MobileNetV2(nn.Module):
    """MobileNetV2 backbone, global average pool and a linear classifier."""

    def __init__(
        self,
        in_channels: int = 3,
        num_classes: int = 10,
        width_mult: float = 1.0,
        image_size: int = 32,
    ) -> None:
        super().__init__()
        planes = _divisible(32 * width_mult)
        last = _divisible(1280 * max(1.0, width_mult))
        stem_stride = 1 if image_size <= 64 else 2
        layers: list[nn.Module] = [_conv_bn_relu6(in_channels, planes, 3, stem_stride)]
        for t, c, n, s in _SETTINGS:
            out = _divisible(c * width_mult)
            for i in range(n):
                layers.append(InvertedResidual(planes, out, s if i == 0 else 1, t))
                planes = out
        layers.append(_conv_bn_relu6(planes, last, 1))
        self.features = nn.Sequential(*layers)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.flatten = nn.Flatten(1)
        self.classifier = nn.Linear(last, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.flatten(self.pool(self.features(x))))


@register("mobilenetv2", input_shape=(3, 32, 32))
def mobilenetv2(
    in_channels: int = 3,
    num_classes: int = 10,
    width_mult: float = 1.0,
    image_size: int = 32,
) -> MobileNetV2:
    """MobileNetV2 (~2.2M params): depthwise convs and inverted residuals to prune in groups."""
    return MobileNetV2(in_channels, num_classes, width_mult, image_size)
