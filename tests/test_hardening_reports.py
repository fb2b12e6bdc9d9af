"""Issue 17, second hardening pass: unreachable targets, unfinished schedules, bench --quick, MACs units,
family names and the run report's widths table and training plot."""

from __future__ import annotations

import json
import re
import warnings
from dataclasses import replace
from pathlib import Path

import pytest
import torch
from torch import nn

import zigprune as zp
from zigprune import cli
from zigprune import runs as run
from zigprune.bench import command
from zigprune.core.selection import Target, select
from zigprune.errors import TargetError, ZigpruneError
from zigprune.methods import allocators
from zigprune.runs import report


class Branchy(nn.Module):
    """A large unprunable linear (its outputs reach the model output) beside a small prunable branch."""

    def __init__(self) -> None:
        super().__init__()
        self.big = nn.Linear(256, 256)
        self.a = nn.Linear(256, 16)
        self.b = nn.Linear(16, 256)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.big(x) + self.b(torch.relu(self.a(x)))


def branchy() -> tuple[nn.Module, zp.GroupSpace, torch.Tensor]:
    torch.manual_seed(0)
    model, x = Branchy(), torch.randn(4, 256)
    return model, zp.analyze(model, x), x


def steps(opt: torch.optim.Optimizer, model: nn.Module, x: torch.Tensor, n: int) -> None:
    for _ in range(n):
        opt.zero_grad()
        model(x).square().mean().backward()
        opt.step()


def small_cnn() -> nn.Sequential:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(1, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 16, 3, padding=1), nn.ReLU(),
        nn.Flatten(), nn.Linear(16 * 36, 4),
    )  # fmt: skip


# -- 1. a target no selection can meet is refused when the optimizer is made -------------------------------


@pytest.mark.parametrize("cls", [zp.HESSO, zp.DHSPG])
@pytest.mark.parametrize("by", ["params", "macs"])
def test_an_unreachable_cost_target_is_a_target_error_at_construction(cls: type, by: str) -> None:
    model, space, x = branchy()
    with pytest.raises(TargetError, match=rf"at most \d+\.\d% of {by} can be removed .*lower target"):
        cls(space, lr=0.01, target=0.5, by=by, total_steps=10)
    opt = cls(space, lr=0.01, target=0.05, by=by, total_steps=10)
    steps(opt, model, x, 10)


@pytest.mark.parametrize(("round_to", "most"), [(1, "93.8%"), (8, "50.0%")])
def test_group_targets_and_round_to_bound_what_can_go(round_to: int, most: str) -> None:
    _, space, _ = branchy()
    with pytest.raises(TargetError, match=f"at most {re.escape(most)} of groups"):
        zp.HESSO(space, lr=0.01, target=0.97, round_to=round_to, total_steps=10)
    assert issubclass(TargetError, ZigpruneError)


def test_selection_takes_every_unit_instead_of_an_index_error() -> None:
    _, space, _ = branchy()
    chosen = select(
        space, torch.rand(space.num_groups), torch.zeros(16, dtype=torch.bool), Target(0.5, "params"), 1
    )
    assert int(chosen.sum()) == space.num_groups - 1


@pytest.mark.parametrize("name", ["cost-aware", "global", "uniform"])
def test_allocators_refuse_the_same_unreachable_target(name: str) -> None:
    _, space, _ = branchy()
    with pytest.raises(TargetError, match="at most"):
        allocators.allocate(name, space, torch.rand(space.num_groups), Target(0.5, "params"))


# -- 2. fewer steps than total_steps: the target is not reached, and construct() says why ----------------


@pytest.mark.parametrize("cls", [zp.HESSO, zp.DHSPG])
def test_an_unfinished_schedule_warns_at_construct(cls: type) -> None:
    model, space, x = branchy()
    opt = cls(space, lr=0.01, target=0.5, total_steps=400)
    steps(opt, model, x, 60)
    assert opt.report()["pruning_done"] < 1
    with pytest.warns(
        UserWarning, match=r"zigprune: target not reached: ran 60 of total_steps=400: the pruning"
    ):
        space.construct()


def test_a_finished_schedule_constructs_silently() -> None:
    model, space, x = branchy()
    opt = zp.HESSO(space, lr=0.01, target=0.5, total_steps=20)
    steps(opt, model, x, 20)
    assert opt.report()["pruning_done"] == 1 and opt.shortfall() is None
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        space.construct()


# -- 3. bench --quick: a smoke run, never into the published results -----------------------------------------


QUICK = ["--model", "digits_cnn", "--data", "digits", "--quick", "--subset", "100", "--epochs", "1"]


def test_bench_quick_defaults_to_a_scratch_folder_and_says_it_is_a_smoke_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    monkeypatch.chdir(tmp_path)
    assert command.main([*QUICK, "--methods", "dense", "--no-latency"]) == 0
    out = tmp_path / command.QUICK_OUT
    assert "smoke run (--quick): figures are not meaningful" in (out / "bench.md").read_text().lower()
    assert json.loads((out / "bench.json").read_text())["smoke_run"] is True
    assert "Smoke run" in capsys.readouterr().out
    assert not (tmp_path / "benchmarks").exists()


def test_bench_quick_refuses_the_published_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    monkeypatch.chdir(tmp_path)
    assert command.main([*QUICK, "--methods", "dense", "--out", "benchmarks/results/bench"]) == 2
    assert "--quick is a smoke run and does not write into benchmarks/results" in capsys.readouterr().err
    assert not (tmp_path / "benchmarks").exists()
    assert command.QUICK_OUT.parts[:2] != command.PUBLISHED


# -- 4. MACs per sample everywhere, and a MACs % column that adds up ---------------------------------------


def test_count_reports_macs_per_sample_unless_asked_for_the_batch() -> None:
    model, x = small_cnn(), torch.randn(4, 1, 6, 6)
    one = zp.count(model, x[:1])
    assert zp.count(model, x) == one
    assert zp.count(model, x, per_sample=False)["macs"] == 4 * one["macs"]
    assert zp.count(model, {"input": x})["macs"] == one["macs"]


def test_summary_macs_column_adds_up_to_at_most_100_percent() -> None:
    model, x = small_cnn(), torch.randn(2, 1, 6, 6)
    space = zp.analyze(model, x)
    text = space.summary(max_rows=100)
    shares = [float(s) for s in re.findall(r" (\d+\.\d)%  ", text)]
    assert len(shares) == len(space.families)
    assert 99.5 <= sum(shares) <= 100.05
    assert f"{zp.count(model, x)['macs']:,} MACs per sample" in text.splitlines()[0]


def test_analyze_demo_prints_macs_per_sample(capsys: pytest.CaptureFixture) -> None:
    assert cli.main(["analyze", "--model", "digits_cnn", "--batch", "4"]) == 0
    out = capsys.readouterr().out
    macs = zp.count(zp.models.create("digits_cnn"), torch.zeros(1, 1, 8, 8))["macs"]
    assert f"{macs:,} MACs per sample" in out and re.search(rf"MACs per sample +{macs:,} ->", out)


# -- 5. family names, every family's width, and the training plot's baseline and pruning mark -------------


def test_sequential_families_are_named_with_their_module_type() -> None:
    space = zp.analyze(small_cnn(), torch.randn(2, 1, 6, 6))
    names = [f.name for f in space.families if f.prunable]
    assert names == ["0 (Conv2d)", "2 (Conv2d)"]
    assert [f.name for f in zp.analyze(Branchy(), torch.randn(2, 256)).families if f.prunable] == ["a"]


def test_widths_table_lists_unpruned_families_too(tmp_path: Path) -> None:
    widths = [
        {"family": "features.0 (Conv2d)", "before": 16, "after": 8},
        {"family": "features.3 (Conv2d)", "before": 32, "after": 32},
    ]
    (tmp_path / "plan.json").write_text(json.dumps({"widths": widths}))
    rows = report.widths_table(report._widths(tmp_path))
    assert rows[2:] == ["| features.0 (Conv2d) | 16 | 8 | 50% |", "| features.3 (Conv2d) | 32 | 32 | 100% |"]


def history(losses: list[float], sparsity: list[float]) -> dict:
    rows = [
        {"step": i + 1, "epoch": (i + 1) / 2, "loss": loss, "group_sparsity": s}
        for i, (loss, s) in enumerate(zip(losses, sparsity))
    ]
    return {"steps": rows, "epochs": [{"epoch": 1, "test_accuracy": 0.5}, {"epoch": 2, "test_accuracy": 0.7}]}


def test_training_plot_draws_the_dense_baseline_and_marks_pruning() -> None:
    from matplotlib.figure import Figure

    pruned = history([2.0, 1.5, 1.2, 1.0], [0.0, 0.2, 0.5, 0.5])
    dense = history([2.0, 1.4, 1.1, 0.9], [0.0] * 4)
    figure = Figure()
    assert report._plot_training(figure, report.RunData({}, pruned, dense, []))
    loss_ax, acc_ax = figure.axes
    assert [line.get_label() for line in loss_ax.lines] == ["pruning run", "dense baseline"]
    assert "test (dense baseline)" in [line.get_label() for line in acc_ax.lines]
    spans = [p for p in loss_ax.patches if p.get_label() == "pruning"]
    assert len(spans) == 1 and spans[0].get_x() == 1 and spans[0].get_width() == 2
    assert report.pruning_span(dense) is None


def test_compress_records_the_baseline_history_for_the_report(tmp_path: Path) -> None:
    config = run.Config(subset=200, epochs=1, batch_size=50, onnx=False, latency=False, baseline=True)
    run.compress(replace(config, seed=1), tmp_path, progress=False, log=lambda text: None)
    histories = json.loads((tmp_path / "history.json").read_text())
    assert set(histories) == {"train", "baseline"} and histories["baseline"]["steps"]
    text = (tmp_path / "report.md").read_text()
    assert "| MACs per sample" in text and "## Kept widths" in text and "(Conv2d)" in text


def test_plan_widths_list_unprunable_weight_layers_too() -> None:
    from zigprune.io.plan import _widths

    space = zp.analyze(small_cnn(), torch.randn(2, 1, 6, 6))
    space.zero_(space.families[next(f.index for f in space.families if f.prunable)].groups[:2])
    rows = {
        row["family"]: (row["before"], row["after"])
        for row in _widths(space, space.pruned_classes(space.zero_groups()))
    }
    unprunable = [f for f in space.families if f.modules and not f.prunable]
    assert unprunable and all(rows[f.name] == (f.width, f.width) for f in unprunable)
    assert rows["0 (Conv2d)"][1] == rows["0 (Conv2d)"][0] - 2
