"""Torch-style param groups for HSPG, DHSPG and HESSO, frozen parameters, and schedules set later."""

import copy
import io

import pytest
import torch
from torch import nn

import zigprune as zp
from zigprune import models
from zigprune.errors import OptimizerError, TargetError
from zigprune.optim import decay_groups

NO_DECAY = {"1.weight", "1.bias", "4.weight", "4.bias", "8.bias"}


def data(n: int = 32, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, 1, 8, 8, generator=g), torch.randint(0, 10, (n,), generator=g)


def digits_space(seed: int = 0) -> tuple[nn.Module, zp.GroupSpace]:
    torch.manual_seed(seed)
    model = models.create("digits_cnn", channels=(16, 32))
    return model, zp.analyze(model, torch.randn(2, 1, 8, 8))


def train(opt, model: nn.Module, steps: int, x: torch.Tensor, y: torch.Tensor, sched=None) -> None:
    for _ in range(steps):
        opt.zero_grad()
        nn.functional.cross_entropy(model(x), y).backward()
        opt.step()
        if sched is not None:
            sched.step()


def split_lr(model: nn.Module, decay_lr: float, other_lr: float) -> list[dict]:
    """Decay / no-decay groups (Linear and conv weights vs biases and norms) with their own lr."""
    groups = decay_groups(model, 1e-3)
    groups[0]["lr"], groups[1]["lr"] = decay_lr, other_lr
    return groups


def make(name: str, space: zp.GroupSpace, **kwargs) -> torch.optim.Optimizer:
    if name == "hesso":
        return zp.HESSO(space, momentum=0.9, periods=4, **{"target": 0.5, "total_steps": 30, **kwargs})
    if name == "dhspg":
        return zp.DHSPG(space, momentum=0.9, **{"target": 0.5, "total_steps": 30, **kwargs})
    return zp.HSPG(space, momentum=0.9, lmbda=0.25, epsilon=0.5, switch_step=10, **kwargs)


def test_decay_groups_split_biases_and_norms_from_weights() -> None:
    model = models.create("digits_cnn")
    decay, no_decay = decay_groups(model, 0.01)
    names = {id(p): n for n, p in model.named_parameters()}
    assert {names[id(p)] for p in no_decay["params"]} == NO_DECAY and no_decay["weight_decay"] == 0.0
    assert {names[id(p)] for p in decay["params"]} == {"0.weight", "3.weight", "8.weight"}
    assert decay["weight_decay"] == 0.01


@pytest.mark.parametrize("variant", ["sgd", "adamw"])
def test_weight_decay_zero_leaves_biases_and_norms_unchanged(variant: str) -> None:
    """With zero gradients only decay moves weights: decayed ones shrink, biases and norms stay bit-equal."""
    model, space = digits_space()
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    lr, wd, steps = 0.1, 0.2, 5
    opt = zp.HESSO(
        space,
        lr=lr,
        momentum=0.9,
        variant=variant,
        params=decay_groups(model, wd),
        target=0.5,
        total_steps=100,
    )
    x, _ = data()
    for _ in range(steps):
        opt.zero_grad()
        (0 * model(x).sum()).backward()
        opt.step()
    for name, p in model.named_parameters():
        if name in NO_DECAY:
            assert torch.equal(p, before[name]), name
        elif variant == "adamw":
            torch.testing.assert_close(p, before[name] * (1 - lr * wd) ** steps)
        else:
            assert bool((p.abs() < before[name].abs()).all() | (before[name] == 0).all()), name
            assert not torch.equal(p, before[name]), name


def test_two_lrs_and_a_scheduler_match_torch_sgd_before_pruning() -> None:
    model, space = digits_space()
    twin = copy.deepcopy(model)
    x, y = data()

    def groups(m: nn.Module) -> list[dict]:
        convs = [m[0].weight, m[3].weight]
        rest = [p for p in m.parameters() if all(p is not c for c in convs)]
        return [
            {"params": convs, "lr": 0.05},
            {"params": rest, "lr": 0.01, "momentum": 0.5, "weight_decay": 0},
        ]

    opt = zp.HESSO(
        space, lr=0.1, momentum=0.9, weight_decay=1e-3, params=groups(model), target=0.5, total_steps=100
    )
    ref = torch.optim.SGD(groups(twin), lr=0.1, momentum=0.9, weight_decay=1e-3)
    schedules = [torch.optim.lr_scheduler.LambdaLR(o, lambda s: 0.8**s) for o in (opt, ref)]
    train(opt, model, 6, x, y, schedules[0])
    train(ref, twin, 6, x, y, schedules[1])
    assert [g["lr"] for g in opt.param_groups] == [g["lr"] for g in ref.param_groups]
    assert opt.param_groups[1]["lr"] == pytest.approx(0.01 * 0.8**6)
    for a, b in zip(model.parameters(), twin.parameters(), strict=True):
        torch.testing.assert_close(a, b)


@pytest.mark.parametrize("name", ["hesso", "dhspg", "hspg"])
def test_param_groups_reach_exact_zeros_across_groups(name: str) -> None:
    """A group's conv rows (decayed, lr 0.05) and norm rows (no decay, lr 0.02) reach zero together."""
    model, space = digits_space()
    x, y = data()
    opt = make(name, space, lr=0.1, params=split_lr(model, 0.05, 0.02))
    train(opt, model, 30, x, y)
    zero = space.zero_groups()
    assert torch.equal(zero, opt.zig["pruned"])
    if name == "hspg":
        assert 0 < int(zero.sum()) < space.num_groups
    else:
        assert int(zero.sum()) == space.num_groups // 2
    zero_rows = 0
    for conv, norm in ((model[0], model[1]), (model[3], model[4])):
        rows = conv.weight.flatten(1).abs().sum(1) == 0
        assert torch.equal(rows, norm.weight == 0) and torch.equal(rows, norm.bias == 0)
        zero_rows += int(rows.sum())
    assert zero_rows == int(zero.sum())
    slim = space.construct()
    with torch.no_grad():
        torch.testing.assert_close(slim.eval()(x), model.eval()(x), rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("name", ["hesso", "dhspg", "hspg"])
def test_resume_with_param_groups_and_a_scheduler_is_bit_identical(name: str) -> None:
    x, y = data()

    def build(seed: int = 0):
        model, space = digits_space(seed)
        opt = make(name, space, lr=0.1, params=split_lr(model, 0.05, 0.02))
        return model, space, opt, torch.optim.lr_scheduler.StepLR(opt, step_size=10, gamma=0.5)

    model, space, straight, sched = build()
    train(straight, model, 30, x, y, sched)

    first, _, opt, first_sched = build()
    train(opt, first, 17, x, y, first_sched)
    buffer = io.BytesIO()
    torch.save(
        {"model": first.state_dict(), "opt": opt.state_dict(), "sched": first_sched.state_dict()}, buffer
    )
    buffer.seek(0)
    saved = torch.load(buffer, weights_only=True)

    second, second_space, resumed, second_sched = build(seed=1)
    second.load_state_dict(saved["model"])
    resumed.load_state_dict(saved["opt"])
    second_sched.load_state_dict(saved["sched"])
    train(resumed, second, 13, x, y, second_sched)
    for a, b in zip(model.parameters(), second.parameters(), strict=True):
        assert torch.equal(a, b)
    assert torch.equal(space.zero_groups(), second_space.zero_groups())


@pytest.mark.parametrize("name", ["hesso", "dhspg", "hspg"])
def test_frozen_parameters_keep_their_groups_whole(name: str) -> None:
    """Rows in a parameter the optimizer does not own are never changed: their groups stay, the rest prune."""
    model, space = digits_space()
    model[0].weight.requires_grad_(False)
    frozen = model[0].weight.detach().clone()
    x, y = data()
    with pytest.warns(UserWarning, match=r"16 of 48 groups are kept whole.*\(0\.weight\)"):
        opt = make(name, space, lr=0.1, **({} if name == "hspg" else {"target": 0.3}))
    train(opt, model, 30, x, y)
    assert torch.equal(model[0].weight, frozen)
    zero = space.zero_groups()
    first = model[1].weight == 0  # the first conv's groups, seen through its norm scale
    assert not first.any() and not zero[opt.frozen].any()
    assert int(zero.sum()) > 0
    if name != "hspg":
        assert int(zero.sum()) == round(0.3 * space.num_groups)
    space.construct()


def test_frozen_groups_bound_the_target_and_come_back_when_added() -> None:
    model, space = digits_space()
    with pytest.warns(UserWarning, match=r"kept whole.*\(1\.weight, 1\.bias\)"):
        params = [p for n, p in model.named_parameters() if not n.startswith("1.")]
        opt = zp.HESSO(space, lr=0.1, params=params, target=0.5, total_steps=10)
    assert int(opt.frozen.sum()) == 16
    opt.add_param_group({"params": list(model[1].parameters()), "weight_decay": 0.0})
    assert not opt.frozen.any() and opt.param_groups[1]["weight_decay"] == 0.0
    with (
        pytest.warns(UserWarning, match="kept whole"),
        pytest.raises(TargetError, match="16 groups kept whole"),
    ):
        zp.HESSO(space, lr=0.1, params=params, target=0.7, total_steps=10)


def test_bad_params_are_refused_with_what_to_do() -> None:
    model, space = digits_space()
    stranger = nn.Parameter(torch.zeros(3, 4))
    with pytest.raises(OptimizerError, match=r"shape \(3, 4\) that is not a parameter of space\.model"):
        zp.HESSO(space, lr=0.1, params=[*model.parameters(), stranger], target=0.5, total_steps=10)
    with pytest.raises(OptimizerError, match="lr must be non-negative"):
        zp.HESSO(space, lr=0.1, params=[{"params": model.parameters(), "lr": -1}], target=0.5, total_steps=10)
    with pytest.raises(OptimizerError, match="leave variant out of param groups"):
        zp.HSPG(space, lr=0.1, params=[{"params": model.parameters(), "variant": "adam"}], switch_step=1)
    opt = zp.HSPG(space, lr=0.1, params=list(model.parameters())[:-1], switch_step=1)
    with pytest.raises(OptimizerError, match=r"not a parameter of space\.model"):
        opt.add_param_group({"params": [stranger]})
    assert len(opt.param_groups) == 1


def test_set_total_steps_derives_the_same_schedule_as_the_constructor() -> None:
    x, y = data()
    model, space = digits_space()
    given = zp.HESSO(space, lr=0.05, momentum=0.9, target=0.5, total_steps=30)
    later_model, later_space = digits_space()
    later = zp.HESSO(later_space, lr=0.05, momentum=0.9, target=0.5, total_steps=None)
    with pytest.raises(OptimizerError, match="total_steps is not set"):
        later.step()
    assert later.report()["pruning_done"] == 0.0
    later.set_total_steps(30)
    schedule = ("total_steps", "start_step", "periods", "period_steps", "schedule_end")
    assert [getattr(later, k) for k in schedule] == [getattr(given, k) for k in schedule]
    train(given, model, 30, x, y)
    train(later, later_model, 30, x, y)
    for a, b in zip(model.parameters(), later_model.parameters(), strict=True):
        assert torch.equal(a, b)
    later.set_total_steps(30)  # the same total again: nothing to do
    with pytest.raises(OptimizerError, match="after 30 steps"):
        later.set_total_steps(40)


def test_set_total_steps_keeps_explicit_options_and_moves_defaults() -> None:
    _, space = digits_space()
    hesso = zp.HESSO(space, lr=0.1, target=0.5, total_steps=10, start_step=3, periods=2)
    hesso.set_total_steps(200)
    assert (hesso.start_step, hesso.periods, hesso.period_steps) == (3, 2, 20)
    dhspg = zp.DHSPG(space, lr=0.1, target=0.5, total_steps=10)
    dhspg.set_total_steps(200)
    fresh = zp.DHSPG(space, lr=0.1, target=0.5, total_steps=200)
    assert (dhspg.start_step, dhspg.finish_step, dhspg.finish_steps) == (20, 160, 20)
    assert (fresh.start_step, fresh.finish_step, fresh.finish_steps) == (20, 160, 20)
    hspg = zp.HSPG(space, lr=0.1, total_steps=10)
    hspg.set_total_steps(200)
    assert hspg.switch_step == 50
    with pytest.raises(ValueError, match="at least 1"):
        hspg.set_total_steps(0)


def test_an_unset_total_is_taken_from_the_saved_state() -> None:
    x, y = data()
    model, space = digits_space()
    opt = zp.HESSO(space, lr=0.05, target=0.5, total_steps=30)
    train(opt, model, 5, x, y)
    resumed = zp.HESSO(space, lr=0.05, target=0.5, total_steps=None)
    resumed.load_state_dict(opt.state_dict())
    assert resumed.total_steps == 30 and resumed.schedule_end == opt.schedule_end
    resumed.set_total_steps(30)
    with pytest.raises(OptimizerError, match="set the total before the first step"):
        resumed.set_total_steps(40)
    unset = zp.HESSO(space, lr=0.05, target=0.5, total_steps=None)
    assert "total_steps was never set" in unset.shortfall()
