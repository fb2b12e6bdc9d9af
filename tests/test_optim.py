"""HSPG, DHSPG and HESSO: exact zeros, targets reached, plain updates elsewhere, resumable, robust."""

import copy
import io
import warnings

import pytest
import torch
from torch import nn

import zigprune as zp
from zigprune import models
from zigprune.core.selection import Target, select


def data(n: int = 64, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, 1, 8, 8, generator=g), torch.randint(0, 10, (n,), generator=g)


def train(opt: torch.optim.Optimizer, model: nn.Module, steps: int, x: torch.Tensor, y: torch.Tensor) -> None:
    for _ in range(steps):
        opt.zero_grad()
        nn.functional.cross_entropy(model(x), y).backward()
        opt.step()


def digits_space(seed: int = 0) -> tuple[nn.Module, zp.GroupSpace]:
    torch.manual_seed(seed)
    model = models.create("digits_cnn")
    return model, zp.analyze(model, torch.randn(2, 1, 8, 8))


def test_hesso_hits_a_group_target_exactly_and_constructs() -> None:
    model, space = digits_space()
    x, y = data()
    opt = zp.HESSO(space, lr=0.05, momentum=0.9, target=0.5, total_steps=60)
    train(opt, model, 60, x, y)
    zero = space.zero_groups()
    assert int(zero.sum()) == space.num_groups // 2
    assert torch.equal(zero, opt.zig["pruned"])
    slim = space.construct()
    with torch.no_grad():
        torch.testing.assert_close(slim.eval()(x), model.eval()(x), rtol=1e-4, atol=1e-5)
    assert zp.count(slim, x)["macs"] < zp.count(model, x)["macs"]


@pytest.mark.parametrize("by", ["macs", "params"])
def test_hesso_meets_cost_targets_within_two_percent(by: str) -> None:
    torch.manual_seed(0)
    model = models.create("resnet20", in_channels=1, width=2)
    x = torch.randn(8, 1, 8, 8)
    y = torch.randint(0, 10, (8,))
    space = zp.analyze(model, x[:2])
    opt = zp.HESSO(space, lr=0.05, momentum=0.9, target=0.6, by=by, total_steps=24, periods=4)
    train(opt, model, 24, x, y)
    zero = space.zero_groups()
    left = space.macs(zero) / space.total_macs if by == "macs" else space.params(zero) / space.params(None)
    assert 0.38 <= left <= 0.40 + 1e-9, left


@pytest.mark.parametrize("optimizer", [zp.HESSO, zp.DHSPG])
def test_round_to_keeps_every_cut_family_a_multiple_of_n(optimizer: type) -> None:
    torch.manual_seed(0)
    model = models.create("resnet20", in_channels=1)
    x = torch.randn(8, 1, 8, 8)
    y = torch.randint(0, 10, (8,))
    space = zp.analyze(model, x[:2])
    opt = optimizer(space, lr=0.05, momentum=0.9, target=0.5, by="macs", round_to=4, total_steps=30)
    train(opt, model, 30, x, y)
    zero = space.zero_groups()
    cut = [f for f in space.families if any(zero[g] for g in f.groups)]
    assert cut
    for family in cut:
        assert (family.width - sum(int(zero[g]) for g in family.groups)) % 4 == 0, family.name
    assert abs(space.macs(zero) / space.total_macs - 0.5) <= 0.02
    slim = space.construct()
    assert zp.count(slim, x)["macs"] <= 0.52 * zp.count(model, x)["macs"]


def test_cost_power_trades_importance_against_cost() -> None:
    """With equal importance, p = 1 takes the costliest groups first (fewer groups); p = 0 ignores cost."""
    space = zp.analyze(models.create("resnet20", in_channels=1), torch.randn(2, 1, 28, 28))
    scores = torch.ones(space.num_groups, dtype=torch.float64)
    none = torch.zeros(space.num_groups, dtype=torch.bool)
    chosen = {p: select(space, scores, none, Target(0.4, "macs", cost_power=p), 1.0) for p in (0.0, 1.0)}
    for mask in chosen.values():
        assert space.macs(mask) <= 0.6 * space.total_macs
    assert int(chosen[1.0].sum()) < int(chosen[0.0].sum())
    assert space.group_macs[chosen[1.0]].mean() > space.group_macs[chosen[0.0]].mean()
    with pytest.raises(ValueError, match="cost_power must lie in"):
        Target(0.4, "macs", cost_power=2.0)


def test_a_cost_function_replaces_macs_in_the_ranking() -> None:
    """``Target.cost`` prices groups: with equal importance the priced-high family goes first."""
    space = zp.analyze(models.create("resnet20", in_channels=1), torch.randn(2, 1, 28, 28))
    last = space.families[-2]
    seen: list[torch.Tensor] = []

    def cost(taken: torch.Tensor) -> torch.Tensor:
        seen.append(taken.clone())
        weight = torch.ones(space.num_groups, dtype=torch.float64)
        weight[last.groups] = 100.0
        return weight

    scores = torch.ones(space.num_groups, dtype=torch.float64)
    none = torch.zeros(space.num_groups, dtype=torch.bool)
    chosen = select(space, scores, none, Target(0.1, "macs", cost_power=1.0, cost=cost), 1.0)
    assert len(seen) == 1 and not seen[0].any()
    assert space.macs(chosen) <= 0.9 * space.total_macs
    assert chosen.any() and set(chosen.nonzero().reshape(-1).tolist()) <= set(last.groups)


def test_dhspg_target_within_one_group_percent() -> None:
    model, space = digits_space()
    x, y = data()
    opt = zp.DHSPG(space, lr=0.05, momentum=0.9, target=0.4, total_steps=80)
    train(opt, model, 80, x, y)
    sparsity = float(space.zero_groups().float().mean())
    assert abs(sparsity - 0.4) <= 0.01 + 1 / space.num_groups
    space.construct()


def test_dhspg_zeroes_a_candidate_only_when_it_leaves_the_half_space() -> None:
    model, space = digits_space()
    x, y = data()
    still = zp.DHSPG(space, lr=0.0, target=0.4, total_steps=100, start_step=5)
    train(still, model, 10, x, y)
    assert bool(still.zig["redundant"].any())
    assert not bool(still.zig["pruned"].any())
    assert not bool(space.zero_groups().any())
    model, space = digits_space()
    moving = zp.DHSPG(space, lr=0.05, momentum=0.9, target=0.4, total_steps=100, start_step=5)
    train(moving, model, 10, x, y)
    assert int(moving.zig["pruned"].sum()) < int(moving.zig["redundant"].sum())


def test_dhspg_default_lambda_fits_the_budget() -> None:
    """λ₀ from the budget zeroes candidates through the half-space before the forced decay; 1e-3 does not."""
    x, y = data()
    pruned_before_finish = {}
    for lmbda in (None, 1e-3):
        model, space = digits_space()
        opt = zp.DHSPG(space, lr=0.05, momentum=0.9, target=0.4, total_steps=100, lmbda=lmbda)
        train(opt, model, opt.finish_step - 1, x, y)
        pruned_before_finish[lmbda] = int(opt.zig["pruned"].sum())
        assert opt.zig["lmbda"] > 0
    assert pruned_before_finish[None] > pruned_before_finish[1e-3]
    assert pruned_before_finish[None] >= int(opt.zig["redundant"].sum()) // 2


def test_hspg_zeros_stay_zero_and_construct() -> None:
    model, space = digits_space()
    x, y = data()
    opt = zp.HSPG(space, lr=0.05, momentum=0.9, lmbda=0.1, epsilon=0.5, switch_step=20)
    train(opt, model, 40, x, y)
    zero = space.zero_groups()
    assert 0 < int(zero.sum()) < space.num_groups
    train(opt, model, 10, x, y)
    assert bool(space.zero_groups()[zero].all())
    space.construct()


def grouped_logistic(seed: int = 0) -> tuple[nn.Module, zp.GroupSpace, object]:
    """Convex problem: logistic regression whose feature groups are the hidden units' rows; 3 of 10 matter."""
    torch.manual_seed(seed)
    groups, features, n = 10, 4, 600
    model = nn.Sequential(nn.Linear(features, groups), nn.ReLU(), nn.Linear(groups, 1))
    space = zp.analyze(model, torch.randn(2, features))
    x = torch.randn(n, groups, features + 1)
    truth = torch.zeros(groups, features + 1)
    truth[:3] = torch.randn(3, features + 1) * 2
    y = ((x * truth).sum((1, 2)) + 0.3 * torch.randn(n) > 0).float()
    layer = model[0]

    def loss() -> torch.Tensor:
        w = torch.cat([layer.weight, layer.bias[:, None]], 1)
        return nn.functional.binary_cross_entropy_with_logits((x * w).sum((1, 2)), y)

    return model, space, loss


def group_lasso(model: nn.Module, loss, lmbda: float) -> tuple[float, torch.Tensor]:
    w = torch.cat([model[0].weight, model[0].bias[:, None]], 1).detach()
    norms = w.norm(dim=1)
    with torch.no_grad():
        return float(loss() + lmbda * norms.sum()), norms


def test_hspg_solves_a_convex_group_lasso_like_proximal_sgd() -> None:
    lmbda, lr, steps = 0.05, 0.5, 400
    model, space, loss = grouped_logistic()
    opt = zp.HSPG(space, lr=lr, lmbda=lmbda, switch_step=100)
    for _ in range(steps):
        opt.zero_grad()
        loss().backward()
        opt.step()
    ours, our_norms = group_lasso(model, loss, lmbda)

    twin, _, twin_loss = grouped_logistic()
    layer = twin[0]
    for _ in range(steps):
        layer.zero_grad()
        twin_loss().backward()
        with torch.no_grad():
            w = torch.cat(
                [layer.weight - lr * layer.weight.grad, (layer.bias - lr * layer.bias.grad)[:, None]], 1
            )
            shrink = (1 - lr * lmbda / w.norm(dim=1).clamp(min=1e-12)).clamp(min=0)
            layer.weight.copy_(w[:, :-1] * shrink[:, None])
            layer.bias.copy_(w[:, -1] * shrink)
    proximal, prox_norms = group_lasso(twin, twin_loss, lmbda)

    assert ours <= proximal * 1.01
    assert int((our_norms == 0).sum()) >= int((prox_norms == 0).sum())
    assert torch.equal(our_norms > 0, torch.arange(10) < 3)


def test_groups_get_plain_sgd_before_pruning_starts() -> None:
    model, space = digits_space()
    twin = copy.deepcopy(model)
    x, y = data()
    opt = zp.HESSO(
        space, lr=0.05, momentum=0.9, weight_decay=1e-3, nesterov=True, target=0.5, total_steps=100
    )
    ref = torch.optim.SGD(twin.parameters(), lr=0.05, momentum=0.9, weight_decay=1e-3, nesterov=True)
    train(opt, model, 5, x, y)
    train(ref, twin, 5, x, y)
    for a, b in zip(model.parameters(), twin.parameters(), strict=True):
        torch.testing.assert_close(a, b)


def test_adamw_matches_torch_before_pruning() -> None:
    model, space = digits_space()
    twin = copy.deepcopy(model)
    x, y = data()
    opt = zp.HESSO(space, lr=1e-3, weight_decay=1e-2, variant="adamw", target=0.5, total_steps=100)
    ref = torch.optim.AdamW(twin.parameters(), lr=1e-3, weight_decay=1e-2)
    train(opt, model, 5, x, y)
    train(ref, twin, 5, x, y)
    for a, b in zip(model.parameters(), twin.parameters(), strict=True):
        torch.testing.assert_close(a, b)


@pytest.mark.parametrize("name", ["hesso", "dhspg", "hspg"])
def test_resume_gives_identical_parameters(name: str) -> None:
    x, y = data()

    def make(model: nn.Module, space: zp.GroupSpace) -> torch.optim.Optimizer:
        if name == "hesso":
            return zp.HESSO(space, lr=0.05, momentum=0.9, target=0.5, total_steps=40, periods=4)
        if name == "dhspg":
            return zp.DHSPG(space, lr=0.05, momentum=0.9, target=0.5, total_steps=40)
        return zp.HSPG(space, lr=0.05, momentum=0.9, lmbda=0.02, switch_step=10)

    model, space = digits_space()
    straight = make(model, space)
    train(straight, model, 40, x, y)

    first, first_space = digits_space()
    opt = make(first, first_space)
    train(opt, first, 17, x, y)
    buffer = io.BytesIO()
    torch.save({"model": first.state_dict(), "opt": opt.state_dict()}, buffer)
    buffer.seek(0)
    saved = torch.load(buffer, weights_only=True)

    second, second_space = digits_space(seed=1)
    second.load_state_dict(saved["model"])
    resumed = make(second, second_space)
    resumed.load_state_dict(saved["opt"])
    train(resumed, second, 23, x, y)
    for a, b in zip(model.parameters(), second.parameters(), strict=True):
        assert torch.equal(a, b)
    assert torch.equal(space.zero_groups(), second_space.zero_groups())


def test_nonfinite_gradients_skip_the_step() -> None:
    model, space = digits_space()
    x, y = data()
    opt = zp.HESSO(space, lr=0.05, momentum=0.9, target=0.5, total_steps=20, start_step=1, periods=2)
    train(opt, model, 6, x, y)
    before = [p.detach().clone() for p in model.parameters()]
    zero = space.zero_groups()
    opt.zero_grad()
    nn.functional.cross_entropy(model(x), y).backward()
    next(model.parameters()).grad[0] = float("nan")
    with pytest.warns(UserWarning, match="skipped step 7"):
        opt.step()
    assert all(torch.equal(a, b) for a, b in zip(before, model.parameters(), strict=True))
    assert torch.equal(space.zero_groups(), zero) and opt.step_count == 6
    strict = zp.HESSO(space, lr=0.05, target=0.5, total_steps=20, nonfinite="raise")
    with pytest.raises(FloatingPointError, match="non-finite"):
        strict.step()


def test_schedulers_closures_and_grad_scaler() -> None:
    model, space = digits_space()
    x, y = data()
    opt = zp.HESSO(space, lr=0.1, momentum=0.9, target=0.5, total_steps=30)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=0.1, total_steps=30)
    momenta = []
    for _ in range(10):

        def closure() -> torch.Tensor:
            opt.zero_grad()
            loss = nn.functional.cross_entropy(model(x), y)
            loss.backward()
            return loss

        assert torch.isfinite(opt.step(closure))
        sched.step()
        momenta.append(opt.param_groups[0]["momentum"])
    assert len(set(momenta)) > 1
    adam = zp.HESSO(space, lr=1e-3, variant="adam", target=0.5, total_steps=30)
    torch.optim.lr_scheduler.OneCycleLR(adam, max_lr=1e-3, total_steps=30)
    assert adam.param_groups[0]["betas"][0] != 0.9 or "betas" in adam.defaults
    scaler = torch.amp.GradScaler("cpu")
    opt.zero_grad()
    scaler.scale(nn.functional.cross_entropy(model(x), y)).backward()
    scaler.step(opt)
    scaler.update()


def test_bad_arguments_are_refused() -> None:
    _, space = digits_space()
    with pytest.raises(ValueError, match="strictly between 0 and 1"):
        zp.HESSO(space, lr=0.1, target=1.5, total_steps=10)
    with pytest.raises(ValueError, match="target kind"):
        zp.HESSO(space, lr=0.1, target=0.5, by="flops", total_steps=10)
    with pytest.raises(ValueError, match="variant"):
        zp.DHSPG(space, lr=0.1, target=0.5, total_steps=10, variant="lion")
    with pytest.raises(ValueError, match="switch_step or total_steps"):
        zp.HSPG(space, lr=0.1)


def test_report_tracks_progress() -> None:
    model, space = digits_space()
    x, y = data()
    opt = zp.HESSO(space, lr=0.05, target=0.5, total_steps=20, start_step=2, pruning_steps=10, periods=2)
    assert opt.report()["group_sparsity"] == 0
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        train(opt, model, 20, x, y)
    report = opt.report()
    assert report["group_sparsity"] == 0.5 and report["pinned"] == space.num_groups // 2
    assert 0 < report["macs_left"] < 1


def free_port() -> str:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return str(s.getsockname()[1])


def test_ddp_ranks_end_identical(tmp_path) -> None:
    import subprocess
    import sys
    from pathlib import Path

    port = free_port()
    worker = Path(__file__).with_name("ddp_worker.py")
    outs = [tmp_path / f"rank{r}.pt" for r in range(2)]
    procs = [
        subprocess.Popen([sys.executable, str(worker), str(r), "2", port, str(outs[r])]) for r in range(2)
    ]
    assert [p.wait(timeout=300) for p in procs] == [0, 0]
    a, b = (torch.load(o, weights_only=True) for o in outs)
    assert all(torch.equal(x, y) for x, y in zip(a["params"], b["params"], strict=True))
    assert torch.equal(a["zero"], b["zero"]) and int(a["zero"].sum()) == a["zero"].numel() // 2


def test_fsdp2_ranks_match_a_single_process_run(tmp_path) -> None:
    """fully_shard on 2 gloo ranks, for HESSO, DHSPG and HSPG in turn: group norms are reduced across the
    shards, so both ranks end with the single-process run's zero pattern and, within float tolerance,
    its weights."""
    import subprocess
    import sys
    from pathlib import Path

    worker = str(Path(__file__).with_name("fsdp_worker.py"))
    names = "HESSO,DHSPG,HSPG"
    outs = [str(tmp_path / f"rank{r}-{{name}}.pt") for r in range(2)]
    port = free_port()
    procs = [subprocess.Popen([sys.executable, worker, str(r), "2", port, names, outs[r]]) for r in range(2)]
    single = str(tmp_path / "single-{name}.pt")
    import fsdp_worker  # the reference runs here while the ranks run: one process fewer to start

    for name in names.split(","):
        fsdp_worker.reference(name, single.format(name=name))
    assert [p.wait(timeout=300) for p in procs] == [0, 0]
    for name in names.split(","):
        a, b, ref = (torch.load(o.format(name=name), weights_only=True) for o in (*outs, single))
        assert torch.equal(a["zero"], b["zero"]) and torch.equal(a["zero"], ref["zero"]), name
        assert 0 < int(ref["zero"].sum()) < ref["zero"].numel(), name
        for x, y, r in zip(a["params"], b["params"], ref["params"], strict=True):
            assert torch.equal(x, y)
            torch.testing.assert_close(x, r, rtol=1e-5, atol=1e-6)
