"""Documented import path kept: per-layer timing lives at ``zigprune.measure.layer_latency``."""

from .measure.layer_latency import LayerLatency

__all__ = ["LayerLatency"]
