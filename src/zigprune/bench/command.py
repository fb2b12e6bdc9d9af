"""``zigprune bench``: every method at one MACs target and epoch budget, with table, plot and JSON.

Also runs as ``python -m zigprune.bench``. Finished (method, seed) runs are cached under
``OUT/runs``, so rerunning the same command after an interruption only runs what is missing.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import shlex
import sys
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

from ..core.selection import parse_number
from ..errors import TargetError, ZigpruneError
from ..io.onnx import has_onnx
from ..measure.machine import machine_info
from . import report
from .harness import DEFAULT_METHODS, Bench, Settings

DEFAULT_OUT = Path("benchmarks/results/bench")
PUBLISHED = ("benchmarks", "results")
QUICK_OUT = Path("runs/bench-quick")
SMOKE = "Smoke run (--quick): figures are not meaningful at this budget; do not compare or publish them."
STEM = "bench"
DEFAULTS = Settings()
QUICK = {"subset": 1000, "test_subset": 500, "epochs": 2, "seeds": 1, "latency_seconds": 0.1}


def _subset(given: int | None, default: int | None) -> int | None:
    """``--subset``: the default when not given, all samples for 0."""
    if given is None:
        return default
    return given or None


def _ratio(text: str) -> float:
    """``--macs``: a reduction factor, ``2.5x`` or ``2.5``, read by the targets' own number parser."""
    try:
        return parse_number(text)[0]
    except TargetError as err:
        raise argparse.ArgumentTypeError(f"expected a MACs reduction such as 2.5x, not {text!r}") from err


def _value(text: str) -> Any:
    try:
        return json.loads(text)
    except ValueError:
        return text


def parse_options(items: list[str]) -> dict[str, dict[str, Any]]:
    """``["hspg.lmbda=0.01"]`` → ``{"hspg": {"lmbda": 0.01}}``; values are parsed as JSON when they can be."""
    options: dict[str, dict[str, Any]] = {}
    for item in items:
        name, eq, value = item.partition("=")
        method, dot, key = name.partition(".")
        if not (eq and dot and method and key):
            raise ZigpruneError(f"--option {item!r} must look like METHOD.NAME=VALUE, e.g. hspg.lmbda=0.01")
        options.setdefault(method, {})[key] = _value(value)
    return options


def configure(parser: argparse.ArgumentParser) -> None:
    """Add the bench's arguments to ``parser``."""
    parser.add_argument("--model", default=DEFAULTS.model, help=f"zoo model (default {DEFAULTS.model})")
    parser.add_argument("--data", default=DEFAULTS.data, help=f"dataset name (default {DEFAULTS.data})")
    parser.add_argument("--data-dir", default=None, help="folder of the dataset files")
    parser.add_argument(
        "--macs", type=_ratio, default=DEFAULTS.macs, help="MACs reduction dense/slim, e.g. 2.5x"
    )
    parser.add_argument(
        "--epochs", type=int, default=None, help=f"total epoch budget per method (default {DEFAULTS.epochs})"
    )
    parser.add_argument("--seeds", type=int, default=None, help=f"seeds 0..N-1 (default {DEFAULTS.seeds})")
    parser.add_argument("--methods", default=",".join(DEFAULT_METHODS), help="comma-separated recipes")
    parser.add_argument(
        "--subset",
        type=int,
        default=None,
        help=f"use this many random training samples (default {DEFAULTS.subset}; 0: all)",
    )
    parser.add_argument(
        "--test-subset", type=int, default=None, help="use this many random test samples (default all)"
    )
    parser.add_argument("--batch-size", type=int, default=DEFAULTS.batch_size)
    parser.add_argument("--lr", type=float, default=DEFAULTS.lr)
    parser.add_argument("--momentum", type=float, default=DEFAULTS.momentum)
    parser.add_argument("--weight-decay", type=float, default=DEFAULTS.weight_decay)
    parser.add_argument(
        "--option", action="append", default=[], metavar="METHOD.NAME=VALUE", help="recipe hyper-parameter"
    )
    parser.add_argument(
        "--out",
        type=Path,
        default=None,
        help=f"output folder (default {DEFAULT_OUT}; with --quick {QUICK_OUT}, never the published results)",
    )
    parser.add_argument("--no-latency", action="store_true", help="skip latency measurements")
    parser.add_argument(
        "--int8",
        action="store_true",
        help="also quantize each slim model (ONNX Runtime, static int8): int8 accuracy and speedup columns",
    )
    parser.add_argument("--epoch-eval", action="store_true", help="evaluate the test set after every epoch")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")
    parser.add_argument(
        "--quick",
        action="store_true",
        help=f"smoke run: {QUICK['subset']} training and {QUICK['test_subset']} test samples, "
        f"{QUICK['epochs']} epochs, 1 seed (explicit flags win), written to {QUICK_OUT} by default",
    )
    parser.set_defaults(func=handle)


def add_subcommand(subparsers: argparse._SubParsersAction) -> None:
    """Add ``bench`` to the ``zigprune`` command line."""
    parser = subparsers.add_parser(
        "bench",
        help="compare every pruning method at one MACs target and epoch budget",
        description=__doc__.splitlines()[0],
    )
    configure(parser)


def settings_from(args: argparse.Namespace) -> Settings:
    """The ``Settings`` the parsed arguments ask for (``--quick`` fills what was not given)."""
    quick = QUICK if args.quick else {}
    if args.int8 and not has_onnx():
        raise ZigpruneError("--int8 quantizes with ONNX Runtime: pip install 'zigprune[onnx]'")
    return Settings(
        model=args.model,
        data=args.data,
        data_dir=args.data_dir,
        macs=args.macs,
        epochs=args.epochs or quick.get("epochs", DEFAULTS.epochs),
        seeds=args.seeds or quick.get("seeds", DEFAULTS.seeds),
        methods=[m.strip() for m in args.methods.split(",") if m.strip()],
        subset=_subset(args.subset, quick.get("subset", DEFAULTS.subset)),
        test_subset=args.test_subset or quick.get("test_subset"),
        batch_size=args.batch_size,
        lr=args.lr,
        momentum=args.momentum,
        weight_decay=args.weight_decay,
        options=parse_options(args.option),
        latency=not args.no_latency,
        latency_seconds=quick.get("latency_seconds", 0.5),
        epoch_eval=args.epoch_eval,
        progress=not args.no_progress,
        quick=args.quick,
        int8=args.int8,
    )


def out_dir(args: argparse.Namespace) -> Path:
    """``--out``, or its default (``QUICK_OUT`` for ``--quick``): never the published results for ``--quick``.

    A quick run into a folder under ``benchmarks/results`` is refused, so a smoke run cannot overwrite
    the committed tables.
    """
    if not args.quick:
        return args.out or DEFAULT_OUT
    out = args.out or QUICK_OUT
    parts = out.resolve().parts
    if any(parts[i : i + len(PUBLISHED)] == PUBLISHED for i in range(len(parts))):
        raise ZigpruneError(
            f"--quick is a smoke run and does not write into {'/'.join(PUBLISHED)} (published results): "
            f"drop --out to write to {QUICK_OUT}, pass another --out, or drop --quick"
        )
    return out


def handle(args: argparse.Namespace, argv: list[str] | None = None) -> int:
    """Run the bench; 0 when every run succeeded, 1 when some failed (their errors are in the JSON).

    ``argv`` are the bench's own arguments; without them the ``zigprune`` command line (``args.argv``).
    """
    settings = settings_from(args)
    out = out_dir(args)
    started = time.perf_counter()
    bench = Bench(settings, out, log=lambda line: print(line, file=sys.stderr, flush=True))
    records = bench.records()
    rows = report.summarise(records, settings.methods)
    words = ["zigprune", "bench", *argv] if argv is not None else ["zigprune", *getattr(args, "argv", [])]
    command = shlex.join(words)
    verdict = report.goal(rows, settings.macs)
    machine = machine_info()
    title = f"{settings.model} on {settings.data}, {settings.macs:g}× fewer MACs, {settings.epochs} epochs"
    results = {
        "smoke_run": settings.quick,
        "command": command,
        "settings": asdict(settings),
        "machine": machine,
        "goal": verdict,
        "summary": [asdict(r) for r in rows],
        "runs": [asdict(r) for r in records],
        "total_s": time.perf_counter() - started,
    }
    markdown = _markdown(settings, rows, results, title)
    plot = report.plot(rows, f"{title} (smoke run)" if settings.quick else title)
    paths = report.write(out, STEM, markdown, json.dumps(results, indent=1), plot)
    if settings.quick:
        print(SMOKE)
    print(report.table(rows, settings.macs))
    print(f"\n{verdict}")
    print(f"wrote {', '.join(map(str, paths))}", file=sys.stderr)
    return 1 if any(r.error for r in records) else 0


def _markdown(settings: Settings, rows: list[report.Row], results: dict[str, Any], title: str) -> str:
    """``bench.md``: title, the smoke-run label of ``--quick``, command, machine, table, verdict, legend."""
    machine = results["machine"]
    smoke = [f"**{SMOKE}**", ""] if settings.quick else []
    lines = [
        f"# Bench: {title}",
        "",
        *smoke,
        f"Command: `{results['command']}`",
        "",
        f"Date: {dt.datetime.now(dt.timezone.utc).isoformat(timespec='seconds')}. Machine: "
        f"{machine['platform']}, {machine['cpu_count']} CPUs, torch {machine['torch']}, "
        f"Torch-Pruning {machine['torch_pruning']}, zigprune {machine['zigprune']}.",
        "",
        report.table(rows, settings.macs),
        "",
        results["goal"],
        "",
        "Accuracy: last-epoch test accuracy of the final model, mean ± sd over seeds. MACs and params: "
        "`zp.count` on the constructed model, per sample (* theoretical: unstructured zeros, counted as if "
        "sparse kernels skipped them); ⚠ marks a method that missed the MACs target. Speedup: dense / final "
        "model latency (eager PyTorch, 1 thread, interleaved). Wall time: the recipe's training, "
        "analysis, pruning and construction, evaluation excluded. Every method spends the same epoch "
        "budget (scratch-b excepted), from the same initial weights per seed.",
    ]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    """``python -m zigprune.bench``: parse ``argv`` and run the bench."""
    parser = argparse.ArgumentParser(prog="zigprune bench", description=__doc__.splitlines()[0])
    configure(parser)
    argv = sys.argv[1:] if argv is None else argv
    args = parser.parse_args(argv)
    try:
        return handle(args, argv)
    except ZigpruneError as err:
        print(f"zigprune: {err}", file=sys.stderr)
        return 2
