"""``zigprune eval RUN_DIR``: prints what :func:`zigprune.runs.evaluate_run.evaluate_run` measures."""

from __future__ import annotations

import argparse
from typing import Any

from ..runs.evaluate_run import evaluate_run
from ..runs.options import positive_int
from .args import add_trust


def add_eval(sub: Any) -> None:
    p = sub.add_parser(
        "eval",
        help="accuracy of a run's slim model on a test split (text: how closely it follows the dense one)",
        description="Load a run's slim model (checked against its saved outputs) and evaluate it.",
    )
    p.add_argument("run_dir", help="a run directory written by zigprune compress (or zp.save)")
    add_trust(p)
    p.add_argument("--data", help="dataset (default: the run's own, with its --data-dir and --subset)")
    p.add_argument("--data-dir", help="folder of the dataset's files")
    p.add_argument(
        "--subset", type=positive_int, help="evaluate on a share matching this many training samples"
    )
    p.add_argument("--batch-size", type=positive_int, default=512)
    p.set_defaults(func=_eval)


def _eval(args: argparse.Namespace) -> int:
    found = evaluate_run(
        args.run_dir,
        data_name=args.data,
        data_dir=args.data_dir,
        subset=args.subset,
        batch_size=args.batch_size,
        factory=args.factory,
        trust_factory=args.trust_factory,
    )
    print(found.describe())
    return 0
