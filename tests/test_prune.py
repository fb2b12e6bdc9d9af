"""zp.prune: post-training pruning from calibration data, exact construction, and bad input."""

from __future__ import annotations

import copy
import importlib

import pytest
import torch
from torch import nn

import zigprune as zp
from equality import assert_close, outputs
from hf_zoo import build
from zigprune import models
from zigprune.core.selection import Target, select
from zigprune.errors import CalibrationError, TargetError

METHODS = ("obs", "wanda", "flap", "magnitude")


def _state(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in model.state_dict().items()}


def _unchanged(model: nn.Module, before: dict[str, torch.Tensor]) -> bool:
    return all(torch.equal(v, before[k]) for k, v in model.state_dict().items())


class TwoLinear(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.a = nn.Linear(6, 12)
        self.b = nn.Linear(12, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.b(self.a(x))


def test_obs_refit_is_the_least_squares_solution() -> None:
    """With no damping, the consumer's kept columns and bias solve min ||[h_K, 1] W̃ᵀ - b(h)||."""
    torch.manual_seed(0)
    model = TwoLinear().double().eval()
    dense = copy.deepcopy(model)
    calibration = [torch.randn(64, 6, dtype=torch.float64) for _ in range(3)]
    space = zp.analyze(model, calibration[0][:2])
    ids = zp.prune(space, calibration, target=0.5, method="obs", damp=0.0, progress=False)
    assert len(ids) == 6
    x = torch.cat(calibration)
    hidden = dense.a(x).detach()
    kept = [i for i in range(12) if i not in ids]
    design = torch.cat([hidden[:, kept], torch.ones(len(x), 1, dtype=torch.float64)], 1)
    solution = torch.linalg.lstsq(design, dense.b(hidden).detach()).solution.t()
    assert torch.allclose(model.b.weight[:, kept].detach(), solution[:, :-1], atol=1e-8)
    assert torch.allclose(model.b.bias.detach(), solution[:, -1], atol=1e-8)
    assert torch.all(model.a.weight[ids] == 0) and torch.all(model.a.bias[ids] == 0)


def test_refit_lowers_the_consumer_error_against_zeroing_alone() -> None:
    torch.manual_seed(1)
    model = nn.Sequential(nn.Conv2d(3, 16, 3, padding=1), nn.ReLU(), nn.Conv2d(16, 8, 3, padding=1)).eval()
    calibration = [torch.randn(16, 3, 12, 12) for _ in range(2)]
    x = torch.cat(calibration)
    reference = model(x).detach()
    refit = copy.deepcopy(model)
    space = zp.analyze(refit, x[:2])
    ids = zp.prune(space, calibration, target=0.5, method="obs", progress=False)
    plain = copy.deepcopy(model)
    zp.analyze(plain, x[:2]).zero_(ids)
    err_refit = (refit(x) - reference).square().mean().item()
    err_plain = (plain(x) - reference).square().mean().item()
    assert err_refit < 0.5 * err_plain


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("name", ["resnet20", "mobilenetv2", "transformer_classifier", "conv1d_net"])
def test_prune_then_construct_is_exact(name: str, method: str) -> None:
    torch.manual_seed(0)
    model = models.create(name).eval()
    example = models.example_input(name)
    calibration = [models.example_input(name, batch=8) for _ in range(2)]
    space = zp.analyze(model, example)
    ids = zp.prune(space, None if method == "magnitude" else calibration, target=0.3, by="macs",
                   method=method, progress=False)  # fmt: skip
    assert ids == sorted(ids) and len(ids) > 0
    assert bool(space.zero_groups()[ids].all())
    assert int(space.zero_groups().sum()) == len(ids)
    assert space.macs(space.zero_groups()) <= 0.7 * space.total_macs + 1
    slim = space.construct()
    for batch in calibration:
        assert_close(outputs(model, batch), outputs(slim, batch))


@pytest.mark.parametrize("name", ["bert_qa", "gpt2", "llama_gqa"])
def test_obs_prunes_transformers_exactly(name: str) -> None:
    model, inputs = build(name)
    generator = torch.Generator().manual_seed(3)
    calibration = [
        {**inputs, "input_ids": torch.randint(3, 128, inputs["input_ids"].shape, generator=generator)}
        for _ in range(3)
    ]
    space = zp.analyze(model, inputs)
    before = zp.count(model, inputs)
    ids = zp.prune(space, calibration, target=0.3, by="params", progress=False)
    assert len(ids) > 0
    slim = space.construct()
    assert zp.count(slim, inputs)["params"] <= 0.7 * before["params"] + 1
    for batch in calibration:
        assert_close(outputs(model, batch), outputs(slim, batch))


def test_round_to_keeps_widths_multiples() -> None:
    torch.manual_seed(0)
    model = models.create("digits_cnn").eval()
    space = zp.analyze(model, torch.randn(2, 1, 8, 8))
    zp.prune(space, [torch.randn(32, 1, 8, 8)], target=0.5, by="macs", round_to=8, progress=False)
    slim = space.construct()
    convs = [m for m in slim.modules() if isinstance(m, nn.Conv2d)]
    assert all(c.out_channels % 8 == 0 for c in convs)
    assert [c.out_channels for c in convs] != [64, 128]


def test_round_to_counts_channels_so_heads_go_one_at_a_time() -> None:
    """Heads of 16 channels with round_to=8: any number of heads may go, MLP widths stay multiples of 8."""
    model, inputs = build("bert_qa")
    space = zp.analyze(model, inputs)
    heads = [f for f in space.families if f.groups and f.channels > 1]
    mlp = [f for f in space.families if f.groups and f.channels == 1 and f.width > 8]
    assert heads and mlp and all(f.width == 4 and f.channels == 16 for f in heads)
    scores = torch.arange(space.num_groups, dtype=torch.float64)
    for f in heads:
        scores[f.groups] = 1e9
        scores[f.groups[0]] = -1.0  # one head of every layer first, then MLP channels
    none = torch.zeros(space.num_groups, dtype=torch.bool)
    chosen = select(space, scores, none, Target(0.05, by="groups", round_to=8), 1.0)
    per_family = torch.bincount(space.group_family[chosen], minlength=len(space.families))
    assert all(int(per_family[f.index]) == 1 for f in heads)
    zp.prune(space, [inputs], target=0.3, by="macs", round_to=8, progress=False)
    zero = set(space.zero_groups().tolist())
    assert all((f.width - sum(g in zero for g in f.groups)) % 8 == 0 for f in mlp)


def test_batchnorm_statistics_are_reestimated() -> None:
    torch.manual_seed(0)
    model = models.create("resnet20").eval()
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.fill_(5.0)
    space = zp.analyze(model, torch.randn(2, 3, 32, 32))
    zp.prune(space, [torch.randn(8, 3, 32, 32)], target=0.2, method="wanda", progress=False)
    bn = model.bn1
    assert not torch.allclose(bn.running_mean, torch.full_like(bn.running_mean, 5.0))


def test_already_zero_groups_count_as_removed() -> None:
    torch.manual_seed(0)
    model = models.create("digits_cnn").eval()
    space = zp.analyze(model, torch.randn(2, 1, 8, 8))
    space.zero_([0, 1, 2])
    ids = zp.prune(space, None, target=0.25, method="magnitude", progress=False)
    assert {0, 1, 2} <= set(ids)
    assert len(ids) == round(0.25 * space.num_groups)


# -- bad input: a clear error, and the model left as it was -------------------------------------------------


def _space() -> tuple[nn.Module, zp.GroupSpace]:
    torch.manual_seed(0)
    model = models.create("digits_cnn").eval()
    return model, zp.analyze(model, torch.randn(2, 1, 8, 8))


@pytest.mark.parametrize(
    ("calibration", "message"),
    [
        ([], "calibration is empty"),
        (torch.randn(4, 1, 8, 8), "iterable of batches"),
        ([torch.randn(4, 3, 5)], "does not run on calibration batch 0"),
        ([torch.randn(0, 1, 8, 8)], "empty"),
        ([torch.full((4, 1, 8, 8), float("nan"))], "non-finite activations"),
        (None, "needs calibration data"),
    ],
)
def test_bad_calibration_is_a_clear_error_and_changes_nothing(calibration: object, message: str) -> None:
    model, space = _space()
    before = _state(model)
    with pytest.raises(CalibrationError, match=message):
        zp.prune(space, calibration, target=0.3, progress=False)
    assert _unchanged(model, before)


def test_a_target_beyond_reach_says_how_much_can_go() -> None:
    model = TwoLinear().eval()
    space = zp.analyze(model, torch.randn(2, 6))
    before = _state(model)
    with pytest.raises(TargetError, match=r"at most 89\.4% of params can be removed"):
        zp.prune(space, [torch.randn(8, 6)], target=0.95, by="params", progress=False)
    assert _unchanged(model, before)


def test_an_unknown_method_is_refused() -> None:
    _, space = _space()
    with pytest.raises(ValueError, match="unknown method 'sgd'; valid names: obs, wanda, flap, magnitude"):
        zp.prune(space, None, method="sgd")


def test_steps_reach_the_target_in_rounds_and_construct_exactly() -> None:
    torch.manual_seed(0)
    model = models.create("resnet20").eval()
    x = torch.randn(2, 3, 32, 32)
    space = zp.analyze(model, x)
    calibration = [torch.randn(16, 3, 32, 32) for _ in range(2)]
    calls = []
    module = importlib.import_module("zigprune.posttrain.prune")
    real = module._update
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(module, "_update", lambda *a: calls.append(int(a[5].sum())) or real(*a))
        ids = zp.prune(space, calibration, target=0.4, by="macs", steps=3, progress=False)
    assert len(calls) == 3 and all(n > 0 for n in calls) and sum(calls) == len(ids)
    slim = space.construct()
    assert zp.count(slim, x)["macs"] <= 0.6 * space.total_macs
    for batch in calibration:
        assert_close(outputs(model, batch), outputs(slim, batch))
    with pytest.raises(ValueError, match="steps must be a whole number"):
        zp.prune(space, calibration, target=0.5, steps=0)


def test_a_failure_during_the_update_restores_the_model(monkeypatch: pytest.MonkeyPatch) -> None:
    prune_module = importlib.import_module("zigprune.posttrain.prune")
    model, space = _space()
    before = _state(model)

    def broken(*args: object, **kwargs: object) -> None:
        model[8].weight.data.fill_(float("nan"))
        raise RuntimeError("boom")

    monkeypatch.setattr(prune_module, "recalibrate", broken)
    with pytest.raises(RuntimeError, match="boom"):
        zp.prune(space, [torch.randn(8, 1, 8, 8)], target=0.3, progress=False)
    assert _unchanged(model, before)
