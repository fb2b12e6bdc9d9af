"""Each method's defining behaviour on a tiny model: criteria, allocators, schedules, recovery, recipes."""

from __future__ import annotations

import copy
import itertools
from types import SimpleNamespace

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import TensorDataset

import zigprune as zp
from zigprune import models
from zigprune.errors import ZigpruneError
from zigprune.methods import allocators, criteria, recipes, schedules
from zigprune.methods.hooks import BNPenalty, GroupMask, SoftZero, WeightMask
from zigprune.methods.recovery import Found, reinitialise, weight_rewind
from zigprune.methods.run import Setup, Trainer, split
from zigprune.optim import Target
from zigprune.training import Hook, train

SHAPE = (1, 8, 8)


def tiny() -> nn.Module:
    torch.manual_seed(0)
    return models.create("digits_cnn", num_classes=10, channels=(16, 32))


def tiny_data(n: int = 96) -> SimpleNamespace:
    g = torch.Generator().manual_seed(1)
    x, y = torch.randn(n, *SHAPE, generator=g), torch.randint(0, 10, (n,), generator=g)
    return SimpleNamespace(train=TensorDataset(x, y), test=TensorDataset(x[:32], y[:32]), augment=None)


def setup(epochs: int = 2, fraction: float = 0.6, **options) -> Setup:
    return Setup(
        build=tiny,
        data=tiny_data(),
        example=torch.zeros(2, *SHAPE),
        target=Target(fraction, "macs"),
        epochs=epochs,
        batch_size=32,
        options=options,
    )


def space_of(model: nn.Module) -> zp.GroupSpace:
    return zp.analyze(model, torch.zeros(2, *SHAPE))


def backward(model: nn.Module, seed: int) -> None:
    g = torch.Generator().manual_seed(seed)
    x, y = torch.randn(16, *SHAPE, generator=g), torch.randint(0, 10, (16,), generator=g)
    model.zero_grad()
    F.cross_entropy(model(x), y).backward()


def spy_phases(monkeypatch: pytest.MonkeyPatch) -> list[dict]:
    """Record every training phase: its name, hooks and the model's weights when it starts."""
    phases: list[dict] = []
    original = Trainer.fit

    def fit(self, model, epochs, phase, hooks=(), **kwargs):
        start = {k: v.detach().clone() for k, v in model.state_dict().items()}
        phases.append({"phase": phase, "hooks": list(hooks), "start": start, "model": model})
        return original(self, model, epochs, phase, hooks, **kwargs)

    monkeypatch.setattr(Trainer, "fit", fit)
    return phases


# -- criteria --------------------------------------------------------------------------------------------


def test_l1_scores_are_the_whole_group_norm_and_one_shot_removes_the_smallest() -> None:
    model = tiny()
    space = space_of(model)
    conv, bn = model[0], model[1]
    family = next(f for f in space.families if f.name == "0 (Conv2d)")
    manual = conv.weight.abs().sum((1, 2, 3)) + bn.weight.abs() + bn.bias.abs()
    scores = criteria.make("l1", space).scores()
    assert torch.allclose(scores[family.groups], manual.double(), atol=1e-6)
    pruned = allocators.global_ranking(space, scores, Target(0.25, "groups"))
    expected = torch.argsort(scores)[: round(0.25 * space.num_groups)]
    assert sorted(torch.nonzero(pruned).reshape(-1).tolist()) == sorted(expected.tolist())
    assert scores[pruned].max() <= scores[~pruned].min()


def test_bn_scale_criterion_is_mean_abs_gamma() -> None:
    model = tiny()
    with torch.no_grad():
        model[1].weight.copy_(torch.linspace(-1, 1, 16))
    space = space_of(model)
    family = next(f for f in space.families if f.name == "0 (Conv2d)")
    scores = criteria.make("bn", space).scores()
    assert torch.allclose(scores[family.groups], torch.linspace(-1, 1, 16).abs().double())


def test_taylor_accumulates_over_several_batches() -> None:
    model = tiny()
    space = space_of(model)
    taylor = criteria.make("taylor", space, momentum=0.5)
    with pytest.raises(ZigpruneError, match="call update"):
        taylor.scores()
    family = next(f for f in space.families if f.name == "0 (Conv2d)")
    conv, bn = model[0], model[1]
    per_batch = []
    for seed in range(3):
        backward(model, seed)
        taylor.update()
        dot = (
            (conv.weight * conv.weight.grad).sum((1, 2, 3))
            + bn.weight * bn.weight.grad
            + bn.bias * bn.bias.grad
        )
        per_batch.append(dot.detach().double().square())
    expected = (per_batch[0] * 0.5 + per_batch[1] * 0.5) * 0.5 + per_batch[2] * 0.5
    got = taylor.scores()[family.groups]
    assert taylor.batches == 3
    assert torch.allclose(got, expected, rtol=1e-4)
    assert not torch.allclose(got, per_batch[2], rtol=1e-2)


def test_random_criterion_is_seeded_and_unknown_names_fail() -> None:
    space = space_of(tiny())
    a, b = criteria.make("random", space, seed=3).scores(), criteria.make("random", space, seed=3).scores()
    assert torch.equal(a, b) and a.shape == (space.num_groups,)
    with pytest.raises(ZigpruneError, match="unknown criterion 'nope'; valid names: l1"):
        criteria.make("nope", space)
    with pytest.raises(ZigpruneError, match="unknown allocator"):
        allocators.allocate("nope", space, a, Target(0.5))
    with pytest.raises(ZigpruneError, match=f"got 3 scores for {space.num_groups} groups"):
        allocators.global_ranking(space, torch.zeros(3), Target(0.5))


# -- allocators ------------------------------------------------------------------------------------------


def test_cost_aware_allocator_meets_the_macs_budget_within_two_percent() -> None:
    torch.manual_seed(0)
    model = models.create("resnet20", in_channels=1)
    x = torch.zeros(2, 1, 12, 12)
    space = zp.analyze(model, x, check=False)
    scores = criteria.make("l1", space).scores()
    for fraction in (0.75, 0.5, 0.6):
        pruned = allocators.cost_aware(space, scores, Target(fraction, "macs"))
        left = space.macs(pruned) / space.total_macs
        assert 0.98 * (1 - fraction) <= left <= 1 - fraction
    dense = zp.count(model, x[:1])["macs"]
    space.zero_(torch.nonzero(pruned).reshape(-1))
    left = zp.count(space.construct(), x[:1])["macs"] / dense
    assert 0.98 * 0.4 <= left <= 0.4


def test_uniform_allocator_takes_the_same_share_of_every_family() -> None:
    model = tiny()
    space = space_of(model)
    scores = criteria.make("l2", space).scores()
    pruned = allocators.uniform(space, scores, Target(0.5, "groups"))
    shares = {len([g for g in f.groups if pruned[g]]) / len(f.groups) for f in space.families if f.groups}
    assert shares == {0.5}
    for f in space.families:
        if f.groups:
            kept = [g for g in f.groups if not pruned[g]]
            gone = [g for g in f.groups if pruned[g]]
            assert scores[gone].max() <= scores[kept].min()


# -- schedules -------------------------------------------------------------------------------------------


@pytest.mark.parametrize("curve", list(schedules.CURVES))
def test_schedules_end_at_the_target_and_never_shrink(curve: str) -> None:
    fractions = schedules.Schedule(curve, events=8).fractions(0.6)
    assert fractions[-1] == pytest.approx(0.6)
    assert all(a <= b + 1e-12 for a, b in itertools.pairwise(fractions))


def test_schedule_values() -> None:
    assert schedules.agp(0.5, 0.8) == pytest.approx(0.8 * (1 - 0.125))
    assert schedules.geometric(0.5, 0.75) == pytest.approx(0.5)
    assert schedules.one_cycle(0.0, 1.0) < 0.01 < 0.99 < schedules.one_cycle(0.8, 1.0)
    assert schedules.Schedule("linear", events=3).steps(10, 30) == [10, 20, 30]
    with pytest.raises(ZigpruneError, match="unknown schedule curve 'cubic'"):
        schedules.Schedule("cubic")
    assert split(1, 0.5) == (0, 1) and split(4, 0.5) == (2, 2)


# -- hooks and recipes -----------------------------------------------------------------------------------


def test_sfp_zeroed_filters_keep_receiving_updates() -> None:
    model = tiny()
    space = space_of(model)
    soft = SoftZero(space, criteria.make("l2", space), "uniform", Target(0.5, "macs"))
    seen: dict[str, torch.Tensor] = {}

    class Probe(Hook):
        def on_epoch_end(self, loop, epoch):
            if epoch == 0:
                seen["zeroed"] = soft.pruned.clone()
                seen["norms_at_end"] = space.group_norms()

        def after_step(self, loop):
            if "zeroed" in seen and "norms_next" not in seen:
                seen["norms_next"] = space.group_norms()

    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    train(model, opt, tiny_data().train, epochs=2, batch_size=32, hooks=[soft, Probe()], progress=False)
    zeroed = seen["zeroed"]
    assert zeroed.any() and soft.rounds == 2
    assert torch.all(seen["norms_at_end"][zeroed] == 0)
    assert torch.all(seen["norms_next"][zeroed] > 0)


def test_slimming_penalty_acts_only_on_bn_scales() -> None:
    model = tiny()
    backward(model, 0)
    before = {n: p.grad.clone() for n, p in model.named_parameters()}
    BNPenalty(model, 0.01).after_backward(None, torch.tensor(0.0))
    for name, p in model.named_parameters():
        if name in ("1.weight", "4.weight"):
            assert torch.allclose(p.grad, before[name] + 0.01 * torch.sign(p.detach()))
        else:
            assert torch.equal(p.grad, before[name]), name


def test_magnitude_masks_stay_zero_through_training(monkeypatch: pytest.MonkeyPatch) -> None:
    model = tiny()
    masks = {"3.weight": torch.rand(model[3].weight.shape, generator=torch.Generator().manual_seed(0)) > 0.5}
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=5e-4)
    train(
        model,
        opt,
        tiny_data().train,
        epochs=2,
        batch_size=32,
        hooks=[WeightMask(model, masks)],
        progress=False,
    )
    assert torch.all(model[3].weight[~masks["3.weight"]] == 0)
    assert torch.all(opt.state[model[3].weight]["momentum_buffer"][~masks["3.weight"]] == 0)
    assert torch.all(model[3].weight[masks["3.weight"]] != 0)

    outcome = recipes.get("magnitude")(setup(epochs=2))
    dense = sum(
        w.numel() for w in (outcome.model[0].weight, outcome.model[3].weight, outcome.model[8].weight)
    )
    zeros = sum(int((w == 0).sum()) for w in (outcome.model[0].weight, outcome.model[3].weight))
    assert outcome.epochs == 2 and zeros > 0.3 * dense
    assert outcome.theoretical["macs"] <= 0.4 * 304448 * 1.001


def test_lth_rewinds_to_the_saved_early_weights(monkeypatch: pytest.MonkeyPatch) -> None:
    phases = spy_phases(monkeypatch)
    s = setup(epochs=3, rounds=2, rewind_share=0.34)
    outcome = recipes.get("lth")(s)
    assert [p["phase"] for p in phases] == ["train", "round 1", "round 2"]
    snapshot = phases[0]["hooks"][0].state
    initial = tiny().state_dict()
    assert not torch.equal(snapshot["3.weight"], initial["3.weight"])
    for later in phases[1:]:
        for name in ("0.weight", "3.weight", "8.weight"):
            start, early = later["start"][name], snapshot[name]
            kept = start != 0
            assert torch.equal(start[kept], early[kept])
            assert (~kept).any()
        assert torch.equal(later["start"]["1.weight"], snapshot["1.weight"])
    assert outcome.epochs == 3 and outcome.theoretical["macs"] <= 0.4 * 304448 * 1.001

    model = tiny()
    with pytest.raises(ZigpruneError, match="needs an early snapshot"):
        weight_rewind(Found(model, 0.1, 1))


def test_scratch_reinitialises_the_found_architecture(monkeypatch: pytest.MonkeyPatch) -> None:
    s = setup(epochs=1, source="hesso")
    with pytest.raises(ZigpruneError, match="run it with 'hesso'"):
        recipes.get("scratch")(s)
    phases = spy_phases(monkeypatch)
    s.architecture = lambda source: [0, 1, 2, 16, 17, 18, 19] if source == "hesso" else []
    outcome = recipes.get("scratch")(s)
    start = phases[0]["start"]
    assert phases[0]["phase"] == "scratch-e"
    assert start["0.weight"].shape[0] == 13 and start["3.weight"].shape[:2] == (28, 13)
    assert torch.equal(start["1.weight"], torch.ones(13)) and torch.equal(
        start["1.running_mean"], torch.zeros(13)
    )
    sliced = tiny().state_dict()["0.weight"][3:]
    assert not torch.allclose(start["0.weight"], sliced)
    assert outcome.pruned == [0, 1, 2, 16, 17, 18, 19] and outcome.epochs == 1

    trained = copy.deepcopy(phases[0]["model"])
    a, b = reinitialise(copy.deepcopy(trained), 5), reinitialise(copy.deepcopy(trained), 5)
    assert torch.equal(a[0].weight, b[0].weight) and not torch.equal(a[0].weight, trained[0].weight)


def test_taylor_recipe_prunes_with_pinned_masks_and_constructs(monkeypatch: pytest.MonkeyPatch) -> None:
    phases = spy_phases(monkeypatch)
    outcome = recipes.get("taylor")(setup(epochs=2, events=2))
    mask = next(h for h in phases[1]["hooks"] if isinstance(h, GroupMask))
    assert mask.pruned.sum() == len(outcome.pruned) > 0
    macs = zp.count(outcome.model, torch.zeros(1, *SHAPE))["macs"]
    assert macs <= 0.4 * 304448 * 1.001 and outcome.epochs == 2


@pytest.mark.parametrize("name", ["l1-filter", "slimming", "sfp", "one-cycle", "random", "hesso"])
def test_structured_recipes_meet_the_target_within_budget(name: str) -> None:
    outcome = recipes.get(name)(setup(epochs=2))
    macs = zp.count(outcome.model, torch.zeros(1, *SHAPE))["macs"]
    assert outcome.epochs == 2
    assert 0.33 * 304448 <= macs <= 0.4 * 304448 * 1.02, macs


def test_search_hesso_trains_to_the_widths_it_searched_after_pretraining(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from zigprune.methods import searched

    phases, policies = spy_phases(monkeypatch), []
    found = searched.search
    monkeypatch.setattr(searched, "search", lambda *a, **k: policies.append(found(*a, **k)) or policies[-1])
    outcome = recipes.get("search-hesso")(setup(epochs=2, calibration=32))
    assert [p["phase"] for p in phases] == ["pretrain", "train once"] and outcome.epochs == 2
    assert policies[0].strategy == "dp" and policies[0].budget == "macs=0.4"
    space = zp.analyze(copy.deepcopy(phases[1]["model"]), torch.zeros(2, *SHAPE))
    removed = torch.zeros(space.num_groups, dtype=torch.bool)
    removed[outcome.pruned] = True
    assert zp.Policy.of(space, removed).families == policies[0].families, "the searched widths, exactly"
    macs = zp.count(outcome.model, torch.zeros(1, *SHAPE))["macs"]
    assert macs <= 0.4 * 304448 * 1.02


def test_unknown_recipe_lists_the_names() -> None:
    with pytest.raises(ZigpruneError, match="unknown method 'nope'; valid names: dense, l1-filter"):
        recipes.get("nope")


def test_tp_group_sl_adds_the_group_lasso_gradient_then_prunes_to_the_target(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    pytest.importorskip("torch_pruning")
    from zigprune.methods import tp_baselines

    s = setup(epochs=2)
    s.data.num_classes = 10
    model = tiny()
    for p in model.parameters():
        p.grad = torch.zeros_like(p)
    tp_baselines._Regularize(tp_baselines._pruner(s, model, sparse=True)).after_backward(
        SimpleNamespace(model=model), None
    )
    conv = next(m for m in model.modules() if isinstance(m, nn.Conv2d))
    assert (conv.weight.grad * conv.weight > 0).float().mean() > 0.99  # shrinks every weight
    phases = spy_phases(monkeypatch)
    outcome = recipes.get("tp-group-sl")(s)
    assert [p["phase"] for p in phases] == ["group-lasso", "fine-tune"]
    assert any(isinstance(h, tp_baselines._Regularize) for h in phases[0]["hooks"])
    macs = zp.count(outcome.model, torch.zeros(1, *SHAPE))["macs"]
    assert macs <= 0.4 * 304448 * 1.02 and outcome.model(torch.zeros(2, *SHAPE)).shape == (2, 10)
