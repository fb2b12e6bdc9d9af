"""What a finished compress run measures: accuracy, params, MACs, ONNX export and latency, dense vs slim."""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from .. import data
from ..io.onnx import export_onnx, has_onnx, quiet_onnx
from ..measure import latency
from ..measure.count import count
from ..measure.fidelity import follows
from ..measure.machine import machine_info
from ..training import evaluate, fetch
from .config import Config
from .deploy_step import deploy_data, int8_section, sharing_section
from .optimizers import LATENCY_BATCHES
from .rundir import ONNX

if TYPE_CHECKING:
    from .state import Run, Stage

Deploy = Callable[[Path | None, Path | None], dict[str, Any]]


def measure_run(
    stage: Stage,
    config: Config,
    out: Path,
    run: Run,
    slim: torch.nn.Module,
    dataset: data.Dataset,
    baseline: Any,
    progress: bool = False,
) -> dict[str, Any]:
    """Accuracy (text: fidelity to the starting model), params and MACs (per sample), ONNX export and
    latency of the dense and slim models, and the ``--int8`` and ``--share-bits`` sections."""
    if not dataset.num_classes:
        held_out = dataset.test.batches(max(LATENCY_BATCHES))
        quality = follows(run.initial, held_out)
        sample, dense_quality = held_out[0], quality(run.initial)
        slim_quality = {**quality(slim), "full_model_cosine": quality(run.model)["cosine"]}
    else:
        full, after = evaluate(run.model, dataset.test), evaluate(slim, dataset.test)
        sample = fetch(dataset.test, torch.arange(min(len(dataset.test), max(LATENCY_BATCHES))))[0]
        dense_quality = {
            "accuracy": baseline.accuracy if baseline else None,
            "loss": baseline.loss if baseline else None,
        }
        slim_quality = {"accuracy": after.accuracy, "loss": after.loss, "full_model_accuracy": full.accuracy}
    deploy = _deploy(stage, config, out, run, slim, dataset, dense_quality, progress)
    metrics = measure_models(stage, config, out, run, slim, sample, dense_quality, slim_quality, deploy)
    metrics["steps"] = run.steps
    return metrics


def _deploy(
    stage: Stage,
    config: Config,
    out: Path,
    run: Run,
    slim: torch.nn.Module,
    dataset: data.Dataset,
    dense_quality: dict[str, Any],
    progress: bool,
) -> Deploy | None:
    """The int8 and weight-sharing sections the run asked for, as a callback of the ONNX files."""
    if not (config.int8 or config.share_bits):
        return None
    accuracy = dense_quality.get("accuracy")
    inputs = deploy_data(dataset, run.initial, accuracy, config.batch_size, config.seed)

    def sections(slim_onnx: Path | None, dense_onnx: Path | None) -> dict[str, Any]:
        found: dict[str, Any] = {}
        if config.int8 and slim_onnx is not None and dense_onnx is not None:
            seconds, tolerance = config.latency_seconds, config.int8_tolerance
            found["int8"] = stage.timed(
                "int8",
                lambda: int8_section(stage.log, out, slim_onnx, dense_onnx, inputs, seconds, tolerance),
            )
        if config.share_bits:
            found["sharing"] = stage.timed(
                "sharing", lambda: sharing_section(stage.log, out, slim, config.share_bits, inputs, progress)
            )
        return found

    return sections


def measure_models(
    stage: Stage,
    config: Any,
    out: Path,
    run: Run,
    slim: torch.nn.Module,
    sample: Any,
    dense_quality: dict[str, Any],
    slim_quality: dict[str, Any],
    deploy: Deploy | None = None,
) -> dict[str, Any]:
    """Params and MACs (per sample), ONNX export and latency of ``run.model`` and ``slim``, beside the
    quality figures given for each (accuracy, or fidelity to the dense model). ``config`` is the run's
    settings dataclass (its ``onnx``, ``latency`` and ``latency_seconds`` are read). ``deploy`` gets the
    slim and dense ONNX files (None without ONNX) and returns more metrics sections (int8, sharing)."""
    dense_counts, slim_counts = count(run.model, run.single), count(slim, run.single)
    onnx_path = _export(stage, config, out, slim, run.example)
    with tempfile.TemporaryDirectory(prefix="zigprune-") as folder:
        dense_onnx = _export_dense(run, Path(folder)) if onnx_path and (config.latency or deploy) else None
        say = _timing_note(config, onnx_path is not None and dense_onnx is not None)
        timings = stage.timed(
            "latency", lambda: _latency(config, run, slim, sample, onnx_path, dense_onnx), say
        )
        sections = deploy(onnx_path, dense_onnx) if deploy else {}
    return {**_metrics(stage, config, run, slim_counts, dense_counts, dense_quality, slim_quality, timings,
                       onnx_path), **sections}  # fmt: skip


def _metrics(
    stage: Stage,
    config: Any,
    run: Run,
    slim_counts: dict[str, int],
    dense_counts: dict[str, int],
    dense_quality: dict[str, Any],
    slim_quality: dict[str, Any],
    timings: dict[str, dict[str, Any]],
    onnx_path: Path | None,
) -> dict[str, Any]:
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
        "versions": machine_info(),
        "seconds": dict(stage.seconds),
    }


def _export(stage: Stage, config: Any, out: Path, slim: torch.nn.Module, example: Any) -> Path | None:
    """``model.onnx`` of the slim model, checked in ONNX Runtime (when onnx and onnxruntime are installed)."""
    if not config.onnx:
        return None
    if not has_onnx():
        stage.log("ONNX export skipped: pip install 'zigprune[onnx]' to get model.onnx")
        return None
    say = "exporting model.onnx and checking it in ONNX Runtime (--no-onnx skips this)"
    with quiet_onnx():
        return stage.timed("export", lambda: export_onnx(slim, example, out / ONNX), say)


def _export_dense(run: Run, folder: Path) -> Path:
    """The dense model as ONNX in ``folder`` (unchecked: it only serves timing and int8's dense row)."""
    with quiet_onnx():
        return export_onnx(run.model, run.example, folder / "dense.onnx", check=False)


def _timing_note(config: Any, onnx: bool) -> str | None:
    """What the latency stage is about to time, and how to skip it."""
    if not config.latency:
        return None
    where = "eager PyTorch and ONNX Runtime" if onnx else "eager PyTorch"
    batches = " and ".join(map(str, LATENCY_BATCHES))
    return (
        f"timing the dense and slim models in {where} at batch {batches}, calls interleaved, at least "
        f"{config.latency_seconds:g} s each (minutes for a large model; --no-latency skips this)"
    )


def _latency(
    config: Any, run: Run, slim: torch.nn.Module, sample: Any, onnx_path: Path | None, dense_onnx: Path | None
) -> dict[str, dict[str, Any]]:
    """Interleaved dense vs slim latency in eager torch and ONNX Runtime, with speedups per batch size."""
    if not config.latency:
        return {}
    timing = {"batch_sizes": LATENCY_BATCHES, "min_seconds": config.latency_seconds}
    runs = {"torch": latency.compare(run.model, slim, sample, **timing)}
    if onnx_path is not None and dense_onnx is not None:
        runs["onnxruntime"] = latency.compare(dense_onnx, onnx_path, sample, backend="onnx", **timing)
    return {
        name: {
            "dense": [asdict(x) for x in result.dense],
            "slim": [asdict(x) for x in result.slim],
            "speedup": {str(b): s for b, s in result.speedup.items()},
        }
        for name, result in runs.items()
    }
