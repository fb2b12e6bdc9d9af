"""Documented import path kept: latency lives at ``zigprune.measure.latency``."""

from .measure.latency import (
    Comparison,
    Latency,
    LatencyError,
    compare,
    fastest_ms,
    make_batch,
    measure,
    measure_onnx,
    speedup,
)

__all__ = [
    "Comparison",
    "Latency",
    "LatencyError",
    "compare",
    "fastest_ms",
    "make_batch",
    "measure",
    "measure_onnx",
    "speedup",
]
