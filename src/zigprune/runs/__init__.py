"""A run folder and the jobs that fill it: ``compress`` (train once), ``prune`` (post-training),
``export`` (deployment files for a finished run), ``evaluate_run`` and the report.

The names below load their module on first use, so that importing one step (``rundir`` to write
``run.json``) does not import every job and, through them, training and the quantization stack.
"""

from importlib import import_module
from typing import Any

from ..core.selection import Target
from ..errors import Interrupted, RunDirError, TargetError

_HOMES = {
    "Config": "config", "default_out": "config", "compress": "compress_job", "check_dir": "rundir",
    "check_resume": "rundir", "build_optimizer": "optimizers", "cost_power": "optimizers",
}  # fmt: skip

__all__ = ["Interrupted", "RunDirError", "Target", "TargetError", *_HOMES]


def __getattr__(name: str) -> Any:
    if name not in _HOMES:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(import_module(f".{_HOMES[name]}", __name__), name)
