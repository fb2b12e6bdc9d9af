"""Command-line entry point: ``zigprune compress | analyze | eval | export | report | bench``."""

from __future__ import annotations

import argparse
import copy
import json
import shlex
import signal
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch

from . import compress as run
from . import data, io, models
from .bench.command import add_subcommand as add_bench
from .cli_args import SPEC_FORMS, add_compress, add_deploy_flags, json_object, positive_int, shape
from .cli_prune import add_prune
from .compress.rundir import METRICS, ONNX
from .errors import (
    CalibrationError,
    ConfigError,
    DataError,
    DivergedError,
    ModelError,
    OptimizerError,
    ZigpruneError,
)
from .io.onnx import has_onnx, quiet_onnx
from .measure.count import count
from .measure.latency import LatencyError
from .models.spec import kind_of, resolve

USAGE_ERRORS = (
    CalibrationError,
    ModelError,
    DataError,
    ConfigError,
    OptimizerError,
    run.TargetError,
    run.RunDirError,
    LatencyError,
    DivergedError,
)
INTERRUPTED = 130
TERMINATED = 143


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
    for key, label in (("params", "params"), ("macs", "MACs per sample")):
        ratio = before[key] / max(after[key], 1)
        print(f"  {label:<15} {before[key]:>14,} -> {after[key]:>14,}  ({ratio:.2f}x fewer)")


# -- compress ----------------------------------------------------------------------------------------------


def _compress(args: argparse.Namespace) -> int:
    explicit = {f: getattr(args, f) for f in run.Config.__dataclass_fields__ if getattr(args, f) is not None}
    config = run.Config(**explicit)
    _known(config.model)
    out = Path(args.out) if args.out else run.default_out(config)
    if args.resume:
        saved = run.check_dir(out, resume=True, force=args.force)
        changed = [f"--{k.replace('_', '-')} (saved: {getattr(saved, k)!r})" for k in explicit
                   if getattr(saved, k) != getattr(config, k)]  # fmt: skip
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
    from .compress.deploy_step import deploy_lines
    from .compress.report import table

    print(f"\n{metrics['config']['model']} on {metrics['config']['data']}: run saved in {out}\n")
    print(table(metrics))
    for line in deploy_lines(metrics):
        print(line)
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
    from .compress.prune_job import text_fidelity
    from .data.text import is_text
    from .training import evaluate

    directory = Path(args.run_dir)
    slim = _load(args)
    plan = io.read_plan(directory)
    recorded = plan["metadata"]
    name = args.data or recorded.get("data")
    if not name:
        raise DataError(f"{directory} does not record its dataset; pass --data ({', '.join(data.names())})")
    same = args.data is None
    params = sum(p.numel() for p in slim.parameters())
    if is_text(name):
        own = recorded.get("data") if is_text(recorded.get("data") or "") else name
        found, evaluated = text_fidelity(
            plan["spec"]["text"], own, slim, recorded.get("max_length", 128), name
        )
        language = (
            f"perplexity {found['perplexity']:.2f}, next token as dense {found['next_token']:.1%}, "
            if "perplexity" in found
            else ""
        )
        print(
            f"{directory}: {language}cosine {found['cosine']:.4f} to the dense model, top-1 neighbour kept "
            f"{found['retrieval']:.1%} on {evaluated}; {params:,} params"
        )
        return 0
    data_dir = args.data_dir or (recorded.get("data_dir") if same else None)
    subset = args.subset if args.subset is not None else (recorded.get("subset") if same else None)
    dataset = data.load(name, data_dir, subset=subset)
    metrics = evaluate(slim, dataset.test, batch_size=args.batch_size)
    print(
        f"{directory}: accuracy {metrics.accuracy:.2%}, loss {metrics.loss:.4f} on {metrics.count} test "
        f"samples of {name}; {params:,} params"
    )
    return 0


def _export(args: argparse.Namespace) -> int:
    directory = Path(args.run_dir)
    if args.int8 or args.share_bits:
        return _deploy(args)
    slim = _load(args)
    inputs = io.make_inputs(io.read_plan(directory)["inputs"])
    with quiet_onnx():
        path = io.export_onnx(slim, inputs, Path(args.output) if args.output else directory / ONNX)
    print(f"wrote {path} (checked in ONNX Runtime against PyTorch)")
    return 0


def _deploy(args: argparse.Namespace) -> int:
    from .compress.config import check_int8_tolerance
    from .compress.deploy_run import deploy_run
    from .compress.deploy_step import deploy_lines

    if args.output:
        raise ConfigError("--output names the fp32 file; with --int8 / --share-bits the files go in RUN_DIR")
    if args.int8 and not has_onnx():
        raise ConfigError(
            "--int8 quantizes the ONNX export: pip install 'zigprune[onnx]' (onnx, onnxruntime)"
        )
    check_int8_tolerance(args.int8_tolerance)
    sections = deploy_run(
        args.run_dir,
        int8=bool(args.int8),
        int8_tolerance=args.int8_tolerance,
        share_bits=args.share_bits,
        factory=args.factory,
        trust_factory=args.trust_factory,
        progress=not args.no_progress,
        log=lambda text: print(text, file=sys.stderr),
    )
    print("\n".join(deploy_lines(sections)))
    return 0


def _report(args: argparse.Namespace) -> int:
    from .compress.report import render_dir, table

    path = render_dir(args.run_dir)
    print(table(json.loads((Path(args.run_dir) / METRICS).read_text(encoding="utf-8"))))
    print(f"\nwrote {path}")
    return 0


# -- parser ------------------------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    """The ``zigprune`` argument parser with all subcommands."""
    parser = argparse.ArgumentParser(
        prog="zigprune",
        description="Train a PyTorch model once and get a physically smaller model with the same outputs.",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    add_compress(sub, _compress)
    add_prune(sub)
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
        "--model-kwargs", type=json_object, default={}, help="JSON keyword arguments of the factory"
    )
    p.add_argument(
        "--input-shape", type=shape, help="shape of one input sample, e.g. 3,32,32 (factories need it)"
    )
    p.add_argument("--batch", type=positive_int, default=2, help="batch size of the example input")
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
        "--subset", type=positive_int, help="evaluate on a share matching this many training samples"
    )
    p.add_argument("--batch-size", type=positive_int, default=512)
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
    add_deploy_flags(p)
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
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


@contextmanager
def _sigterm_as_ctrl_c() -> Iterator[None]:
    """Turn SIGTERM into ``KeyboardInterrupt("SIGTERM")`` for the block, so that a ``kill`` in any stage
    ends like Ctrl-C, with one line saying how to go on (training defers both to a step boundary)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def stop(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt("SIGTERM")

    previous = signal.signal(signal.SIGTERM, stop)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def main(argv: list[str] | None = None) -> int:
    """Run the command line; returns the exit status (2 for bad input, 130 on Ctrl-C, 143 on SIGTERM)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(argv)
    args.argv = argv
    try:
        with _sigterm_as_ctrl_c():
            return args.func(args)
    except run.Interrupted as err:
        print(f"\nzigprune: {err}", file=sys.stderr)
        return TERMINATED if err.signal == "SIGTERM" else INTERRUPTED
    except KeyboardInterrupt as err:
        terminated = str(err) == "SIGTERM"
        print(
            f"\nzigprune: {args.command} interrupted by {'SIGTERM' if terminated else 'Ctrl-C'}",
            file=sys.stderr,
        )
        return TERMINATED if terminated else INTERRUPTED
    except USAGE_ERRORS as err:
        print(f"zigprune: {err}", file=sys.stderr)
        return 2
    except ZigpruneError as err:
        print(f"zigprune: {err}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
