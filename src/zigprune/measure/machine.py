"""The machine a figure was measured on: CPU, threads and library versions, recorded the same way by
runs (``metrics.json``), ``zigprune bench`` and the benchmarks."""

from __future__ import annotations

import os
import platform
from importlib import metadata
from typing import Any

import torch

from .._version import __version__

#: Libraries whose version changes a figure; recorded as None when not installed.
PACKAGES = ("numpy", "transformers", "torch-pruning", "onnxruntime", "onnx")


def version(dist: str) -> str | None:
    """Installed version of ``dist``, or None."""
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return None


def machine_info(packages: tuple[str, ...] = PACKAGES) -> dict[str, Any]:
    """CPU model, cores, torch threads and versions, plus a one-line ``summary`` for reports."""
    info: dict[str, Any] = {
        "platform": platform.platform(),
        "machine": platform.machine(),
        "processor": _cpu_model() or platform.processor() or platform.machine(),
        "python": platform.python_version(),
        "cpu_count": os.cpu_count(),
        "cpu_affinity": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        "torch_num_threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "zigprune": __version__,
        **{name.replace("-", "_"): version(name) for name in packages},
    }
    info["summary"] = (
        f"{info['processor']}, {info['cpu_count']} CPUs ({info['torch_num_threads']} torch threads), "
        f"{info['platform']}, torch {info['torch']}, zigprune {info['zigprune']}"
    )
    return info


def _cpu_model() -> str | None:
    try:
        with open("/proc/cpuinfo") as f:
            return next((ln.split(":", 1)[1].strip() for ln in f if ln.startswith("model name")), None)
    except OSError:
        return None
