"""The bench's int8 columns: each method's slim model quantized (QDQ, per-channel weights) and scored
and timed in ONNX Runtime, so methods compare on what ships as well as on fp32."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

from torch import nn
from torch.utils.data import Dataset

from ..deploy import OnnxModule, quantize_onnx
from ..io.onnx import export_onnx, quiet_onnx
from ..measure.latency import interleaved, speedup
from ..training import evaluate


def int8_figures(
    dense: nn.Module, slim: nn.Module, batch: Any, calibration: list[Any], test: Dataset, seconds: float
) -> tuple[float, dict[str, float]]:
    """Test accuracy of the int8 slim model, and its speedup over the dense fp32 ONNX file at batch 1
    and ``len(batch)`` (ORT, one thread, calls interleaved)."""
    with tempfile.TemporaryDirectory(prefix="zigprune-bench-") as folder, quiet_onnx():
        root = Path(folder)
        dense_path = export_onnx(dense, batch, root / "dense.onnx", check=False)
        slim_path = quantize_onnx(
            export_onnx(slim, batch, root / "slim.onnx"), calibration, root / "int8.onnx"
        )
        accuracy = evaluate(OnnxModule(slim_path), test).accuracy
        sizes = (1, len(batch))
        timed = interleaved(
            [dense_path, slim_path], batch, backend="onnx", batch_sizes=sizes, min_seconds=seconds
        )
    return accuracy, {str(b): float(v) for b, v in speedup(timed[0], timed[1]).items()}
