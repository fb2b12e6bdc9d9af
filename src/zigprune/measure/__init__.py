"""Measuring models: parameters and MACs (``count``), latency in torch and ONNX Runtime, per-layer timing."""

from .count import count

__all__ = ["count"]
