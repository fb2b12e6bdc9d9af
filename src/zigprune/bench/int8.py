"""The bench's int8 columns: each method's slim model quantized (QDQ, per-channel weights) and scored
and timed in ONNX Runtime by the same comparison ``zigprune export --int8`` runs, with one scheme, so
methods compare on what ships as well as on fp32."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

from torch import nn
from torch.utils.data import Dataset

from ..deploy import compare_int8
from ..deploy.quantize import Scheme
from ..io.onnx import export_onnx, quiet_onnx
from ..training import evaluate


def int8_figures(
    dense: nn.Module, slim: nn.Module, batch: Any, calibration: list[Any], test: Dataset, seconds: float
) -> tuple[float, dict[str, float]]:
    """Test accuracy of the int8 slim model, and its speedup over the dense fp32 ONNX file at batch 1
    and ``len(batch)`` (ORT, one thread, calls interleaved)."""
    with tempfile.TemporaryDirectory(prefix="zigprune-bench-") as folder, quiet_onnx():
        root = Path(folder)
        result = compare_int8(
            export_onnx(dense, batch, root / "dense.onnx", check=False),
            export_onnx(slim, batch, root / "slim.onnx"),
            root / "int8.onnx",
            calibration,
            batch,
            lambda model: {"accuracy": evaluate(model, test).accuracy},
            dense_quality={"accuracy": None},
            schemes=(Scheme(),),
            batch_sizes=(1, len(batch)),
            min_seconds=seconds,
            log=lambda _: None,
        )
    int8 = result.artefacts[-1]
    return int8.quality["accuracy"], int8.speedup
