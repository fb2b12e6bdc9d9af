"""count(): parameters and MACs against hand-computed values, attention included."""

import torch
from torch import nn

import zigprune as zp


def test_conv_and_linear_macs_by_hand() -> None:
    model = nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1),
        nn.ReLU(),
        nn.Conv2d(8, 4, 1, bias=False),
        nn.Flatten(),
        nn.Linear(4 * 36, 5),
    )
    x = torch.randn(2, 3, 6, 6)
    conv1 = 2 * 8 * 6 * 6 * 3 * 3 * 3
    conv2 = 2 * 4 * 6 * 6 * 8
    linear = 2 * 5 * 4 * 36
    params = (8 * 3 * 9 + 8) + (4 * 8) + (5 * 144 + 5)
    assert zp.count(model, x, per_sample=False) == {"params": params, "macs": conv1 + conv2 + linear}
    assert zp.count(model, x) == {"params": params, "macs": (conv1 + conv2 + linear) // 2}


def test_grouped_and_transposed_conv_macs() -> None:
    grouped = nn.Conv2d(8, 8, 3, padding=1, groups=4, bias=False)
    x = torch.randn(1, 8, 5, 5)
    assert zp.count(grouped, x)["macs"] == 8 * 5 * 5 * 2 * 9
    transposed = nn.ConvTranspose2d(4, 6, 2, stride=2, bias=False)
    y = torch.randn(1, 4, 3, 3)
    assert zp.count(transposed, y)["macs"] == 4 * 3 * 3 * 6 * 4


class Attention(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.qkv = nn.Linear(16, 48, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, n, _ = x.shape
        q, k, v = self.qkv(x).view(b, n, 3, 4, 4).permute(2, 0, 3, 1, 4)
        return nn.functional.scaled_dot_product_attention(q, k, v)


def test_attention_matmuls_are_counted() -> None:
    x = torch.randn(2, 10, 16)
    qkv = 2 * 10 * 16 * 48
    attention = 2 * 4 * 10 * 10 * (4 + 4)
    assert zp.count(Attention(), x, per_sample=False) == {"params": 16 * 48, "macs": qkv + attention}


def test_tied_parameters_count_once() -> None:
    embed = nn.Embedding(10, 4)
    head = nn.Linear(4, 10, bias=False)
    head.weight = embed.weight
    model = nn.Sequential(embed, head)
    assert zp.count(model, torch.tensor([[1, 2, 3]]))["params"] == 40


def test_space_costs_match_count() -> None:
    model = nn.Sequential(nn.Linear(6, 12), nn.ReLU(), nn.Linear(12, 3)).eval()
    x = torch.randn(4, 6)
    space = zp.analyze(model, x)
    assert space.total_macs == zp.count(model, x)["macs"] == zp.count(model, x, per_sample=False)["macs"] // 4
    assert space.num_groups == 12
    assert space.group_params.tolist() == [6 + 1 + 3] * 12
    space.zero_([0, 1, 2])
    slim = space.construct()
    assert zp.count(slim, x)["macs"] == space.macs(space.zero_groups()) == 9 * (6 + 3)
    assert zp.count(slim, x)["params"] == space.params(space.zero_groups()) == 9 * 6 + 9 + 9 * 3 + 3
