"""``zigprune prune``: its sub-parser and handler (post-training pruning of a trained model)."""

from __future__ import annotations

import argparse
import shlex
from pathlib import Path
from typing import Any

from . import data
from .cli_args import SPEC_FORMS, add_limit_flags, add_measure_flags, json_object, wrap
from .compress.config import VARIANTS
from .compress.prune_job import PruneConfig, prune_run
from .compress.report import table
from .core.selection import TARGET_HELP
from .posttrain import METHODS

EXAMPLES = """examples:
  zigprune compress --model resnet20 --data fashion-mnist --save-dense --out runs/r20
  zigprune prune --model resnet20 --data fashion-mnist --weights runs/r20/dense.safetensors \\
      --target macs=1.5x --calibration 512
  zigprune prune --model hf:path/to/all-MiniLM-L6-v2 --data text:python-docs --target macs=1.5x"""


def add_prune(sub: Any) -> None:
    """The ``prune`` sub-parser: every ``PruneConfig`` field as a flag, plus where the run goes."""
    d = PruneConfig()
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
    g = p.add_argument_group("what to prune")
    g.add_argument("--model", metavar="SPEC", help=f"zoo name ({d.model} default), {SPEC_FORMS}")
    g.add_argument(
        "--model-kwargs", metavar="JSON", type=json_object, help="keyword arguments of the factory"
    )
    g.add_argument("--weights", metavar="FILE", help="the trained model's state dict (.safetensors)")
    g.add_argument(
        "--data",
        metavar="NAME",
        help=f"{', '.join(data.names())}, or text:FILE / text:python-docs for a hf: model (default {d.data})",
    )
    g.add_argument(
        "--data-dir", metavar="DIR", help="folder of the dataset's files (default: its usual place)"
    )
    g.add_argument(
        "--eval-data",
        metavar="text:FILE",
        help="text runs: measure fidelity on every line of this file, text of your own domain (default: the "
        "held-out lines of --data; a model calibrated on one kind of text can lose much more on another)",
    )
    g = p.add_argument_group("how")
    g.add_argument("--method", choices=list(METHODS), help=f"default {d.method}: " + "; ".join(
        f"{m.name}: {m.summary}" for m in METHODS.values()))  # fmt: skip
    g.add_argument("--target", help=f"what to remove: {TARGET_HELP}; default {d.target}")
    g.add_argument(
        "--calibration", metavar="N", type=int, help=f"calibration samples (default {d.calibration})"
    )
    g.add_argument(
        "--batch-size", metavar="N", type=int, help="calibration and distillation batch (text 16, images 128)"
    )
    g.add_argument(
        "--max-length", metavar="N", type=int, help=f"tokens per text line (default {d.max_length})"
    )
    g.add_argument(
        "--round-to", metavar="N", type=int, help=f"widths stay multiples of N (default {d.round_to})"
    )
    g.add_argument(
        "--cost-power",
        metavar="P",
        type=float,
        help="rank groups by score / cost**P "
        "(default 0.5 for a macs= target with --round-to above 1, else 0)",
    )
    add_limit_flags(g)
    g.add_argument(
        "--distill-epochs",
        metavar="N",
        type=int,
        help="after pruning, train the slim model N epochs to follow the dense one (default 0: none)",
    )
    g.add_argument(
        "--variant", choices=list(VARIANTS), help="distillation's update (adamw for hf:, else sgd)"
    )
    g.add_argument("--lr", type=float, help="distillation's peak learning rate (adamw 5e-5, sgd 0.01)")
    g.add_argument("--seed", metavar="N", type=int, help=f"which calibration samples (default {d.seed})")
    add_measure_flags(g)
    g = p.add_argument_group("where")
    g.add_argument("--out", metavar="DIR", help="run directory (default runs/<model>-<data>-<method>)")
    g.add_argument("--force", action="store_true", help="overwrite the run already in --out")
    g.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.set_defaults(func=_prune)


def _prune(args: argparse.Namespace) -> int:
    explicit = {
        f: getattr(args, f) for f in PruneConfig.__dataclass_fields__ if getattr(args, f, None) is not None
    }
    config = PruneConfig(**explicit)
    command = shlex.join(["zigprune", *args.argv])
    out = Path(args.out) if args.out else None
    metrics = prune_run(config, out, force=args.force, progress=not args.no_progress, command=command)
    folder = out or Path(metrics["out"])
    print(f"\n{config.model} on {config.data}, {config.method}: run saved in {folder}\n")
    print(table(metrics))
    print(f"\nfinished in {metrics['seconds']['total']:.1f} s; report: {folder / 'report.md'}")
    return 0
