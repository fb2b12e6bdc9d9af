"""Command-line entry point: ``zigprune compress | prune | search | analyze | eval | export | report |
bench``.

One module per subcommand, each a sub-parser and a handler that calls the library and prints; this
module builds the parser, dispatches, and turns errors into one line and an exit status.
"""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from ..bench.command import add_subcommand as add_bench
from ..errors import (
    CalibrationError,
    ConfigError,
    DataError,
    DivergedError,
    Interrupted,
    ModelError,
    OptimizerError,
    PolicyError,
    RunDirError,
    TargetError,
    UnknownNameError,
    ZigpruneError,
)
from ..measure.latency import LatencyError
from .analyze import add_analyze
from .compress import add_compress
from .eval import add_eval
from .export import add_export
from .prune import add_prune
from .report import add_report
from .search import add_search

USAGE_ERRORS = (
    CalibrationError,
    ModelError,
    DataError,
    ConfigError,
    OptimizerError,
    TargetError,
    RunDirError,
    LatencyError,
    DivergedError,
    PolicyError,
    UnknownNameError,
)
INTERRUPTED = 130
TERMINATED = 143
SUBCOMMANDS = (add_compress, add_prune, add_search, add_analyze, add_eval, add_export, add_report, add_bench)


def build_parser() -> argparse.ArgumentParser:
    """The ``zigprune`` argument parser with all subcommands."""
    parser = argparse.ArgumentParser(
        prog="zigprune",
        description="Train a PyTorch model once and get a physically smaller model with the same outputs.",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    for add in SUBCOMMANDS:
        add(sub)
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
    except Interrupted as err:
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
