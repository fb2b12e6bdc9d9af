"""Command-line entry point: ``zigprune compress | analyze | eval | export | report | bench``."""

from __future__ import annotations

import argparse
import copy
import json
import shlex
import shutil
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import torch

from . import compress as run
from . import data, io, models
from .bench.command import add_subcommand as add_bench
from .compress.rundir import METRICS, ONNX
from .core.selection import TARGET_HELP
from .errors import ConfigError, DataError, ModelError, OptimizerError, ZigpruneError
from .io.onnx import quiet_onnx
from .measure.count import count
from .measure.latency import LatencyError
from .models.spec import kind_of, resolve

USAGE_ERRORS = (
    ModelError,
    DataError,
    ConfigError,
    OptimizerError,
    run.TargetError,
    run.RunDirError,
    LatencyError,
)
INTERRUPTED = 130
SPEC_FORMS = "path/to/file.py:factory, package.module:factory or hf:PATH"


def _known(text: str) -> str:
    """``text`` itself, unless it is an unknown zoo name: then an error listing the valid ones."""
    if kind_of(text.strip()) == "zoo" and text.strip() not in models.names():
        raise ModelError(f"unknown model {text!r}; valid names: {', '.join(models.names())}; or {SPEC_FORMS}")
    return text


# -- analyze -----------------------------------------------------------------------------------------------


def _analyze(args: argparse.Namespace) -> int:
    from .core.analysis import analyze

    spec = resolve(_known(args.model), **args.model_kwargs)
    if spec.kind in ("file", "module") and args.input_shape is None:
        raise ModelError(
            f"{spec.text!r} is a factory: pass --input-shape, the shape of one sample (e.g. 3,32,32)"
        )
    model = spec.build().eval()
    inputs = spec.example_inputs(args.batch, args.input_shape)
    start = time.perf_counter()
    space = analyze(model, inputs, check=not args.no_check)
    seconds = time.perf_counter() - start
    print(space.summary(max_rows=args.max_rows))
    print(f"\nanalysed in {seconds:.2f} s")
    if space.num_groups and args.demo_fraction > 0:
        _demo(model, inputs, args.demo_fraction, args.seed)
    return 0


def _demo(model: torch.nn.Module, inputs: Any, fraction: float, seed: int) -> None:
    """Zero a random fraction of groups in a copy, construct, and show that outputs are unchanged."""
    from .core.analysis import analyze
    from .core.construct import outputs
    from .core.trace import as_inputs

    trial = copy.deepcopy(model)
    space = analyze(trial, inputs, check=False)
    chosen = torch.randperm(space.num_groups, generator=torch.Generator().manual_seed(seed))
    space.zero_(chosen[: int(fraction * space.num_groups)])
    slim = space.construct()
    packed = as_inputs(inputs, trial)
    diff = max((a - b).abs().max().item() for a, b in zip(outputs(trial, packed), outputs(slim, packed)))
    before, after = count(trial, inputs), count(slim, inputs)
    print(
        f"\nzeroed {fraction:.0%} of groups at random and built the slim model (max |Δ output| = {diff:.2e}):"
    )
    for key in ("params", "macs"):
        ratio = before[key] / max(after[key], 1)
        print(f"  {key:<6} {before[key]:>14,} -> {after[key]:>14,}  ({ratio:.2f}x fewer)")


# -- compress ----------------------------------------------------------------------------------------------


def _compress(args: argparse.Namespace) -> int:
    explicit = {f: getattr(args, f) for f in run.Config.__dataclass_fields__ if getattr(args, f) is not None}
    config = run.Config(**explicit)
    _known(config.model)
    out = Path(args.out) if args.out else run.default_out(config)
    if args.resume:
        saved = run.check_dir(out, resume=True, force=args.force)
        changed = [f"--{k.replace('_', '-')} (saved: {getattr(saved, k)!r})" for k, v in explicit.items()
                   if getattr(saved, k) != v]  # fmt: skip
        if changed:
            raise run.RunDirError(f"--resume continues the run saved in {out}; drop {', '.join(changed)}")
    command = shlex.join(["zigprune", *args.argv])
    progress = not args.no_progress
    metrics = run.compress(
        config,
        out,
        resume=args.resume,
        force=args.force,
        progress=progress,
        threads=args.threads,
        command=command,
        trust_factory=args.trust_factory,
    )
    from .compress.report import table

    print(f"\n{metrics['config']['model']} on {metrics['config']['data']}: run saved in {out}\n")
    print(table(metrics))
    seconds = metrics["seconds"]
    print(f"\nfinished in {seconds['total']:.1f} s; report: {out / 'report.md'}")
    return 0


# -- eval / export / report --------------------------------------------------------------------------------


def _add_trust(p: argparse.ArgumentParser) -> None:
    """--factory / --trust-factory: the only ways a run folder that names a factory gets it run."""
    p.add_argument("--factory", metavar="SPEC", help="build the model with this file.py:fn or module:fn")
    p.add_argument(
        "--trust-factory", action="store_true", help="run the factory the run folder names (trusted folders)"
    )


def _load(args: argparse.Namespace) -> torch.nn.Module:
    return io.load(Path(args.run_dir), factory=args.factory, trust_factory=args.trust_factory)


def _eval(args: argparse.Namespace) -> int:
    from .training import evaluate

    directory = Path(args.run_dir)
    slim = _load(args)
    recorded = io.read_plan(directory)["metadata"]
    name = args.data or recorded.get("data")
    if not name:
        raise DataError(f"{directory} does not record its dataset; pass --data ({', '.join(data.names())})")
    same = args.data is None
    data_dir = args.data_dir or (recorded.get("data_dir") if same else None)
    subset = args.subset if args.subset is not None else (recorded.get("subset") if same else None)
    dataset = data.load(name, data_dir, subset=subset)
    metrics = evaluate(slim, dataset.test, batch_size=args.batch_size)
    params = sum(p.numel() for p in slim.parameters())
    print(
        f"{directory}: accuracy {metrics.accuracy:.2%}, loss {metrics.loss:.4f} on {metrics.count} test "
        f"samples of {name}; {params:,} params"
    )
    return 0


def _export(args: argparse.Namespace) -> int:
    directory = Path(args.run_dir)
    slim = _load(args)
    inputs = io.make_inputs(io.read_plan(directory)["inputs"])
    with quiet_onnx():
        path = io.export_onnx(slim, inputs, Path(args.output) if args.output else directory / ONNX)
    print(f"wrote {path} (checked in ONNX Runtime against PyTorch)")
    return 0


def _report(args: argparse.Namespace) -> int:
    from .compress.report import render_dir, table

    path = render_dir(args.run_dir)
    print(table(json.loads((Path(args.run_dir) / METRICS).read_text(encoding="utf-8"))))
    print(f"\nwrote {path}")
    return 0


# -- parser ------------------------------------------------------------------------------------------------


def _positive_int(text: str) -> int:
    """An argparse type: a whole number of at least 1."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, not {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a number of at least 1, not {value}")
    return value


def _json_object(text: str) -> dict[str, Any]:
    try:
        value = json.loads(text)
    except ValueError as err:
        raise argparse.ArgumentTypeError(f"not JSON: {err}") from None
    if not isinstance(value, dict):
        raise argparse.ArgumentTypeError("give a JSON object, e.g. '{\"width\": 32}'")
    return value


def _shape(text: str) -> tuple[int, ...]:
    try:
        return tuple(int(n) for n in text.lower().replace("x", ",").split(",") if n.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a shape like 3,32,32") from None


def _wrap(text: str) -> str:
    """``text`` filled to the terminal's width (the compress help keeps its own line breaks)."""
    return textwrap.fill(text, width=max(40, min(100, shutil.get_terminal_size().columns - 2)))


def _add_compress(sub: Any) -> None:
    d = run.Config()
    p = sub.add_parser(
        "compress",
        help="train once, build the slim model, measure it and save a run directory",
        description=_wrap(
            "Train a model once with a group-sparse optimizer (HESSO by default), build the physically "
            "smaller model, check it gives the same outputs, measure params, MACs and latency against the "
            "dense model, and save everything (weights, plan, ONNX, metrics, report with plots) in a run "
            "directory. With no arguments: digits_cnn on scikit-learn's digits, at least 2x fewer MACs with "
            "widths kept multiples of 8, in under a minute."
        ),
        epilog="examples:\n  zigprune compress\n  zigprune compress --model resnet20 --data fashion-mnist "
        "--target macs=2.5x --epochs 15\n  zigprune compress --model my_net.py:build --data "
        "imagefolder:photos --model-kwargs '{\"width\": 32}'\n  zigprune compress --out runs/x --resume",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    g = p.add_argument_group("what to compress")
    g.add_argument("--model", metavar="SPEC", help=f"zoo name ({d.model} default), {SPEC_FORMS}")
    g.add_argument(
        "--model-kwargs", metavar="JSON", type=_json_object, help="keyword arguments of the factory"
    )
    g.add_argument("--data", metavar="NAME", help=f"{', '.join(data.names())} (default {d.data})")
    g.add_argument(
        "--data-dir", metavar="DIR", help="folder of the dataset's files (default: its usual place)"
    )
    g.add_argument(
        "--subset", metavar="N", type=int, help="train on N random samples (and a matching test share)"
    )
    g = p.add_argument_group("how")
    g.add_argument("--optimizer", choices=sorted(run.OPTIMIZERS), help=f"default {d.optimizer}")
    g.add_argument("--target", help=f"what to remove: {TARGET_HELP}; default {d.target}")
    g.add_argument(
        "--round-to",
        metavar="N",
        type=int,
        help=f"keep pruned layers' widths multiples of N (default {d.round_to}; 1: any width)",
    )
    g.add_argument(
        "--cost-power",
        metavar="P",
        type=float,
        help="rank groups by importance / cost**P when choosing what to remove (cost: MACs, or time with "
        "--latency-aware): 0 by importance alone, 1 per unit of cost, so costly groups go first "
        "(default 0.5 for a macs= target with --round-to above 1: faster slim models, same accuracy; else 0)",
    )
    g.add_argument(
        "--latency-aware",
        action="store_const",
        const=True,
        help="cost = the time a removal saves, each conv/linear layer timed on this machine at batch 64 "
        "(one thread) at the widths pruning leaves; --cost-power defaults to 1 then",
    )
    g.add_argument("--epochs", metavar="N", type=int, help=f"default {d.epochs}")
    g.add_argument("--lr", type=float, help=f"peak learning rate of the cosine schedule (default {d.lr})")
    g.add_argument("--momentum", metavar="M", type=float, help=f"default {d.momentum}")
    g.add_argument("--weight-decay", metavar="WD", type=float, help=f"default {d.weight_decay}")
    g.add_argument("--batch-size", metavar="N", type=int, help=f"default {d.batch_size}")
    g.add_argument(
        "--seed", metavar="N", type=int, help=f"weights, batch order, augmentation (default {d.seed})"
    )
    g.add_argument(
        "--no-baseline",
        dest="baseline",
        action="store_const",
        const=False,
        help="skip training the dense model with plain SGD for the accuracy comparison",
    )
    g.add_argument("--no-onnx", dest="onnx", action="store_const", const=False, help="skip model.onnx")
    g.add_argument("--no-latency", dest="latency", action="store_const", const=False, help="skip timing")
    g.add_argument(
        "--latency-seconds", metavar="S", type=float, help="time each model at least S per batch size (0.5)"
    )
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
        type=_positive_int,
        help="torch threads for training (default: 1 for tiny models)",
    )
    g.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.set_defaults(func=_compress)


def build_parser() -> argparse.ArgumentParser:
    """The ``zigprune`` argument parser with all subcommands."""
    parser = argparse.ArgumentParser(
        prog="zigprune",
        description="Train a PyTorch model once and get a physically smaller model with the same outputs.",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    _add_compress(sub)
    p = sub.add_parser(
        "analyze",
        help="print a model's zero-invariant groups: families, widths, MACs share, and why some cannot go",
        description="Trace a model, list its zero-invariant group families, and demonstrate an exact "
        "construction of a slim model from randomly zeroed groups.",
    )
    p.add_argument(
        "--model", default="resnet20", help=f"zoo name ({', '.join(models.names())}) or {SPEC_FORMS}"
    )
    p.add_argument(
        "--model-kwargs", type=_json_object, default={}, help="JSON keyword arguments of the factory"
    )
    p.add_argument(
        "--input-shape", type=_shape, help="shape of one input sample, e.g. 3,32,32 (factories need it)"
    )
    p.add_argument("--batch", type=_positive_int, default=2, help="batch size of the example input")
    p.add_argument("--max-rows", type=int, default=40, help="families to list")
    p.add_argument("--no-check", action="store_true", help="skip the construction check during analysis")
    p.add_argument(
        "--demo-fraction", type=float, default=0.5, help="share of groups to zero in the demo (0: skip)"
    )
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=_analyze)

    p = sub.add_parser(
        "eval",
        help="accuracy of a run's slim model on a dataset's test split",
        description="Load a run's slim model (checked against its saved outputs) and evaluate it.",
    )
    p.add_argument("run_dir", help="a run directory written by zigprune compress (or zp.save)")
    _add_trust(p)
    p.add_argument("--data", help="dataset (default: the run's own, with its --data-dir and --subset)")
    p.add_argument("--data-dir", help="folder of the dataset's files")
    p.add_argument(
        "--subset", type=_positive_int, help="evaluate on a share matching this many training samples"
    )
    p.add_argument("--batch-size", type=_positive_int, default=512)
    p.set_defaults(func=_eval)

    p = sub.add_parser(
        "export",
        help="export a run's slim model to ONNX, checked in ONNX Runtime",
        description="Load a run's slim model and write it as ONNX with a dynamic batch dimension; the file "
        "is checked against PyTorch in ONNX Runtime.",
    )
    p.add_argument("run_dir", help="a run directory written by zigprune compress (or zp.save)")
    _add_trust(p)
    p.add_argument("--output", help="ONNX file to write (default RUN_DIR/model.onnx)")
    p.set_defaults(func=_export)

    p = sub.add_parser(
        "report",
        help="re-render a run's report.md and plots",
        description="Re-render report.md and its PNG plots from a finished run's files.",
    )
    p.add_argument("run_dir", help="a finished run directory written by zigprune compress")
    p.set_defaults(func=_report)

    add_bench(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run the command line; returns the exit status (2 for bad input, 130 when interrupted)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(argv)
    args.argv = argv
    try:
        return args.func(args)
    except run.Interrupted as err:
        print(f"\nzigprune: {err}", file=sys.stderr)
        return INTERRUPTED
    except USAGE_ERRORS as err:
        print(f"zigprune: {err}", file=sys.stderr)
        return 2
    except ZigpruneError as err:
        print(f"zigprune: {err}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
