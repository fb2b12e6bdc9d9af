"""Post-training pruning on models it was not tuned on (issue 27 §1): scores in one unit across layers,
the greedy OBS order, the soft floor on every family and rounding per concatenated piece."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

import zigprune as zp
from foreign_nets import IssueNet
from zigprune import data
from zigprune.core.limits import Limits
from zigprune.core.selection import Target, select
from zigprune.posttrain import obs
from zigprune.posttrain.calibration import Calibration
from zigprune.posttrain.consumers import consumers
from zigprune.posttrain.sensitivity import output_sensitivity
from zigprune.training import evaluate, train


def test_greedy_errors_see_that_a_duplicate_no_longer_compensates() -> None:
    """Two identical columns: either goes alone for free, but the second one's error is what removing
    both costs, not the zero that scoring them one at a time gives."""
    torch.manual_seed(0)
    x = torch.randn(200, 3, dtype=torch.float64)
    x = torch.cat([x, x[:, :1]], 1)  # column 3 duplicates column 0
    w = torch.randn(4, 4, dtype=torch.float64)
    h_inv = torch.linalg.inv(x.t() @ x + 1e-6 * torch.eye(4, dtype=torch.float64))
    errors = obs.group_errors(w, h_inv, torch.arange(4), 4, steps=4)
    joint = (x[:, [0, 3]] @ w[:, [0, 3]].t()).square().sum()
    low, high = sorted([float(errors[0]), float(errors[3])])
    assert low < 1e-3 * float(joint)
    lost = x[:, [0, 3]] @ w[:, [0, 3]].t()
    refit = x[:, 1:3] @ torch.linalg.lstsq(x[:, 1:3], lost).solution
    assert high == pytest.approx(float((lost - refit).square().sum()), rel=1e-3)
    assert high > 0.1 * float(joint)


class Scaled(nn.Module):
    """One layer whose two outputs reach the model's output at very different scales."""

    def __init__(self) -> None:
        super().__init__()
        self.a = nn.Linear(4, 6)
        self.b = nn.Linear(6, 2)
        self.register_buffer("scale", torch.tensor([10.0, 0.1]))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([self.b(self.a(x)) * self.scale, x], 1)


def test_sensitivity_weighs_outputs_by_what_they_move_downstream() -> None:
    torch.manual_seed(0)
    model = Scaled().eval()
    x = torch.randn(256, 4)
    space = zp.analyze(model, x[:2])
    members = consumers(space)
    calibration = Calibration.of(list(x.split(64)), model)
    assert output_sensitivity(model, calibration, members)
    layer = next(c for c in members if c.name == "b")
    ratio = float(layer.row_scale[0] / layer.row_scale[1])
    assert 3e3 < ratio < 3e4  # (10 / 0.1)² = 1e4, estimated from random projections
    frozen = copy.deepcopy(model).requires_grad_(False)
    frozen_members = consumers(zp.analyze(frozen, x[:2]))
    assert output_sensitivity(frozen, Calibration.of(list(x.split(64)), frozen), frozen_members)
    assert all(float(c.row_scale.sum()) > 0 for c in frozen_members)


@pytest.fixture(scope="module")
def issue_net() -> tuple[nn.Module, data.Dataset, list[torch.Tensor]]:
    """Issue 27's network (written outside the project) trained a few seconds on digits."""
    digits = data.load("digits")
    torch.manual_seed(0)
    model = IssueNet()
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    train(model, opt, digits.train, epochs=6, batch_size=64, progress=False, catch_signals=False)
    images = torch.stack([digits.train[i][0] for i in range(256)])
    return model.eval(), digits, list(images.split(64))


def test_obs_holds_on_a_network_it_was_not_tuned_on(issue_net) -> None:
    """Issue 27: obs fell to chance at 1.5x fewer MACs, thinning the last conv to one channel; now it
    stays near dense and no family goes below its soft floor."""
    dense, digits, calibration = issue_net
    accuracy = evaluate(dense, digits.test).accuracy
    assert accuracy > 0.9
    for method in ("obs", "magnitude"):
        model = copy.deepcopy(dense)
        space = zp.analyze(model, calibration[0][:2])
        zp.prune(space, calibration, target=1 / 3, by="macs", method=method, progress=False)
        zero = space.zero_groups()
        for family in space.families:
            kept = family.width - int(zero[family.groups].sum())
            assert kept >= 0.1 * family.width, (method, family.name, kept)
        pruned = evaluate(space.construct(), digits.test).accuracy
        if method == "obs":
            assert pruned > accuracy - 0.03


def _family(space: zp.GroupSpace, name: str) -> zp.core.space.Family:
    return next(f for f in space.families if f.name == name)


def _kept(space: zp.GroupSpace, chosen: torch.Tensor, name: str) -> int:
    family = _family(space, name)
    return family.width - int(chosen[family.groups].sum())


def test_soft_floor_keeps_a_share_unless_the_target_needs_it() -> None:
    model = nn.Sequential(nn.Linear(8, 40), nn.ReLU(), nn.Linear(40, 40), nn.ReLU(), nn.Linear(40, 3))
    space = zp.analyze(model, torch.randn(2, 8))
    scores = torch.ones(space.num_groups, dtype=torch.float64)
    scores[_family(space, "0 (Linear)").groups] = 1e-6  # the first layer looks free to cut
    none = torch.zeros(space.num_groups, dtype=torch.bool)
    mild = select(space, scores, none, Target(0.6), 1.0)
    assert _kept(space, mild, "0 (Linear)") == 4  # a tenth of 40, then the other layer pays
    assert _kept(space, mild, "2 (Linear)") == 28
    bare = select(space, scores, none, Target(0.6, limits=Limits(min_keep=0.0)), 1.0)
    assert _kept(space, bare, "0 (Linear)") == 1
    forced = select(space, scores, none, Target(0.95), 1.0)
    assert _kept(space, forced, "0 (Linear)") < 4  # a target beyond the floors still goes through them
    with pytest.raises(ValueError, match="min_keep"):
        Limits(min_keep=1.0)


class TwoBranchCat(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.left = nn.Conv2d(3, 16, 3, padding=1)
        self.right = nn.Conv2d(3, 16, 3, padding=1)
        self.out = nn.Conv2d(32, 8, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.out(torch.relu(torch.cat([self.left(x), self.right(x)], 1)))


def test_round_to_holds_for_every_input_of_a_concat() -> None:
    """A concatenated family was cut to width 9 under round_to=8 (one branch 8 channels, the other 1)."""
    model = TwoBranchCat().eval()
    x = torch.randn(2, 3, 8, 8)
    space = zp.analyze(model, x)
    family = next(f for f in space.families if len(f.pieces) == 2)
    assert [p.width for p in family.pieces] == [16, 16]
    scores = torch.arange(space.num_groups, dtype=torch.float64)  # the right branch costs more
    scores[family.pieces[0].groups] = torch.linspace(0, 1, 16, dtype=torch.float64)
    none = torch.zeros(space.num_groups, dtype=torch.bool)
    for target in (0.2, 0.45, 0.6):
        chosen = select(space, scores, none, Target(target, round_to=8), 1.0)
        space.zero_(chosen)
        slim = space.construct()
        assert slim.left.out_channels % 8 == 0 and slim.right.out_channels % 8 == 0
        assert slim.left.out_channels + slim.right.out_channels < 32
        space.model.load_state_dict(TwoBranchCat().state_dict())
