"""``zigprune export RUN_DIR``: the slim model as ONNX, and with ``--int8`` / ``--share-bits`` the
deployment files, their measurements and verdicts."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from ..errors import ConfigError
from ..io.inputs import make_inputs
from ..io.onnx import export_onnx, quiet_onnx
from ..io.plan import read_plan
from ..io.saved import load
from ..runs.deploy_tables import deploy_lines
from ..runs.export_job import deploy_run
from ..runs.options import Deployment, Timing
from ..runs.rundir import ONNX
from .args import add_options, add_trust


def add_export(sub: Any) -> None:
    p = sub.add_parser(
        "export",
        help="export a run's slim model to ONNX, checked in ONNX Runtime",
        description="Load a run's slim model and write it as ONNX with a dynamic batch dimension; the file "
        "is checked against PyTorch in ONNX Runtime.",
    )
    p.add_argument("run_dir", help="a run directory written by zigprune compress (or zp.save)")
    add_trust(p)
    p.add_argument("--output", help="ONNX file to write (default RUN_DIR/model.onnx)")
    add_options(p, Deployment, Timing)
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.set_defaults(func=_export)


def _export(args: argparse.Namespace) -> int:
    directory = Path(args.run_dir)
    if args.int8 or args.share_bits:
        return _deploy(args)
    slim = load(directory, factory=args.factory, trust_factory=args.trust_factory)
    inputs = make_inputs(read_plan(directory)["inputs"])
    with quiet_onnx():
        path = export_onnx(slim, inputs, Path(args.output) if args.output else directory / ONNX)
    print(f"wrote {path} (checked in ONNX Runtime against PyTorch)")
    return 0


def _deploy(args: argparse.Namespace) -> int:
    if args.output:
        raise ConfigError("--output names the fp32 file; with --int8 / --share-bits the files go in RUN_DIR")
    sections = deploy_run(
        args.run_dir,
        int8=bool(args.int8),
        int8_tolerance=args.int8_tolerance,
        share_bits=args.share_bits,
        latency_seconds=Timing().latency_seconds if args.latency_seconds is None else args.latency_seconds,
        factory=args.factory,
        trust_factory=args.trust_factory,
        progress=not args.no_progress,
        log=lambda text: print(text, file=sys.stderr),
    )
    print("\n".join(deploy_lines(sections)))
    return 0
