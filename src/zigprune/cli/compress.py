"""``zigprune compress``: its sub-parser and handler (train once, construct, measure, save a run)."""

from __future__ import annotations

import argparse
import shlex
from pathlib import Path
from typing import Any

from .. import runs as run
from ..models.spec import check_known
from ..runs.deploy_tables import deploy_lines
from ..runs.options import positive_int
from ..runs.report import table
from .args import add_options, wrap


def add_compress(sub: Any) -> None:
    """The ``compress`` sub-parser: every ``Config`` field as a flag, plus where the run goes."""
    p = sub.add_parser(
        "compress",
        help="train once, build the slim model, measure it and save a run directory",
        description=wrap(
            "Train a model once with a group-sparse optimizer (HESSO by default), build the physically "
            "smaller model, check it gives the same outputs, measure params, MACs and latency against the "
            "dense model, and save everything (weights, plan, ONNX, metrics, report with plots) in a run "
            "directory. With no arguments: digits_cnn on scikit-learn's digits, at least 2x fewer MACs with "
            "widths kept multiples of 8, in about 35 s on 2 idle cores: 9 s training the pruned model, 8 s "
            "training the dense baseline (--no-baseline skips it), 10 s for the ONNX export and latency "
            "timing, the rest loading, analysing and reporting; a busy machine takes several times longer."
        ),
        epilog="examples:\n  zigprune compress\n  zigprune compress --model resnet20 --data fashion-mnist "
        "--target macs=2.5x --epochs 15\n  zigprune compress --model my_net.py:build --data "
        "imagefolder:photos --model-kwargs '{\"width\": 32}'\n  zigprune compress --model "
        "hf:path/to/all-MiniLM-L6-v2 --data text:python-docs --distill --target macs=1.5x\n"
        "  zigprune compress --out runs/x --resume",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_options(p, run.Config)
    g = p.add_argument_group("where")
    g.add_argument("--out", metavar="DIR", help="run directory (default runs/<model>-<data>)")
    g.add_argument("--resume", action="store_true", help="continue an interrupted run from its checkpoint")
    g.add_argument(
        "--trust-factory", action="store_true", help="with --resume: run the factory the run folder names"
    )
    g.add_argument("--force", action="store_true", help="overwrite the run already in --out")
    g.add_argument(
        "--threads",
        metavar="N",
        type=positive_int,
        help="torch threads for training (default: 1 for tiny models)",
    )
    g.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.set_defaults(func=_compress)


def _compress(args: argparse.Namespace) -> int:
    explicit = {f: getattr(args, f) for f in run.Config.__dataclass_fields__ if getattr(args, f) is not None}
    config = run.Config(**explicit)
    check_known(config.model)
    out = Path(args.out) if args.out else run.default_out(config)
    if args.resume:
        run.check_resume(out, config, explicit, force=args.force)
    metrics = run.compress(
        config,
        out,
        resume=args.resume,
        force=args.force,
        progress=not args.no_progress,
        threads=args.threads,
        command=shlex.join(["zigprune", *args.argv]),
        trust_factory=args.trust_factory,
    )
    print(f"\n{metrics['config']['model']} on {metrics['config']['data']}: run saved in {out}\n")
    print(table(metrics))
    for line in deploy_lines(metrics):
        print(line)
    print(f"\nfinished in {metrics['seconds']['total']:.1f} s; report: {out / 'report.md'}")
    return 0
