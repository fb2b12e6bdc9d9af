"""The ``gnn-rl`` agent's transfer (issue 30): the agent trained on one model at a MACs budget, then
applied without training to other models trained on the same data, beside ``dp``, ``global`` and
``uniform`` on each, post-training with OBS refit as ``search.py`` runs them (its settings: 512
calibration images, widths multiples of 8, ``global`` by score / cost^0.5, 24 evaluations).

ResNet-20 on Fashion-MNIST (the search benchmark's dense model) trains the agent; ResNet-32 and the
zoo's MobileNetV2, trained the same way (4 epochs on 20,000 images, cached), receive it. ``--quick``:
the digits CNN trains it, the digits MLP receives it, a smoke run written under ``runs/``. Run from
the repository root::

    PYTHONPATH=src python benchmarks/search_transfer.py     # writes benchmarks/results/search_transfer
    PYTHONPATH=src python benchmarks/search_transfer.py --quick
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import REPO, command_line, goal_line, machine_info
from post_training import trained_dense
from search import strategy_rows

from zigprune import data
from zigprune.training import evaluate, sample_inputs

DEFAULT_OUT = REPO / "benchmarks" / "results" / "search_transfer"
QUICK_OUT = REPO / "runs" / "bench-quick" / "search_transfer"
SOURCE, TARGETS = "resnet20", ("resnet32", "mobilenetv2")
QUICK_SOURCE, QUICK_TARGETS = "digits_cnn", ("mlp",)
BUDGET = "macs=0.5"
COMPARED = ("gnn-rl", "dp", "global", "uniform")


def transfer_rows(args: argparse.Namespace) -> dict[str, Any]:
    """Per model (the source first), the accuracy of ``gnn-rl`` (trained there, or transferred) and
    of the compared strategies at ``BUDGET``."""
    source, targets = (QUICK_SOURCE, QUICK_TARGETS) if args.quick else (SOURCE, TARGETS)
    targets = args.targets or targets
    dataset = data.load("digits" if args.quick else "fashion-mnist", subset=args.subset)
    calibration = sample_inputs(dataset.train, args.calibration, seed=0, batch_size=64)
    example = calibration[0][:2]

    def measure(space: Any, policy: Any) -> dict[str, float]:
        return {"accuracy": evaluate(space.model, dataset.test).accuracy}

    rows = []
    with tempfile.TemporaryDirectory(prefix="zigprune-transfer-") as folder:
        agent = Path(folder) / "gnn-rl.safetensors"
        for name in (source, *targets):
            dense = trained_dense(name, dataset, args.epochs, args.subset, not args.no_progress)
            accuracy = evaluate(dense, dataset.test).accuracy
            role = "trained here" if name == source else f"trained on {source}"
            found = strategy_rows(dense, example, calibration, BUDGET, args, measure, COMPARED, agent)
            rows += [{"model": name, "dense": accuracy, "agent": role} | row for row in found]
    return {"source": source, "targets": list(targets), "budget": BUDGET, "data": dataset.name, "rows": rows}


def transfer_goals(transfer: dict[str, Any]) -> list[str]:
    """On every model the agent was not trained on: gnn-rl ahead of global and uniform, and within
    0.3 pt of dp or better."""
    lines = []
    for model in transfer["targets"]:
        by = {r["strategy"]: r for r in transfer["rows"] if r["model"] == model and "accuracy" in r}
        if not set(COMPARED) <= by.keys():
            lines.append(f"- {model}: a strategy could not meet the budget: nothing to compare")
            continue
        ours, baseline = by["gnn-rl"]["accuracy"], max(by["global"]["accuracy"], by["uniform"]["accuracy"])
        gap = (by["dp"]["accuracy"] - ours) * 100
        lines.append(
            goal_line(f"{model}: transferred gnn-rl {ours:.2%} beats global and uniform", ours > baseline)
        )
        lines.append(
            goal_line(f"{model}: transferred gnn-rl within 0.3 pt of dp (gap {gap:+.2f} pt)", gap <= 0.3)
        )
    return lines


def markdown(report: dict[str, Any]) -> str:
    """The report as a table, a row per model and strategy, then the goals."""
    smoke = ["**Smoke run (--quick): not a published result.**", ""] if report["settings"]["quick"] else []
    out = [
        f"# Transfer: the gnn-rl agent trained on {report['source']}, applied without training",
        "",
        *smoke,
        f"Command (from the repository root): `{report['command']}`",
        "",
        f"Machine: {report['machine']['summary']}. Total wall time {report['seconds']:.0f} s.",
        "",
        f"{report['data']}, {report['budget']}, post-training with OBS refit; the agent's file is "
        f"written by the {report['source']} search and read by the others (its greedy walk, then the "
        "units the budget still allows given back; no candidate measured).",
        "",
        "| model | dense | strategy | agent | accuracy | vs dense (pt) | MACs left | search s |",
        "|---|---:|---|---|---:|---:|---:|---:|",
    ]
    for r in report["rows"]:
        agent = r["agent"] if r["strategy"] == "gnn-rl" else ""
        if "unreachable" in r:
            out.append(
                f"| {r['model']} | {r['dense']:.2%} | {r['strategy']} | {agent} | {r['unreachable']} |||"
            )
            continue
        out.append(
            f"| {r['model']} | {r['dense']:.2%} | {r['strategy']} | {agent} | {r['accuracy']:.2%} | "
            f"{(r['accuracy'] - r['dense']) * 100:+.2f} | {r['macs_share']:.1%} | {r['seconds']:.1f} |"
        )
    return "\n".join([*out, "", *report["goals"], ""])


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    parser = argparse.ArgumentParser(prog="search_transfer.py", description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="the digits CNN to the digits MLP: a smoke run")
    parser.add_argument(
        "--targets", nargs="+", default=None, help=f"models the agent goes to (default {' '.join(TARGETS)})"
    )
    parser.add_argument("--evaluations", type=int, default=None, help="gnn-rl's training (24; 2 quick)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")
    parser.add_argument("--out", type=Path, default=None, help=f"output folder (default {DEFAULT_OUT})")
    args = parser.parse_args(argv)
    args.epochs, args.subset = (2, None) if args.quick else (4, 20000)
    args.calibration = 128 if args.quick else 512
    args.evaluations = args.evaluations if args.evaluations is not None else (2 if args.quick else 24)
    args.evaluation_samples, args.latency_seconds = 128, 0.5
    out = args.out or (QUICK_OUT if args.quick else DEFAULT_OUT)
    start = time.perf_counter()
    report = {"command": command_line(__file__, argv), "machine": machine_info()}
    report["settings"] = {
        "quick": args.quick,
        "calibration": args.calibration,
        "evaluations": args.evaluations,
    }
    report |= transfer_rows(args)
    report["goals"] = transfer_goals(report)
    report["seconds"] = time.perf_counter() - start
    out.mkdir(parents=True, exist_ok=True)
    (out / "search_transfer.json").write_text(json.dumps(report, indent=1) + "\n")
    written = markdown(report)
    (out / "search_transfer.md").write_text(written)
    print(written)
    return 0


if __name__ == "__main__":
    sys.exit(main())
