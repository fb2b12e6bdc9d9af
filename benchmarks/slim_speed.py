"""Time the slim models of several run directories against their dense architecture, side by side.

Each run's report times its models at the end of its own run, under whatever load the machine had
then; on a shared machine that moves the speedup by a tenth of the MACs ratio between runs. This
script times every run's (dense, slim) pair in one process, round after round (``zigprune.measure.latency.
compare``: calls alternate, one thread), and reports the spread of the batch speedup over the MACs
reduction across rounds, how many rounds reach ``--bar``, and each round's dense time (a slow dense
model means a loaded machine). The dense model is the run's factory with fresh weights: speed does
not depend on the weight values.

``--layers`` adds a per-layer table: every convolution and linear layer of both models timed alone
on the input it gets in the model (fastest of 7 calls), with its MACs per millisecond. It tells
slow kernels (a narrow layer doing fewer MACs per ms) apart from what happens between layers.

Run from the repository root::

    PYTHONPATH=src python benchmarks/slim_speed.py RUN_DIR [RUN_DIR ...] --out DIR [--layers]
    PYTHONPATH=src python benchmarks/slim_speed.py RUN_DIR --quick      # one short round

It prints Markdown tables and, with ``--out``, writes ``slim_speed.md``, ``slim_speed.json`` and
(with matplotlib) ``slim_speed.png``, the ratio of every round against the dense model's time.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from functools import partial
from pathlib import Path
from typing import Any

import torch
from torch.utils.flop_counter import FlopCounterMode

try:
    import zigprune as zp
except ImportError:  # run from a checkout without PYTHONPATH=src
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
    import zigprune as zp
from zigprune.io import make_inputs, read_plan
from zigprune.measure import latency
from zigprune.models.spec import ModelSpec

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import command_line, machine_info

LAYER_TYPES = (torch.nn.Conv1d, torch.nn.Conv2d, torch.nn.Conv3d, torch.nn.Linear)
LAYER_REPEATS = 7


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


def summary(ratios: list[float], bar: float) -> dict[str, float]:
    """Median, p10 and p90 of the per-round ratios, and the share of rounds at ``bar`` or more."""
    cuts = statistics.quantiles(ratios, n=10, method="inclusive") if len(ratios) > 1 else ratios * 9
    return {
        "median_ratio": statistics.median(ratios),
        "p10_ratio": cuts[0],
        "p90_ratio": cuts[-1],
        "share_at_bar": sum(r >= bar for r in ratios) / len(ratios),
    }


def time_runs(
    runs: list[Path], rounds: int, batch: int, min_seconds: float, bar: float
) -> list[dict[str, Any]]:
    """Per run: its MACs reduction, every round's dense and slim median (ms) and ratio, and their summary."""
    pairs = []
    for run in runs:
        dense, example = dense_and_example(run)
        slim = zp.load(run)
        macs = zp.count(dense, example[:1])["macs"] / zp.count(slim, example[:1])["macs"]
        pairs.append((run, dense, slim, latency.make_batch(example, batch), macs))
    timed: dict[Path, list[dict[str, float]]] = {run: [] for run in runs}
    for _ in range(rounds):
        for run, dense, slim, sample, macs in pairs:
            result = latency.compare(dense, slim, sample, batch_sizes=(batch,), min_seconds=min_seconds)
            timed[run].append(
                {
                    "dense_ms": result.dense[0].median_ms,
                    "slim_ms": result.slim[0].median_ms,
                    "ratio": result.speedup[batch] / macs,
                }
            )
    rows = []
    for run, _, _, _, macs in pairs:
        ratios = [r["ratio"] for r in timed[run]]
        rows.append({"run": str(run), "macs_reduction": macs, "rounds": timed[run], **summary(ratios, bar)})
    return rows


def layer_times(model: torch.nn.Module, sample: torch.Tensor) -> dict[str, dict[str, Any]]:
    """Each conv/linear layer of ``model``: weight shape, MACs, fastest time alone on its in-model input."""
    inputs: dict[str, torch.Tensor] = {}
    handles = [
        module.register_forward_pre_hook(lambda _, args, name=name: inputs.setdefault(name, args[0]))
        for name, module in model.named_modules()
        if isinstance(module, LAYER_TYPES)
    ]
    try:
        with torch.inference_mode():
            model(sample)
    finally:
        for handle in handles:
            handle.remove()
    modules = dict(model.named_modules())
    layers = {}
    for name, x in inputs.items():
        module = modules[name]
        counter = FlopCounterMode(display=False)
        with counter, torch.inference_mode():
            module(x)
        layers[name] = {
            "weight": list(module.weight.shape),
            "input": list(x.shape),
            "macs": counter.get_total_flops() // 2,
            "ms": latency.fastest_ms(partial(module, x), LAYER_REPEATS),
        }
    return layers


def layer_report(runs: list[Path], batch: int) -> list[dict[str, Any]]:
    """Per run: both models' layer timings and the summed MACs per ms of each."""
    out = []
    for run in runs:
        dense, example = dense_and_example(run)
        sample = latency.make_batch(example, batch)
        models = {"dense": layer_times(dense, sample), "slim": layer_times(zp.load(run).eval(), sample)}
        totals = {
            kind: {
                "ms": sum(layer["ms"] for layer in layers.values()),
                "macs": sum(layer["macs"] for layer in layers.values()),
            }
            for kind, layers in models.items()
        }
        out.append({"run": str(run), "layers": models, "totals": totals})
    return out


def gmacs(macs: float, ms: float) -> str:
    return f"{macs / ms / 1e6:.1f}" if ms > 0 else "-"


def layer_table(report: dict[str, Any], batch: int) -> str:
    dense, slim = report["layers"]["dense"], report["layers"]["slim"]
    lines = [
        f"### {report['run']}: layers alone at batch {batch} (fastest of {LAYER_REPEATS}, one thread)",
        "",
        "| layer | dense in→out | dense ms | dense GMAC/s | slim in→out | slim ms | slim GMAC/s |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for name, d in dense.items():
        s = slim.get(name)
        cells = [f"{d['weight'][1]}→{d['weight'][0]}", f"{d['ms']:.2f}", gmacs(d["macs"], d["ms"])]
        if s is None:
            cells += ["removed", "", ""]
        else:
            cells += [f"{s['weight'][1]}→{s['weight'][0]}", f"{s['ms']:.2f}", gmacs(s["macs"], s["ms"])]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    t = report["totals"]
    lines.append(
        f"| **all** | | {t['dense']['ms']:.1f} | {gmacs(t['dense']['macs'], t['dense']['ms'])} | "
        f"| {t['slim']['ms']:.1f} | {gmacs(t['slim']['macs'], t['slim']['ms'])} |"
    )
    return "\n".join(lines)


def table(rows: list[dict[str, Any]], batch: int, bar: float) -> str:
    lines = [
        f"| run | MACs reduction | rounds | batch-{batch} speedup ÷ MACs ratio, median (p10–p90) "
        f"| rounds ≥ {bar:g} | dense ms per round, median (min–max) |",
        "|---|---:|---:|---|---:|---|",
    ]
    for row in rows:
        dense = [r["dense_ms"] for r in row["rounds"]]
        lines.append(
            f"| {row['run']} | {row['macs_reduction']:.2f}x | {len(dense)} | {row['median_ratio']:.2f} "
            f"({row['p10_ratio']:.2f}–{row['p90_ratio']:.2f}) | {row['share_at_bar']:.0%} "
            f"| {statistics.median(dense):.0f} ({min(dense):.0f}–{max(dense):.0f}) |"
        )
    return "\n".join(lines)


def plot(rows: list[dict[str, Any]], bar: float, batch: int, path: Path) -> bool:
    """Each round's ratio against the dense model's time, one colour per run; False without matplotlib."""
    try:
        from matplotlib.figure import Figure
    except ImportError:
        print("matplotlib is not installed: no plot written", file=sys.stderr)
        return False
    figure = Figure(figsize=(7, 4.2), layout="constrained")
    ax = figure.subplots()
    for row in rows:
        ax.plot(
            [r["dense_ms"] for r in row["rounds"]],
            [r["ratio"] for r in row["rounds"]],
            "o",
            alpha=0.7,
            label=f"{Path(row['run']).name} ({row['macs_reduction']:.2f}x fewer MACs)",
        )
    ax.axhline(bar, color="grey", linestyle="--", linewidth=1, label=f"bar {bar:g}")
    ax.set(
        xlabel=f"dense model, batch {batch}, median ms in the round (higher: busier machine)",
        ylabel="speedup ÷ MACs reduction",
        title="Slim model speed per round, side by side with its dense model",
    )
    ax.set_xscale("log")
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=8)
    figure.savefig(path, dpi=110)
    return True


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    parser = argparse.ArgumentParser(prog="slim_speed.py", description=__doc__.split("\n\n")[0])
    parser.add_argument("runs", nargs="+", type=Path, metavar="RUN_DIR", help="zigprune compress run folders")
    parser.add_argument("--rounds", type=int, default=3, help="timing rounds over all runs (default 3)")
    parser.add_argument("--batch", type=int, default=64, help="batch size timed (default 64)")
    parser.add_argument("--min-seconds", type=float, default=1.0, help="per model and round (default 1)")
    parser.add_argument("--bar", type=float, default=0.85, help="ratio counted as reached (default 0.85)")
    parser.add_argument("--layers", action="store_true", help="also time every conv/linear layer alone")
    parser.add_argument("--quick", action="store_true", help="one round of 0.05 s: a smoke test")
    parser.add_argument("--out", type=Path, help="write slim_speed.md, .json and .png here")
    args = parser.parse_args(argv)
    if args.quick:
        args.rounds, args.min_seconds = 1, 0.05
    rows = time_runs(args.runs, args.rounds, args.batch, args.min_seconds, args.bar)
    layers = layer_report(args.runs, args.batch) if args.layers else []
    text = "\n\n".join([table(rows, args.batch, args.bar), *(layer_table(r, args.batch) for r in layers)])
    print(text)
    if args.out:
        args.out.mkdir(parents=True, exist_ok=True)
        command = command_line(__file__, argv)
        report = {
            "command": command,
            "machine": machine_info(),
            "batch": args.batch,
            "bar": args.bar,
            "runs": rows,
            "layers": layers,
        }
        (args.out / "slim_speed.json").write_text(json.dumps(report, indent=2) + "\n")
        figure = (
            "\n![ratio per round](slim_speed.png)\n"
            if plot(rows, args.bar, args.batch, args.out / "slim_speed.png")
            else ""
        )
        head = f"# Slim models timed side by side\n\nCommand (from the repository root): `{command}`"
        md = f"{head}\n\n{text}\n{figure}"
        (args.out / "slim_speed.md").write_text(md)
    return 0


if __name__ == "__main__":
    sys.exit(main())
