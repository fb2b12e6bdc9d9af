"""``zigprune search``: its sub-parser and handler (the widths per layer for a budget, every strategy
side by side)."""

from __future__ import annotations

import argparse
import shlex
from pathlib import Path
from typing import Any

from ..runs.search_job import POLICY, SearchConfig, search_run, table
from .args import add_options, add_where, config_of, wrap

EXAMPLES = """examples:
  zigprune compress --model resnet20 --data fashion-mnist --save-dense --out runs/r20
  zigprune search --weights runs/r20/dense.safetensors --budget macs=0.5 --out runs/r20-search
  zigprune search --weights runs/r20/dense.safetensors --budget latency=0.5@onnxruntime --latency-batch 64
  zigprune search --weights runs/r20/dense.safetensors --budget macs=0.4,0.5,0.6 --out runs/r20-front
  zigprune prune --weights runs/r20/dense.safetensors --policy runs/r20-search/policy.json"""


def add_search(sub: Any) -> None:
    """The ``search`` sub-parser: every ``SearchConfig`` field as a flag, plus where the results go."""
    p = sub.add_parser(
        "search",
        help="choose every layer's width for a budget (a policy), each strategy applied and measured",
        description=wrap(
            "Policy search: score the groups of a trained model once on calibration samples, build an "
            "error database per layer and width, and let each strategy choose the widths that meet "
            "--budget (dp: dynamic programming on the summed error; global: one ranking, as prune "
            "does; uniform: one share everywhere; evolution: the best of those mutated, every "
            "candidate refit and measured on calibration samples; bo: optuna's TPE, measured the "
            "same way; amc: AMC's DDPG agent, rewarded by that measurement; galen: Galen's joint "
            "agent, which on onnxruntime-int8 also picks the layers kept fp32; gnn-rl: AMC's agent "
            "reading a graph network's embedding of the model, which --gnn-agent FILE keeps and "
            "applies to other models). A latency budget "
            "(latency=0.5@onnxruntime) times every layer at its candidate widths on that runtime "
            "(cached per machine) and each result against the dense model; on onnxruntime-int8 "
            "some layers may stay fp32 (--no-mixed: none). Several budgets (macs=0.4,0.5,0.6) draw "
            "a quality-vs-budget front. Each policy is applied post-training and measured; the "
            "--strategy one is saved as policy.json for zigprune prune --policy."
        ),
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_options(p, SearchConfig)
    add_where(p, "results directory", "runs/<model>-<data>-search")
    p.set_defaults(func=_search)


def _search(args: argparse.Namespace) -> int:
    config = config_of(args, SearchConfig)
    command = shlex.join(["zigprune", *args.argv])
    results = search_run(config, args.out, force=args.force, progress=not args.no_progress, command=command)
    folder = Path(results["out"])
    print(f"\n{config.model} on {config.data}, budget {config.budget}: results in {folder}\n")
    print(table(results))
    weights = f" --weights {config.weights}" if config.weights else ""
    apply = f"zigprune prune --model {config.model} --data {config.data}{weights} --policy {folder / POLICY}"
    print(f"\npolicy ({config.strategy}): {folder / POLICY}; apply it with {apply}")
    return 0
