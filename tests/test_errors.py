"""Bad input gets a clear error; unknown ops warn once and stay exact."""

import warnings

import pytest
import torch
from torch import nn

import zigprune as zp


class DataDependent(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(4, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.sum() > 0:
            return self.fc(x)
        return -self.fc(x)


def test_untraceable_model_raises_trace_error() -> None:
    with pytest.raises(zp.TraceError, match=r"torch\.export could not trace DataDependent") as info:
        zp.analyze(DataDependent(), torch.randn(2, 4))
    assert "Try:" in str(info.value)


def test_wrong_example_inputs_are_named() -> None:
    model = nn.Linear(4, 3)
    with pytest.raises(zp.ExampleInputError, match="does not run on the example inputs"):
        zp.analyze(model, torch.randn(2, 5))
    with pytest.raises(zp.ExampleInputError, match="must be a Tensor"):
        zp.analyze(model, "not a tensor")


def test_group_ids_out_of_range() -> None:
    space = zp.analyze(nn.Sequential(nn.Linear(4, 6), nn.ReLU(), nn.Linear(6, 2)), torch.randn(3, 4))
    with pytest.raises(IndexError, match=r"range\(6\)"):
        space.zero_([6])
    with pytest.raises(IndexError):
        space.zero_([-1])
    with pytest.raises(IndexError, match=r"shape \(6,\)"):
        space.zero_(torch.ones(4, dtype=torch.bool))


def test_zero_takes_a_bool_mask_over_groups() -> None:
    model = nn.Sequential(nn.Linear(4, 6), nn.ReLU(), nn.Linear(6, 2))
    space = zp.analyze(model, torch.randn(3, 4))
    mask = torch.tensor([False, True, False, False, True, True])
    space.zero_(mask)
    assert torch.equal(space.zero_groups(), mask)
    assert torch.equal(model[0].weight.abs().sum(1) == 0, mask)


@torch.library.custom_op("zigtest::shuffle_channels", mutates_args=())
def shuffle_channels(x: torch.Tensor) -> torch.Tensor:
    return x.flip(1).clone()


@shuffle_channels.register_fake
def _(x: torch.Tensor) -> torch.Tensor:
    return torch.empty_like(x)


class UsesCustomOp(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.a = nn.Linear(4, 8)
        self.b = nn.Linear(8, 8)
        self.c = nn.Linear(8, 8)
        self.out = nn.Linear(8, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = shuffle_channels(torch.relu(self.a(x)))
        h = shuffle_channels(torch.relu(self.b(h)))
        return self.out(torch.relu(self.c(h)))


def test_unknown_op_warns_once_and_stays_exact() -> None:
    model = UsesCustomOp().eval()
    x = torch.randn(3, 4)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        space = zp.analyze(model, x)
    messages = [str(w.message) for w in caught if "zigprune" in str(w.message)]
    assert len(messages) == 1 and "shuffle_channels" in messages[0] and "2 use(s)" in messages[0]
    families = {f.modules[0]: f for f in space.families if f.modules}
    assert families["a"].groups == [] and families["b"].groups == []
    assert "no channel rule for shuffle_channels" in " ".join(families["a"].reasons)
    assert len(families["c"].groups) == 8
    space.zero_(range(space.num_groups))
    with torch.no_grad():
        torch.testing.assert_close(space.construct()(x), model(x))


def test_construction_error_names_the_family() -> None:
    model = nn.TransformerEncoder(
        nn.TransformerEncoderLayer(16, 4, 32, batch_first=True, dropout=0.0), 1
    ).eval()
    x = torch.randn(2, 5, 16)
    space = zp.analyze(model, x, check=False)
    attention = next(f for f in space.families if f.modules and "self_attn" in f.modules[0])
    space.zero_(attention.groups[:1])
    with pytest.raises(zp.ConstructionError, match="self_attn"):
        space.construct()


def test_check_marks_families_it_cannot_build_unprunable() -> None:
    model = nn.TransformerEncoder(
        nn.TransformerEncoderLayer(16, 4, 32, batch_first=True, dropout=0.0), 1
    ).eval()
    x = torch.randn(2, 5, 16)
    space = zp.analyze(model, x)
    attention = next(f for f in space.families if f.modules and "self_attn" in f.modules[0])
    assert attention.groups == []
    assert any("construction check" in reason for reason in attention.reasons)
    feed_forward = next(f for f in space.families if f.modules and f.modules[0].endswith("linear1"))
    assert len(feed_forward.groups) == 32
