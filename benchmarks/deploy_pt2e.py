"""The PyTorch side of the deploy benchmark (imported by ``deploy.py``): torchao's PT2E int8 next to fp32,
eager and compiled by Inductor, all in one interleaved timing run.

For a run folder: the dense architecture (fresh weights, as in the ONNX table) and the slim model, each
eager and compiled (``zigprune.deploy.CompiledModule``: Inductor, freezing, static shapes), and the slim
model quantized by ``zp.quantize_pt2e`` (X86 Inductor quantizer, calibrated on the 256 training
samples ``--int8`` uses, then compiled). Test accuracy is scored on the run's test split; the five
models are timed alternately, call by call, one thread, at batch 1 and 64, after each has compiled.
``--quick`` leaves out the two fp32 Inductor models.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import torch

import zigprune as zp
from zigprune.deploy import CompiledModule
from zigprune.measure.latency import interleaved, make_batch
from zigprune.runs.export_job import run_models

BATCHES = (1, 64)
NAMES = ("dense fp32 eager", "dense fp32 Inductor", "slim fp32 eager", "slim fp32 Inductor", "slim int8 PT2E")


def pt2e_entry(name: str, source: Path, seconds: float, *, quick: bool = False) -> dict[str, Any]:
    """Accuracy, compile time and latency of the five models of one run (an error entry without torchao)."""
    try:
        import torchao  # noqa: F401
    except ImportError as err:
        return {"run": name, "error": f"torchao is not installed ({err}): pip install 'zigprune[pt2e]'"}
    slim, dense, inputs, _ = run_models(source)
    before = torch.get_num_threads()
    torch.set_num_threads(1)  # Inductor fixes its kernels' thread count when it compiles them
    try:
        start = time.perf_counter()
        int8 = zp.quantize_pt2e(slim, inputs.calibration)
        quantize_s = time.perf_counter() - start
        models = [dense, CompiledModule(dense), slim, CompiledModule(slim), int8]
        accuracy = [None, None, inputs.quality(slim)[inputs.key], None, inputs.quality(int8)[inputs.key]]
        names = list(NAMES)
        if quick:  # the fp32 Inductor rows cost two compiles each
            models, accuracy, names = (
                [x for i, x in enumerate(v) if i not in (1, 3)] for v in (models, accuracy, names)
            )
        compile_s = [_compile(m, inputs.example) for m in models]
    finally:
        torch.set_num_threads(before)
    timed = interleaved(models, inputs.example, batch_sizes=BATCHES, min_seconds=seconds, threads=1)
    dense_ms = {lat.batch: lat.median_ms for lat in timed[0]}
    rows = [
        {
            "model": label,
            "accuracy": acc,
            "first_calls_s": first,
            "ms": {str(lat.batch): lat.median_ms for lat in lats},
            "speedup": {str(lat.batch): dense_ms[lat.batch] / lat.median_ms for lat in lats},
        }
        for label, acc, first, lats in zip(names, accuracy, compile_s, timed)
    ]
    return {"run": name, "key": inputs.key, "quantize_s": quantize_s, "rows": rows}


def _compile(model: torch.nn.Module, example: Any) -> float:
    """Seconds of the first calls at each timed batch size (Inductor compiles there; eager models ~0)."""
    start = time.perf_counter()
    with torch.inference_mode():
        for size in BATCHES:
            model(make_batch(example, size))
    return time.perf_counter() - start


def pt2e_rows(entry: dict[str, Any], dense_accuracy: float | None) -> list[str]:
    if "error" in entry:
        return [f"| {entry['run']} | {entry['error']} | | | | | | |"]
    rows = []
    for row in entry["rows"]:
        acc = dense_accuracy if row["model"].startswith("dense") else row["accuracy"]
        shown = "same as eager" if acc is None and row["model"].startswith("slim") else _percent(acc)
        rows.append(
            f"| {entry['run']} | {row['model']} | {shown} | {row['first_calls_s']:.1f} "
            f"| {row['ms']['1']:.3f} | {row['ms']['64']:.2f} "
            f"| {row['speedup']['1']:.2f}x | {row['speedup']['64']:.2f}x |"
        )
    return rows


def _percent(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.2%}"
