"""Time the slim models of several run directories against their dense architecture, side by side.

Each run's report times its models at the end of its own run, under whatever load the machine had
then; on a shared machine that moves the speedup by several hundredths between runs. This script
times every run's (dense, slim) pair in one process, round after round (``zigprune.latency.compare``:
calls alternate, one thread), so the runs can be ranked against each other. The dense model is the
run's factory with fresh weights: speed does not depend on the weight values.

Run from the repository root::

    PYTHONPATH=src python benchmarks/slim_speed.py RUN_DIR [RUN_DIR ...] --out DIR
    PYTHONPATH=src python benchmarks/slim_speed.py RUN_DIR --quick      # one short round

It prints a Markdown table (MACs reduction, speedup / MACs ratio per round and their mean) and, with
``--out``, writes ``slim_speed.md`` and ``slim_speed.json`` there.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path
from typing import Any

import torch

try:
    import zigprune as zp
except ImportError:  # run from a checkout without PYTHONPATH=src
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
    import zigprune as zp
from zigprune import latency
from zigprune.io import make_inputs, read_plan
from zigprune.models.spec import ModelSpec

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import command_line, machine_info


def dense_and_example(run_dir: Path) -> tuple[torch.nn.Module, torch.Tensor]:
    """The run's architecture rebuilt from its factory, and its recorded example input tensor."""
    plan = read_plan(run_dir)
    spec = plan["spec"]
    torch.manual_seed(0)
    dense = ModelSpec(str(spec["text"]), dict(spec.get("kwargs") or {})).build().eval()
    tensors = make_inputs(plan["inputs"]).tensors()
    if len(tensors) != 1:
        raise SystemExit(f"{run_dir}: timing needs a model with one tensor input")
    return dense, tensors[0]


def time_runs(runs: list[Path], rounds: int, batch: int, min_seconds: float) -> list[dict[str, Any]]:
    pairs = []
    for run in runs:
        dense, example = dense_and_example(run)
        slim = zp.load(run)
        macs = zp.count(dense, example[:1])["macs"] / zp.count(slim, example[:1])["macs"]
        pairs.append((run, dense, slim, latency.make_batch(example, batch), macs))
    ratios: dict[Path, list[float]] = {run: [] for run in runs}
    for _ in range(rounds):
        for run, dense, slim, sample, macs in pairs:
            timed = latency.compare(dense, slim, sample, batch_sizes=(batch,), min_seconds=min_seconds)
            ratios[run].append(timed.speedup[batch] / macs)
    return [
        {
            "run": str(run),
            "macs_reduction": macs,
            "ratios": ratios[run],
            "mean_ratio": statistics.fmean(ratios[run]),
        }
        for run, _, _, _, macs in pairs
    ]


def table(rows: list[dict[str, Any]], batch: int) -> str:
    lines = [
        f"| run | MACs reduction | batch-{batch} speedup / MACs ratio, per round | mean |",
        "|---|---:|---|---:|",
    ]
    for row in rows:
        rounds = ", ".join(f"{r:.2f}" for r in row["ratios"])
        lines.append(f"| {row['run']} | {row['macs_reduction']:.2f}x | {rounds} | {row['mean_ratio']:.2f} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    parser = argparse.ArgumentParser(prog="slim_speed.py", description=__doc__.split("\n\n")[0])
    parser.add_argument("runs", nargs="+", type=Path, metavar="RUN_DIR", help="zigprune compress run folders")
    parser.add_argument("--rounds", type=int, default=3, help="timing rounds over all runs (default 3)")
    parser.add_argument("--batch", type=int, default=64, help="batch size timed (default 64)")
    parser.add_argument("--min-seconds", type=float, default=1.0, help="per model and round (default 1)")
    parser.add_argument("--quick", action="store_true", help="one round of 0.05 s: a smoke test")
    parser.add_argument("--out", type=Path, help="write slim_speed.md and slim_speed.json here")
    args = parser.parse_args(argv)
    if args.quick:
        args.rounds, args.min_seconds = 1, 0.05
    rows = time_runs(args.runs, args.rounds, args.batch, args.min_seconds)
    text = table(rows, args.batch)
    print(text)
    if args.out:
        args.out.mkdir(parents=True, exist_ok=True)
        command = command_line(__file__, argv)
        report = {"command": command, "machine": machine_info(), "batch": args.batch, "runs": rows}
        (args.out / "slim_speed.json").write_text(json.dumps(report, indent=2) + "\n")
        md = (
            f"# Slim models timed side by side\n\nCommand (from the repository root): `{command}`\n\n{text}\n"
        )
        (args.out / "slim_speed.md").write_text(md)
    return 0


if __name__ == "__main__":
    sys.exit(main())
