"""Post-training pruning on networks nobody tuned it on (issue 27): random architectures from the
test suite's generator (``tests/random_nets.py``: residual adds, concats, gates, grouped and
depthwise convs, MLP heads on a 4x4 pooled grid), each trained briefly on scikit-learn's digits,
then pruned with every ``zp.prune`` method at 1.25x, 1.5x and 2x fewer MACs, no training; plus the
network of issue 27 (a 3x3 stem, a bottleneck with a grouped conv and a squeeze-excitation gate, a
DenseNet-style concat, an MLP head) trained on a Fashion-MNIST subset.

    PYTHONPATH=src python benchmarks/post_training_fuzz.py          # ~15 min on 2 cores
    PYTHONPATH=src python benchmarks/post_training_fuzz.py --quick  # 3 nets at 1.5x, no issue network, ~10 s

The nets are drawn by hypothesis (derandomized, so the same every run; ``--seed`` picks another
draw) with every channel count times ``--width``; a net whose dense accuracy stays below 50 % is
left out and counted. A target no selection can reach on a net (too little prunable MACs) is
counted as unreachable for that net. Calibration: ``--calibration`` training images; widths are not
rounded. Writes ``post_training_fuzz.md``, ``.json`` and ``.png`` (accuracy lost per method) to
``--out`` (default ``benchmarks/results/post_training_fuzz``; ``--quick`` writes under
``runs/bench-quick`` so a smoke run never overwrites the published figures).

Goals (issue 27): on every net ``obs`` is never more than 1 pt below magnitude and never at chance
(accuracy at most 10 pt above 1/classes); at 1.5x its median loss is at most 2 pt.
"""

from __future__ import annotations

import argparse
import copy
import json
import statistics
import sys
import time
import warnings
from pathlib import Path
from typing import Any

import torch
from torch import nn

import zigprune as zp
from zigprune import data
from zigprune.errors import TargetError
from zigprune.training import evaluate, train

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from common import REPO, command_line, goal_line, machine_info
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import seed as hypothesis_seed

from foreign_nets import IssueNet
from random_nets import FuzzNet, Spec, specs

DEFAULT_OUT = REPO / "benchmarks" / "results" / "post_training_fuzz"
QUICK_OUT = REPO / "runs" / "bench-quick" / "post_training_fuzz"
METHODS = ("obs", "flap", "wanda", "magnitude")
MIN_DENSE = 0.5
CHANCE_MARGIN = 0.10
GRID = 4


def draw_specs(count: int, width: int, seed: int) -> list[Spec]:
    """``count`` specs with at least three nodes, drawn by hypothesis (the same for the same seed)."""
    found: list[Spec] = []

    @hypothesis_seed(seed)
    @settings(max_examples=count * 20, derandomize=False, database=None, phases=[Phase.generate],
              suppress_health_check=list(HealthCheck), deadline=None)  # fmt: skip
    @given(specs(width=width, in_channels=1, grid=GRID))
    def collect(spec: Spec) -> None:
        if len(found) < count and len(spec.nodes) >= 3 and spec not in found:
            found.append(spec)

    collect()
    return found


def trained(model: nn.Module, dataset: data.Dataset, epochs: int, progress: bool) -> nn.Module:
    """``model`` trained with AdamW and a cosine schedule (the brief training of a fuzz net)."""
    torch.manual_seed(0)
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3, weight_decay=1e-4)
    steps = -(-len(dataset.train) // 64) * epochs
    scheduler = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=3e-3, total_steps=steps)
    train(model, opt, dataset.train, epochs=epochs, batch_size=64, scheduler=scheduler, progress=progress,
          desc="dense", catch_signals=False)  # fmt: skip
    return model.eval()


def prune_all(
    dense: nn.Module, dataset: data.Dataset, calibration: list[torch.Tensor], factors: list[float]
) -> list[dict[str, Any]]:
    """Every method at every factor on a copy of ``dense``: accuracy, MACs, seconds (or unreachable)."""
    rows = []
    example = calibration[0][:2]
    for factor in factors:
        for method in METHODS:
            model = copy.deepcopy(dense)
            space = zp.analyze(model, example)
            start = time.perf_counter()
            try:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    zp.prune(space, calibration, target=1 - 1 / factor, by="macs", method=method,
                             progress=False)  # fmt: skip
            except TargetError:
                rows.append({"factor": factor, "method": method, "unreachable": True})
                continue
            seconds = time.perf_counter() - start
            slim = space.construct()
            accuracy = evaluate(slim, dataset.test).accuracy
            macs = zp.count(slim, example)["macs"]
            rows.append({"factor": factor, "method": method, "accuracy": accuracy, "macs": macs,
                         "seconds": seconds, "widths": widths(space)})  # fmt: skip
    return rows


def widths(space: zp.GroupSpace) -> dict[str, list[int]]:
    """Per prunable family, its width and what pruning kept."""
    zero = space.zero_groups()
    return {f.name: [f.width, f.width - int(zero[f.groups].sum())] for f in space.families if f.groups}


def calibration_of(dataset: data.Dataset, count: int) -> list[torch.Tensor]:
    picked = torch.randperm(len(dataset.train), generator=torch.Generator().manual_seed(0))[:count]
    return list(torch.stack([dataset.train[int(i)][0] for i in picked]).split(64))


def fuzz_section(args: argparse.Namespace) -> dict[str, Any]:
    dataset = data.load("digits")
    calibration = calibration_of(dataset, args.calibration)
    nets = []
    for i, spec in enumerate(draw_specs(args.nets, args.width, args.seed)):
        torch.manual_seed(i)
        dense = trained(FuzzNet(spec, num_out=dataset.num_classes), dataset, args.epochs, args.progress)
        accuracy = evaluate(dense, dataset.test).accuracy
        macs = zp.count(dense, calibration[0][:2])["macs"]
        net = {"index": i, "spec": repr(spec), "dense": accuracy, "macs": macs}
        if accuracy < MIN_DENSE:
            nets.append({**net, "left_out": True})
            print(f"net {i}: dense {accuracy:.1%}, left out", file=sys.stderr)
            continue
        net["rows"] = prune_all(dense, dataset, calibration, args.factors)
        nets.append(net)
        found = ", ".join(
            f"{r['method']} {r['factor']:g}x {r['accuracy']:.1%}" for r in net["rows"] if "accuracy" in r
        )
        print(f"net {i}: dense {accuracy:.1%}; {found}", file=sys.stderr)
    return {"data": "digits", "classes": dataset.num_classes, "nets": nets}


def issue_section(args: argparse.Namespace) -> dict[str, Any]:
    dataset = data.load("fashion-mnist", subset=args.issue_subset)
    calibration = calibration_of(dataset, 512)
    dense = IssueNet()
    torch.manual_seed(0)
    opt = torch.optim.SGD(dense.parameters(), lr=0.05, momentum=0.9, weight_decay=5e-4)
    steps = -(-len(dataset.train) // 128) * args.issue_epochs
    scheduler = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=0.1, total_steps=steps)
    train(dense, opt, dataset.train, epochs=args.issue_epochs, batch_size=128, scheduler=scheduler,
          progress=args.progress, desc="issue network", catch_signals=False)  # fmt: skip
    dense.eval()
    accuracy = evaluate(dense, dataset.test).accuracy
    rows = prune_all(dense, dataset, calibration, [1.5, 2.0])
    for r in rows:
        print(f"issue network {r['factor']:g}x {r['method']}: {r.get('accuracy', 0):.2%}", file=sys.stderr)
    setup = f"{len(dataset.train)} Fashion-MNIST images, {args.issue_epochs} epochs"
    return {"setup": setup, "dense": accuracy, "rows": rows}


def summary(fuzz: dict[str, Any]) -> dict[str, Any]:
    """Per factor and method: losses (dense minus pruned, in pt) over the nets, and the counts."""
    chance = 1 / fuzz["classes"] + CHANCE_MARGIN
    kept = [n for n in fuzz["nets"] if not n.get("left_out")]
    table: dict[str, Any] = {}
    for net in kept:
        found = {(r["factor"], r["method"]): r for r in net["rows"]}
        for (factor, method), r in found.items():
            cell = table.setdefault(f"{factor:g}x", {}).setdefault(
                method, {"losses": [], "unreachable": 0, "at_chance": 0, "below_magnitude": 0}
            )
            if r.get("unreachable"):
                cell["unreachable"] += 1
                continue
            cell["losses"].append((net["dense"] - r["accuracy"]) * 100)
            cell["at_chance"] += r["accuracy"] <= chance
            magnitude = found.get((factor, "magnitude"), {})
            if "accuracy" in magnitude and r["accuracy"] < magnitude["accuracy"] - 0.01:
                cell["below_magnitude"] += 1
    for cells in table.values():
        for cell in cells.values():
            losses = sorted(cell["losses"])
            cell["median"] = statistics.median(losses) if losses else None
            cell["p90"] = losses[min(len(losses) - 1, int(0.9 * len(losses)))] if losses else None
            cell["worst"] = losses[-1] if losses else None
    return table


def goals(table: dict[str, Any]) -> list[str]:
    lines = []
    for factor, cells in table.items():
        obs = cells.get("obs")
        if not obs or not obs["losses"]:
            continue
        n = len(obs["losses"])
        lines.append(goal_line(f"{factor}: obs more than 1 pt below magnitude on {obs['below_magnitude']} "
                               f"of {n} nets (goal 0)", obs["below_magnitude"] == 0))  # fmt: skip
        lines.append(goal_line(f"{factor}: obs at chance on {obs['at_chance']} of {n} nets (goal 0)",
                               obs["at_chance"] == 0))  # fmt: skip
        if factor == "1.5x":
            lines.append(goal_line(f"1.5x: obs median loss {obs['median']:.2f} pt (goal <= 2 pt)",
                                   obs["median"] <= 2))  # fmt: skip
    return lines


def markdown(report: dict[str, Any]) -> str:
    fuzz, table = report["fuzz"], report["summary"]
    kept = [n for n in fuzz["nets"] if not n.get("left_out")]
    dense = sorted(n["dense"] for n in kept)
    out = [
        "# Post-training pruning on random architectures",
        "",
        f"Command (from the repository root): `{report['command']}`",
        "",
        f"Machine: {report['machine']['summary']}. Total wall time {report['seconds']:.0f} s.",
        "",
        f"## {len(fuzz['nets'])} random networks on digits",
        "",
        f"Drawn by `tests/random_nets.py` (channel counts x{report['settings']['width']}), each trained "
        f"{report['settings']['epochs']} epochs (AdamW, one-cycle); {len(fuzz['nets']) - len(kept)} left "
        f"out below {MIN_DENSE:.0%} dense accuracy. Dense accuracy of the rest: median "
        f"{statistics.median(dense):.1%}, lowest {dense[0]:.1%}. Pruned from "
        f"{report['settings']['calibration']} training images, no training, widths not rounded. Loss: dense "
        "minus pruned test accuracy, in points, over the nets where the target is reachable.",
        "",
        "| target | method | nets | median loss | p90 | worst | at chance | >1 pt below magnitude "
        "| unreachable |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for factor, cells in table.items():
        for method, c in cells.items():
            if not c["losses"]:
                continue
            out.append(
                f"| {factor} | {method} | {len(c['losses'])} | {c['median']:.2f} | {c['p90']:.2f} | "
                f"{c['worst']:.2f} | {c['at_chance']} | {c['below_magnitude']} | {c['unreachable']} |"
            )
    out += ["", "![accuracy lost per method](post_training_fuzz.png)", "", "## Goals", "", *report["goals"]]
    issue = report.get("issue")
    if issue:
        out += [
            "",
            f"## The network of issue 27 ({issue['setup']})",
            "",
            f"Dense: {issue['dense']:.2%}. Issue 27 measured, before this change, obs at 10.0 % (chance) "
            "at 1.5x and 2x, magnitude 34.1 % and 22.6 %.",
            "",
            "| target | method | accuracy | change | kept widths |",
            "|---|---|---:|---:|---|",
        ]
        for r in issue["rows"]:
            if r.get("unreachable"):
                continue
            kept_widths = ", ".join(f"{k.split(' ')[0]} {v[1]}/{v[0]}" for k, v in r["widths"].items())
            out.append(
                f"| {r['factor']:g}x | {r['method']} | {r['accuracy']:.2%} | "
                f"{(r['accuracy'] - issue['dense']) * 100:+.2f} pt | {kept_widths} |"
            )
    return "\n".join(out) + "\n"


def plot(table: dict[str, Any], path: Path) -> None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return
    factors = list(table)
    fig, axes = plt.subplots(1, len(factors), figsize=(5 * len(factors), 4), sharey=True, squeeze=False)
    for ax, factor in zip(axes[0], factors):
        methods = [m for m in METHODS if table[factor].get(m, {}).get("losses")]
        ax.boxplot([table[factor][m]["losses"] for m in methods], showfliers=True)
        ax.set_xticks(range(1, len(methods) + 1), methods)
        ax.set_title(f"{factor} fewer MACs")
        ax.axhline(0, color="grey", linewidth=0.5)
    axes[0][0].set_ylabel("test accuracy lost (pt)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--nets", type=int, default=40)
    p.add_argument("--width", type=int, default=4, help="every drawn channel count times this")
    p.add_argument("--epochs", type=int, default=15)
    p.add_argument("--calibration", type=int, default=256)
    p.add_argument("--factors", type=float, nargs="+", default=[1.25, 1.5, 2.0])
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--issue-subset", type=int, default=20000)
    p.add_argument("--issue-epochs", type=int, default=3)
    p.add_argument("--no-issue", action="store_true", help="skip the network of issue 27")
    p.add_argument("--quick", action="store_true", help="3 nets, 3 epochs, 1.5x only, no issue network")
    p.add_argument("--progress", action="store_true")
    p.add_argument("--out", type=Path)
    args = p.parse_args(argv)
    if args.quick:
        args.nets, args.epochs, args.no_issue, args.factors = 3, 3, True, [1.5]
    out = args.out or (QUICK_OUT if args.quick else DEFAULT_OUT)
    start = time.perf_counter()
    fuzz = fuzz_section(args)
    table = summary(fuzz)
    report = {
        "command": command_line(__file__, sys.argv[1:] if argv is None else argv),
        "machine": machine_info(),
        "settings": {k: v for k, v in vars(args).items() if k != "out"},
        "fuzz": fuzz,
        "summary": table,
        "goals": goals(table),
        "issue": None if args.no_issue else issue_section(args),
    }
    report["seconds"] = time.perf_counter() - start
    out.mkdir(parents=True, exist_ok=True)
    (out / "post_training_fuzz.json").write_text(json.dumps(report, indent=1, default=str) + "\n")
    (out / "post_training_fuzz.md").write_text(markdown(report))
    plot(table, out / "post_training_fuzz.png")
    print(markdown(report))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
