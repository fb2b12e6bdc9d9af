"""What a finished compress run measures: accuracy, params, MACs, ONNX export and latency, dense vs slim."""

from __future__ import annotations

import contextlib
import platform
import tempfile
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from .. import data
from .._version import __version__
from ..io.onnx import export_onnx, has_onnx, quiet_onnx
from ..measure import latency
from ..measure.count import count
from ..measure.fidelity import follows
from ..training import evaluate, fetch
from .config import Config
from .optimizers import LATENCY_BATCHES
from .rundir import ONNX

if TYPE_CHECKING:
    from .state import Run, Stage


def measure(
    stage: Stage,
    config: Config,
    out: Path,
    run: Run,
    slim: torch.nn.Module,
    dataset: data.Dataset,
    baseline: Any,
) -> dict[str, Any]:
    """Accuracy (text: fidelity to the starting model), params and MACs (per sample), ONNX export and
    latency of the dense and slim models."""
    if not dataset.num_classes:
        held_out = dataset.test.batches(max(LATENCY_BATCHES))
        quality = follows(run.initial, held_out)
        found = {**quality(slim), "full_model_cosine": quality(run.model)["cosine"]}
        metrics = measure_models(stage, config, out, run, slim, held_out[0], quality(run.initial), found)
        metrics["steps"] = run.steps
        return metrics
    full, after = evaluate(run.model, dataset.test), evaluate(slim, dataset.test)
    sample = fetch(dataset.test, torch.arange(min(len(dataset.test), max(LATENCY_BATCHES))))[0]
    dense_quality = {
        "accuracy": baseline.accuracy if baseline else None,
        "loss": baseline.loss if baseline else None,
    }
    slim_quality = {"accuracy": after.accuracy, "loss": after.loss, "full_model_accuracy": full.accuracy}
    metrics = measure_models(stage, config, out, run, slim, sample, dense_quality, slim_quality)
    metrics["steps"] = run.steps
    return metrics


def measure_models(
    stage: Stage,
    config: Any,
    out: Path,
    run: Run,
    slim: torch.nn.Module,
    sample: Any,
    dense_quality: dict[str, Any],
    slim_quality: dict[str, Any],
) -> dict[str, Any]:
    """Params and MACs (per sample), ONNX export and latency of ``run.model`` and ``slim``, beside the
    quality figures given for each (accuracy, or fidelity to the dense model). ``config`` is the run's
    settings dataclass (its ``onnx``, ``latency`` and ``latency_seconds`` are read)."""
    dense_counts, slim_counts = count(run.model, run.single), count(slim, run.single)
    onnx_path = _export(stage, config, out, slim, run.example)
    timings = stage.timed("latency", lambda: _latency(config, run, slim, sample, onnx_path))
    return {
        "format": "zigprune-run",
        "version": 1,
        "config": asdict(config),
        "groups": {"total": run.space.num_groups, "zero": int(run.space.zero_groups().sum())},
        "dense": {**dense_quality, **dense_counts, "latency": {k: v["dense"] for k, v in timings.items()}},
        "slim": {**slim_quality, **slim_counts, "latency": {k: v["slim"] for k, v in timings.items()}},
        "reduction": {k: dense_counts[k] / max(slim_counts[k], 1) for k in ("params", "macs")},
        "speedup": {k: v["speedup"] for k, v in timings.items()},
        "speedup_over_macs_ratio": {
            k: {b: s * slim_counts["macs"] / max(dense_counts["macs"], 1) for b, s in v["speedup"].items()}
            for k, v in timings.items()
        },
        "onnx": ONNX if onnx_path else None,
        "versions": _versions(),
        "seconds": dict(stage.seconds),
    }


def _export(stage: Stage, config: Any, out: Path, slim: torch.nn.Module, example: Any) -> Path | None:
    """``model.onnx`` of the slim model, checked in ONNX Runtime (when onnx and onnxruntime are installed)."""
    if not config.onnx:
        return None
    if not has_onnx():
        stage.log("ONNX export skipped: pip install 'zigprune[onnx]' to get model.onnx")
        return None
    with quiet_onnx():
        return stage.timed("export", lambda: export_onnx(slim, example, out / ONNX))


def _latency(
    config: Any, run: Run, slim: torch.nn.Module, sample: Any, onnx_path: Path | None
) -> dict[str, dict[str, Any]]:
    """Interleaved dense vs slim latency in eager torch and ONNX Runtime, with speedups per batch size."""
    if not config.latency:
        return {}
    timing = {"batch_sizes": LATENCY_BATCHES, "min_seconds": config.latency_seconds}
    runs = {"torch": latency.compare(run.model, slim, sample, **timing)}
    if onnx_path is not None:
        with tempfile.TemporaryDirectory(prefix="zigprune-") as folder, quiet_onnx():
            dense_path = export_onnx(run.model, run.example, Path(folder) / "dense.onnx", check=False)
            runs["onnxruntime"] = latency.compare(dense_path, onnx_path, sample, backend="onnx", **timing)
    return {
        name: {
            "dense": [asdict(x) for x in result.dense],
            "slim": [asdict(x) for x in result.slim],
            "speedup": {str(b): s for b, s in result.speedup.items()},
        }
        for name, result in runs.items()
    }


def _versions() -> dict[str, str]:
    found = {"zigprune": __version__, "torch": torch.__version__, "python": platform.python_version()}
    for name in ("onnxruntime", "onnx"):
        with contextlib.suppress(ImportError):
            found[name] = __import__(name).__version__
    found["machine"] = f"{platform.machine()}, {torch.get_num_threads()} torch threads"
    return found
