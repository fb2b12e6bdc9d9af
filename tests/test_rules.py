"""Per-op channel rules: what is prunable, what is not (and why), and exactness where it is."""

import pytest
import torch
from torch import nn

import zigprune as zp
from equality import prune_and_check


def families(model: nn.Module, x: torch.Tensor) -> dict[str, zp.Family]:
    space = zp.analyze(model.eval(), x)
    return {f.modules[0]: f for f in space.families if f.modules}


class Gate(nn.Module):
    """Squeeze-and-excitation: a sigmoid gate multiplies the channels it is computed from."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3, padding=1)
        self.squeeze = nn.Linear(8, 4)
        self.excite = nn.Linear(4, 8)
        self.head = nn.Linear(8, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = torch.relu(self.conv(x))
        g = torch.sigmoid(self.excite(torch.relu(self.squeeze(y.mean((2, 3))))))
        return self.head((y * g[:, :, None, None]).mean((2, 3)))


def test_sigmoid_gate_is_exact() -> None:
    space, slim = prune_and_check(Gate(), torch.randn(2, 3, 6, 6), 0.5)
    fams = {f.modules[0]: f for f in space.families if f.modules}
    assert len(fams["conv"].groups) == 8 and "excite" in fams["conv"].modules
    assert slim.conv.out_channels == slim.excite.out_features < 8


def test_layer_norm_over_channels_is_unprunable() -> None:
    model = nn.Sequential(
        nn.Linear(4, 8), nn.LayerNorm(8), nn.ReLU(), nn.Linear(8, 6), nn.ReLU(), nn.Linear(6, 2)
    )
    fams = families(model, torch.randn(3, 4))
    assert fams["0"].groups == []
    assert any("normalised together" in r for r in fams["0"].reasons)
    assert len(fams["3"].groups) == 6


def test_nonzero_activation_before_a_sum_is_unprunable() -> None:
    model = nn.Sequential(nn.Linear(4, 8, bias=True), nn.Sigmoid(), nn.Linear(8, 2))
    fams = families(model, torch.randn(3, 4))
    assert fams["0"].groups == []
    assert any("not exactly zero" in r for r in fams["0"].reasons)


def test_group_norm_prunes_whole_groups() -> None:
    model = nn.Sequential(nn.Conv2d(3, 12, 3), nn.GroupNorm(4, 12), nn.ReLU(), nn.Conv2d(12, 2, 1))
    x = torch.randn(2, 3, 6, 6)
    space, slim = prune_and_check(model, x, 0.5)
    assert len(next(f for f in space.families if f.modules == ["0"]).groups) == 4
    assert slim[1].num_groups == slim[0].out_channels // 3 < 4


def test_grouped_and_depthwise_convolutions() -> None:
    model = nn.Sequential(
        nn.Conv2d(3, 16, 1), nn.ReLU(), nn.Conv2d(16, 16, 3, padding=1, groups=4), nn.ReLU(),
        nn.Conv2d(16, 16, 3, padding=1, groups=16), nn.BatchNorm2d(16), nn.ReLU(), nn.Conv2d(16, 2, 1),
    )  # fmt: skip
    _, slim = prune_and_check(model, torch.randn(2, 3, 5, 5), 0.5)
    assert slim[2].groups < 4 and slim[2].in_channels == slim[0].out_channels
    assert slim[4].groups == slim[4].in_channels == slim[4].out_channels


def test_flatten_into_linear_cuts_whole_feature_blocks() -> None:
    model = nn.Sequential(
        nn.Conv2d(3, 8, 3), nn.BatchNorm2d(8), nn.ReLU(), nn.Flatten(), nn.Linear(8 * 16, 4)
    )
    _, slim = prune_and_check(model, torch.randn(2, 3, 6, 6), 0.5)
    assert slim[4].in_features == slim[0].out_channels * 16


class Chunky(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 1)
        self.left = nn.Conv2d(4, 4, 1)
        self.head = nn.Conv2d(8, 2, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a, b = torch.relu(self.conv(x)).chunk(2, dim=1)
        return self.head(torch.cat([torch.relu(self.left(a)), b], 1))


def test_equal_chunks_stay_equal() -> None:
    _, slim = prune_and_check(Chunky(), torch.randn(2, 3, 4, 4), 0.5)
    assert slim.conv.out_channels % 2 == 0


class Uneven(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 1)
        self.head = nn.Conv2d(5, 2, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a, _ = torch.relu(self.conv(x)).split([5, 3], dim=1)
        return self.head(a)


def test_uneven_split_is_unprunable() -> None:
    fams = families(Uneven(), torch.randn(2, 3, 4, 4))
    assert fams["conv"].groups == []
    assert any("at sizes fixed in the model" in r for r in fams["conv"].reasons)


@pytest.mark.parametrize(
    "model, x",
    [
        (
            nn.Sequential(nn.Conv1d(3, 8, 3), nn.BatchNorm1d(8), nn.ReLU(), nn.Conv1d(8, 2, 1)),
            torch.randn(2, 3, 10),
        ),
        (nn.Sequential(nn.Linear(4, 8), nn.BatchNorm1d(8), nn.ReLU(), nn.Linear(8, 2)), torch.randn(5, 4)),
        (nn.Sequential(nn.Conv3d(2, 6, 3), nn.ReLU(), nn.Conv3d(6, 2, 1)), torch.randn(1, 2, 5, 5, 5)),
        (
            nn.Sequential(
                nn.ConvTranspose2d(3, 6, 2, stride=2),
                nn.InstanceNorm2d(6, affine=True),
                nn.ReLU(),
                nn.Conv2d(6, 2, 1),
            ),
            torch.randn(2, 3, 4, 4),
        ),
        (nn.Sequential(nn.Linear(4, 8), nn.PReLU(8), nn.Linear(8, 2)), torch.randn(3, 4)),
    ],
)
def test_layers_prune_exactly(model: nn.Module, x: torch.Tensor) -> None:
    prune_and_check(model, x, 0.5)


class Recurrent(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.embed = nn.Linear(3, 8)
        self.lstm = nn.LSTM(8, 6, batch_first=True)
        self.head = nn.Linear(6, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out, _ = self.lstm(torch.relu(self.embed(x)))
        return self.head(out[:, -1])


def test_lstm_is_kept_whole_and_stays_exact() -> None:
    model = Recurrent().eval()
    x = torch.randn(2, 5, 3)
    space = zp.analyze(model, x)
    fams = {f.modules[0]: f for f in space.families if f.modules}
    assert fams["embed"].groups == [] and any("lstm" in r for r in fams["embed"].reasons)
    space.zero_(range(space.num_groups))
    with torch.no_grad():
        torch.testing.assert_close(space.construct()(x), model(x))


class Tied(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.embed = nn.Embedding(20, 8)
        self.up = nn.Linear(8, 16)
        self.down = nn.Linear(16, 8)
        self.out = nn.Linear(8, 20, bias=False)
        self.out.weight = self.embed.weight

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        h = self.embed(ids)
        return self.out(h + self.down(torch.relu(self.up(h))))


def test_tied_embedding_is_cut_once_and_stays_tied() -> None:
    _, slim = prune_and_check(Tied(), torch.tensor([[1, 2, 3], [4, 5, 6]]), 0.5)
    assert slim.out.weight is slim.embed.weight
    assert slim.up.out_features < 16
