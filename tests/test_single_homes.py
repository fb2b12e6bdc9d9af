"""One home for each idea: targets, optimizer factory, options, steps per epoch, tolerances, reductions."""

from __future__ import annotations

import argparse
import dataclasses
import importlib.util
import re
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from torch import nn
from torch.utils.data import TensorDataset

import zigprune as zp
from zigprune import models, optim, training
from zigprune.bench import command
from zigprune.bench.harness import Bench, Settings
from zigprune.core.construct import outside_tolerance
from zigprune.core.grouping import Grouping
from zigprune.core.reduction import per_group
from zigprune.core.selection import Target, goal, parse_number
from zigprune.deploy.quantize import Scheme
from zigprune.errors import (
    OptimizerError,
    QuantizeError,
    TargetError,
    UnknownNameError,
    ZigpruneError,
)
from zigprune.measure.latency import LatencyError, interleaved
from zigprune.methods import allocators, criteria, recipes
from zigprune.methods.run import Setup, Trainer
from zigprune.optim.factory import optimizer_class
from zigprune.posttrain.methods import METHODS as POSTTRAIN_METHODS

REPO = Path(__file__).resolve().parents[1]
SHAPE = (1, 8, 8)


def digits_space() -> tuple[nn.Module, zp.GroupSpace]:
    torch.manual_seed(0)
    model = models.create("digits_cnn")
    return model, zp.analyze(model, torch.randn(2, *SHAPE))


def tiny_setup(target: Target, epochs: int = 1, **options) -> Setup:
    g = torch.Generator().manual_seed(1)
    x, y = torch.randn(64, *SHAPE, generator=g), torch.randint(0, 10, (64,), generator=g)
    data = SimpleNamespace(train=TensorDataset(x, y), test=TensorDataset(x[:16], y[:16]), augment=None)
    return Setup(
        build=lambda: digits_space()[0], data=data, example=x[:2], target=target, epochs=epochs,
        batch_size=32, options=options,
    )  # fmt: skip


def record_optimizers(monkeypatch: pytest.MonkeyPatch) -> list[torch.optim.Optimizer]:
    """Skip training in recipes and record the optimizer each phase was given."""
    seen: list[torch.optim.Optimizer] = []

    def fit(self, model, epochs, phase, hooks=(), optimizer=None, **kwargs) -> None:
        seen.append(optimizer)
        self.epochs += epochs

    monkeypatch.setattr(Trainer, "fit", fit)
    return seen


# -- targets ---------------------------------------------------------------------------------------------


def test_the_library_has_one_cost_power_default() -> None:
    _, space = digits_space()
    hesso = zp.HESSO(space, lr=0.1, target=0.5, total_steps=10)
    dhspg = zp.DHSPG(space, lr=0.1, target=0.5, total_steps=10)
    assert Target(0.5).cost_power == hesso.target.cost_power == dhspg.target.cost_power == 0.0


def test_hesso_and_dhspg_take_a_target_or_its_fields() -> None:
    _, space = digits_space()
    target = Target(0.5, "macs", round_to=4, cost_power=0.5)
    for cls in (zp.HESSO, zp.DHSPG):
        assert cls(space, lr=0.1, target=target, total_steps=10).target == target
        spelled = cls(space, lr=0.1, target=0.5, by="macs", round_to=4, cost_power=0.5, total_steps=10)
        assert spelled.target == target
        with pytest.raises(ValueError, match="must go inside the Target"):
            cls(space, lr=0.1, target=target, by="params", total_steps=10)


def test_cost_aware_allocator_ranks_by_cost_whatever_the_targets_cost_power() -> None:
    _, space = digits_space()
    scores = torch.rand(space.num_groups, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    knapsack = allocators.cost_aware(space, scores, Target(0.5, "macs", cost_power=1.0))
    assert torch.equal(allocators.cost_aware(space, scores, Target(0.5, "macs")), knapsack)


def test_one_goal_for_selection_and_allocators() -> None:
    _, space = digits_space()
    assert goal(space, Target(0.5)) == space.num_groups - round(0.5 * space.num_groups)
    assert goal(space, Target(0.4, "macs"), share=0.5) == pytest.approx(space.total_macs * 0.8)
    assert allocators.goal is goal


def test_bench_macs_factor_uses_the_target_number_parser() -> None:
    assert parse_number(" 2.5X ") == (2.5, True) and parse_number("0.4") == (0.4, False)
    assert command._ratio("2.5x") == 2.5 and command._ratio("3") == 3.0
    assert command._ratio("0.5x") == 0.5, "a factor under 1 is refused by Settings with its own message"
    with pytest.raises(argparse.ArgumentTypeError, match=r"expected a MACs reduction such as 2\.5x"):
        command._ratio("lots")
    with pytest.raises(TargetError, match="is not a number"):
        parse_number("lots")


# -- one optimizer factory -------------------------------------------------------------------------------


def test_unknown_optimizer_is_an_optimizer_error_listing_the_names() -> None:
    _, space = digits_space()
    with pytest.raises(
        OptimizerError, match="unknown optimizer 'sgd'; valid names: hesso, dhspg, hspg"
    ) as info:
        optim.make("sgd", space, lr=0.1, total_steps=10)
    assert not isinstance(info.value, TargetError)


def test_the_factory_never_ignores_a_target() -> None:
    _, space = digits_space()
    with pytest.raises(OptimizerError, match="hspg has no target"):
        optim.make("hspg", space, lr=0.1, total_steps=10, target=Target(0.5))
    with pytest.raises(OptimizerError, match="hesso removes an explicit target"):
        optim.make("hesso", space, lr=0.1, total_steps=10)
    opt = optim.make("dhspg", space, lr=0.1, momentum=0.9, total_steps=10, target=Target(0.3, "params"))
    assert isinstance(opt, zp.DHSPG) and opt.target == Target(0.3, "params")
    assert opt.param_groups[0]["momentum"] == 0.9


@pytest.mark.parametrize("name", ["hesso", "dhspg"])
def test_optimizer_recipes_pass_round_to_and_cost_power(name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    seen = record_optimizers(monkeypatch)
    target = Target(0.6, "macs", round_to=4, cost_power=0.5)
    recipes.get(name)(tiny_setup(target))
    assert seen[-1].target == target
    recipes.get(name)(tiny_setup(target, cost_power=1, round_to=2, start_step=1))
    assert seen[-1].target == Target(0.6, "macs", round_to=2, cost_power=1.0) and seen[-1].start_step == 1


# -- recipes ---------------------------------------------------------------------------------------------


def test_recipe_options_refuse_unknown_names_and_wrong_types(monkeypatch: pytest.MonkeyPatch) -> None:
    record_optimizers(monkeypatch)
    with pytest.raises(
        ZigpruneError, match=r"unknown option\(s\) pretrain_shar; valid names: pretrain_share, allocator"
    ):
        recipes.get("l1-filter")(tiny_setup(Target(0.5, "macs"), pretrain_shar=0.3))
    with pytest.raises(ZigpruneError, match="option events must be int, not 'many'"):
        recipes.get("taylor")(tiny_setup(Target(0.5, "macs"), events="many"))
    with pytest.raises(ZigpruneError, match=r"reg; valid names: pretrain_share, fine_tune_lr$"):
        recipes.get("tp-l2")(tiny_setup(Target(0.5, "macs"), reg=1e-3))


def test_recipe_defaults_are_unchanged() -> None:
    from zigprune.methods import options

    def defaults(kind: type) -> dict:
        return {f.name: getattr(kind(), f.name) for f in dataclasses.fields(kind)}

    assert defaults(options.PruneOnceOptions) == {
        "pretrain_share": 0.5,
        "allocator": "uniform",
        "recovery": "fine-tune",
    }
    assert defaults(options.SlimmingOptions) == {
        "pretrain_share": 0.5, "fine_tune_lr": 0.1, "lmbda": 1e-4, "allocator": "global",
    }  # fmt: skip
    assert defaults(options.TaylorOptions) == {
        "pretrain_share": 0.5, "fine_tune_lr": 0.1, "events": 10, "momentum": 0.9, "allocator": "global",
    }  # fmt: skip
    assert defaults(options.MagnitudeOptions) == {"pretrain_share": 0.5, "fine_tune_lr": 0.1, "events": 10}
    assert defaults(options.OneCycleOptions) == {"events": 20, "allocator": "cost-aware", "criterion": "l2"}
    assert defaults(options.SFPOptions) == {"allocator": "uniform"}
    assert defaults(options.LTHOptions) == {"rounds": 3, "rewind_share": 0.05}
    assert defaults(options.ScratchOptions) == {"source": "hesso"}
    assert defaults(options.GroupLassoOptions) == {"pretrain_share": 0.5, "fine_tune_lr": 0.1, "reg": 5e-4}
    assert (
        options.read_options(options.MagnitudeOptions, {"events": 4, "fine_tune_lr": 1}).fine_tune_lr == 1.0
    )


def test_the_random_recipe_does_not_shadow_the_random_module() -> None:
    assert not hasattr(recipes, "random") and recipes.get("random") is recipes.random_groups


def test_torch_pruning_recipes_are_found_in_a_fresh_interpreter() -> None:
    code = "from zigprune import methods; methods.get('tp-l2'); methods.get('tp-group-sl')"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr


# -- example inputs --------------------------------------------------------------------------------------


def test_bench_analyses_on_real_inputs(tmp_path: Path) -> None:
    bench = Bench(Settings(model="digits_cnn", data="digits", subset=100, methods=["dense"]), tmp_path)
    assert bench.example.shape[0] == 2 and bool(bench.example.abs().sum() > 0)


def load_train_once():
    spec = importlib.util.spec_from_file_location("train_once_script", REPO / "benchmarks" / "train_once.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_train_once_trains_on_the_library_loop_and_analyses_real_inputs(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    script = load_train_once()
    analysed: list[torch.Tensor] = []
    loops: list[int] = []
    analyze, train = zp.analyze, script.train
    monkeypatch.setattr(
        script.zp, "analyze", lambda model, x, **kw: analysed.append(x) or analyze(model, x, **kw)
    )
    monkeypatch.setattr(script, "train", lambda *a, **kw: loops.append(1) or train(*a, **kw))
    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(48, 1, 28, 28, generator=g), torch.randint(0, 10, (48,), generator=g)
    data = {"train_x": x[:32], "train_y": y[:32], "test_x": x[32:], "test_y": y[32:]}
    args = argparse.Namespace(
        lr=0.1, momentum=0.9, weight_decay=5e-4, batch_size=16, epochs=1, macs_target=0.6, no_progress=True
    )
    run = script.train_run("hesso", 0, data, args)
    assert loops == [1] and run["steps"] == 2 and len(run["epochs"]) == 1
    assert analysed and all(bool(x.abs().sum() > 0) for x in analysed)
    assert run["in_run_step_ms_mean"] > 0 and run["macs_reduction"] > 1


# -- steps per epoch, tolerance, per-group reduction ---------------------------------------------------


def test_one_steps_per_epoch() -> None:
    assert training.steps_per_epoch(64, 32) == 2 and training.steps_per_epoch(65, 32) == 3
    assert training.steps_per_epoch(0, 32) == 1
    setup = tiny_setup(Target(0.5))
    loop = training.Loop(nn.Linear(1, 1), None, setup.data.train, 1, setup.batch_size)
    assert setup.steps_per_epoch == loop.steps_per_epoch == training.steps_per_epoch(64, 32)


def test_one_output_tolerance() -> None:
    reference = torch.tensor([1.0, -2.0])
    assert outside_tolerance(reference, reference + 1e-5, 1e-4) is None
    diff, scale = outside_tolerance(reference, reference + torch.tensor([0.0, 1e-3]), 1e-4)
    assert diff == pytest.approx(1e-3, rel=1e-4) and scale == 2.0
    assert outside_tolerance(torch.zeros(0), torch.zeros(0), 1e-4) is None


def test_one_per_group_reduction_behind_norms_scores_and_optimizer_sums() -> None:
    _, space = digits_space()
    grouping = Grouping(space)
    squares = grouping.reduce().double()
    torch.testing.assert_close(space.group_norms().square(), squares, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(criteria.make("l2", space).scores().square(), squares, rtol=1e-5, atol=1e-6)
    index = torch.tensor([0, 1, 1, 2])
    rows = torch.tensor([[1.0, 2.0], [3.0, -4.0], [0.5, 0.5], [9.0, 9.0]])
    assert per_group([(rows, 0, index)], 2, lambda r: r.abs().sum(1)).tolist() == [3.0, 8.0]
    assert per_group([(rows.T, 1, index)], 2, lambda r: r.abs().amax(1), "amax").tolist() == [2.0, 4.0]


@pytest.mark.parametrize(
    ("lookup", "domain", "kind"),
    [
        (lambda: optimizer_class("sgd"), OptimizerError, "optimizer"),
        (lambda: models.create("resnet21"), KeyError, "model"),
        (lambda: criteria.make("nope", None), ZigpruneError, "criterion"),
        (lambda: recipes.get("nope"), ZigpruneError, "method"),
        (lambda: allocators.ALLOCATORS["nope"], ZigpruneError, "allocator"),
        (lambda: POSTTRAIN_METHODS["nope"], ValueError, "method"),
        (lambda: Scheme("int4"), QuantizeError, "int8 format"),
        (lambda: interleaved([], None, backend="tvm"), LatencyError, "backend"),
    ],
)
def test_every_registry_raises_one_error_that_names_the_valid_names(lookup, domain, kind) -> None:
    """One registry class: an unknown name is an UnknownNameError (and the domain's error), worded alike."""
    with pytest.raises(UnknownNameError) as info:
        lookup()
    assert isinstance(info.value, domain) and isinstance(info.value, ZigpruneError)
    assert re.fullmatch(rf"unknown {kind} '\w+'; valid names: [\w\-, ]+", str(info.value))
