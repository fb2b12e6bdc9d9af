"""``zigprune prune``: its sub-parser and handler (post-training pruning of a trained model)."""

from __future__ import annotations

import argparse
import shlex
from pathlib import Path
from typing import Any

from ..runs.prune_job import PruneConfig, prune_run
from ..runs.report import table
from .args import add_options, add_where, config_of, wrap

EXAMPLES = """examples:
  zigprune compress --model resnet20 --data fashion-mnist --save-dense --out runs/r20
  zigprune prune --model resnet20 --data fashion-mnist --weights runs/r20/dense.safetensors \\
      --target macs=1.5x --calibration 512
  zigprune prune --model hf:path/to/all-MiniLM-L6-v2 --data text:python-docs --target macs=1.5x"""


def add_prune(sub: Any) -> None:
    """The ``prune`` sub-parser: every ``PruneConfig`` field as a flag, plus where the run goes."""
    p = sub.add_parser(
        "prune",
        help="prune a trained model now from a few calibration samples (no training), measure and save",
        description=wrap(
            "Post-training pruning: choose the groups to remove from statistics of a few calibration "
            "samples, zero them, update the kept weights to compensate (OBS least-squares refit by "
            "default), build the slim model, check it gives the same outputs as the pruned full model, "
            "measure it against the dense model and save a run directory like zigprune compress does."
        ),
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_options(p, PruneConfig)
    add_where(p, "run directory", "runs/<model>-<data>-<method>")
    p.set_defaults(func=_prune)


def _prune(args: argparse.Namespace) -> int:
    config = config_of(args, PruneConfig)
    command = shlex.join(["zigprune", *args.argv])
    out = Path(args.out) if args.out else None
    metrics = prune_run(config, out, force=args.force, progress=not args.no_progress, command=command)
    folder = out or Path(metrics["out"])
    print(f"\n{config.model} on {config.data}, {config.method}: run saved in {folder}\n")
    print(table(metrics))
    print(f"\nfinished in {metrics['seconds']['total']:.1f} s; report: {folder / 'report.md'}")
    return 0
