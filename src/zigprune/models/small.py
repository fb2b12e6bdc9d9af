"""Tiny models over non-CIFAR inputs: 8x8 digits, 1-D signals, flat features and tokens."""

import torch
from torch import nn

from . import register


@register("digits_cnn", input_shape=(1, 8, 8))
def digits_cnn(
    in_channels: int = 1, num_classes: int = 10, channels: tuple[int, int] = (64, 128)
) -> nn.Sequential:
    """Two conv3x3+BN+ReLU blocks (``channels``) and a pooled linear head for 8x8 sklearn digits."""
    first, second = channels
    return nn.Sequential(
        nn.Conv2d(in_channels, first, 3, padding=1, bias=False),
        nn.BatchNorm2d(first),
        nn.ReLU(),
        nn.Conv2d(first, second, 3, padding=1, bias=False),
        nn.BatchNorm2d(second),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(1),
        nn.Linear(second, num_classes),
    )


@register("conv1d_net", input_shape=(3, 64))
def conv1d_net(
    in_channels: int = 3,
    num_classes: int = 10,
    channels: tuple[int, ...] = (16, 32, 64),
) -> nn.Sequential:
    """Conv1d+BN1d+ReLU stack over (B, C, L) signals of any length, pooled into a linear head."""
    layers: list[nn.Module] = []
    planes = in_channels
    for out in channels:
        layers += [
            nn.Conv1d(planes, out, 3, padding=1, bias=False),
            nn.BatchNorm1d(out),
            nn.ReLU(),
        ]
        planes = out
    layers += [nn.AdaptiveAvgPool1d(1), nn.Flatten(1), nn.Linear(planes, num_classes)]
    return nn.Sequential(*layers)


@register("mlp", input_shape=(64,))
def mlp(in_features: int = 64, num_classes: int = 10, hidden: tuple[int, ...] = (128, 64)) -> nn.Sequential:
    """Linear+BN1d+ReLU hidden layers; flattens its input first so (B, 1, 8, 8) works too."""
    layers: list[nn.Module] = [nn.Flatten(1)]
    features = in_features
    for out in hidden:
        layers += [nn.Linear(features, out), nn.BatchNorm1d(out), nn.ReLU()]
        features = out
    layers.append(nn.Linear(features, num_classes))
    return nn.Sequential(*layers)


class TransformerClassifier(nn.Module):
    """Token + learned position embeddings, a TransformerEncoder, mean-pool and a linear head."""

    def __init__(
        self,
        num_classes: int = 10,
        vocab: int = 100,
        max_len: int = 64,
        d_model: int = 32,
        nhead: int = 4,
        num_layers: int = 2,
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        self.tokens = nn.Embedding(vocab, d_model)
        self.positions = nn.Embedding(max_len, d_model)
        layer = nn.TransformerEncoderLayer(
            d_model,
            nhead,
            dim_feedforward=2 * d_model,
            dropout=dropout,
            batch_first=True,
        )
        self.encoder = nn.TransformerEncoder(layer, num_layers, enable_nested_tensor=False)
        self.head = nn.Linear(d_model, num_classes)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        positions = torch.arange(ids.shape[1], device=ids.device)
        x = self.encoder(self.tokens(ids) + self.positions(positions))
        return self.head(x.mean(dim=1))


@register("transformer_classifier", input_shape=(16,), vocab=100)
def transformer_classifier(
    num_classes: int = 10, vocab: int = 100, max_len: int = 64
) -> TransformerClassifier:
    """A 2-layer, 4-head, d_model 32 encoder over (B, L) token ids: attention heads to prune."""
    return TransformerClassifier(num_classes, vocab, max_len)
