"""Command-line entry point: ``zigprune analyze`` prints a model's zero-invariant groups."""

from __future__ import annotations

import argparse
import copy
import sys
import time

import torch

from . import analyze, count, models
from .errors import ZigpruneError


def _analyze(args: argparse.Namespace) -> int:
    try:
        model = models.create(args.model).eval()
    except KeyError as err:
        print(f"zigprune: {err.args[0]}", file=sys.stderr)
        return 2
    inputs = models.example_input(args.model, batch=args.batch)
    start = time.perf_counter()
    space = analyze(model, inputs, check=not args.no_check)
    seconds = time.perf_counter() - start
    print(space.summary(max_rows=args.max_rows))
    print(f"\nanalysed in {seconds:.2f} s")
    if space.num_groups and args.demo_fraction > 0:
        _demo(model, inputs, args.demo_fraction, args.seed)
    return 0


def _demo(model: torch.nn.Module, inputs: torch.Tensor, fraction: float, seed: int) -> None:
    """Zero a random fraction of groups in a copy, construct, and show that outputs are unchanged."""
    trial = copy.deepcopy(model)
    space = analyze(trial, inputs, check=False)
    chosen = torch.randperm(space.num_groups, generator=torch.Generator().manual_seed(seed))
    space.zero_(chosen[: int(fraction * space.num_groups)])
    slim = space.construct()
    with torch.no_grad():
        diff = (trial(inputs) - slim(inputs)).abs().max().item()
    before, after = count(trial, inputs), count(slim, inputs)
    print(
        f"\nzeroed {fraction:.0%} of groups at random and built the slim model (max |Δ output| = {diff:.2e}):"
    )
    for key in ("params", "macs"):
        ratio = before[key] / max(after[key], 1)
        print(f"  {key:<6} {before[key]:>14,} -> {after[key]:>14,}  ({ratio:.2f}x fewer)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="zigprune",
        description="Train a PyTorch model once and get a physically smaller model with the same outputs.",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser(
        "analyze",
        help="print a model's zero-invariant groups: families, widths, MACs share, and why some cannot go",
        description="Trace a zoo model, list its zero-invariant group families, and demonstrate an exact "
        "construction of a slim model from randomly zeroed groups.",
    )
    p.add_argument("--model", default="resnet20", help=f"zoo model ({', '.join(models.names())})")
    p.add_argument("--batch", type=int, default=2, help="batch size of the example input")
    p.add_argument("--max-rows", type=int, default=40, help="families to list")
    p.add_argument("--no-check", action="store_true", help="skip the construction check during analysis")
    p.add_argument(
        "--demo-fraction", type=float, default=0.5, help="share of groups to zero in the demo (0: skip)"
    )
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=_analyze)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except ZigpruneError as err:
        print(f"zigprune: {err}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
