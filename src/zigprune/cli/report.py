"""``zigprune report RUN_DIR``: re-render a finished run's report.md and plots from its files."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from ..runs.report import render_dir, table
from ..runs.rundir import METRICS


def add_report(sub: Any) -> None:
    p = sub.add_parser(
        "report",
        help="re-render a run's report.md and plots",
        description="Re-render report.md and its PNG plots from a finished run's files.",
    )
    p.add_argument("run_dir", help="a finished run directory written by zigprune compress")
    p.set_defaults(func=_report)


def _report(args: argparse.Namespace) -> int:
    path = render_dir(args.run_dir)
    print(table(json.loads((Path(args.run_dir) / METRICS).read_text(encoding="utf-8"))))
    print(f"\nwrote {path}")
    return 0
