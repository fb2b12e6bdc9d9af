"""The runtimes a latency budget is measured on: eager ``torch``, ``onnxruntime`` (fp32) and
``onnxruntime-int8`` (static QDQ, per-channel weights: what ``export --int8`` tries first).

Each does two things the same way: time one layer alone at given widths (a :class:`LayerOp`, built
as a one-node ONNX file for ONNX Runtime: no export, milliseconds per entry) for the per-layer table,
and time whole models (the module, or its exported file) against each other, interleaved, to check
what the table predicts.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from ..io import ort
from ..io.onnx import export_onnx
from ..measure.latency import LatencyError, fastest_ms, interleaved
from ..measure.layer_ops import LayerOp, LayerTimer, time_torch
from ..registry import Registry
from .quantize import int8_file, quantize_onnx

Prepare = Callable[[nn.Module, Any, Path, Sequence[str]], Any]
OPSET = 17


@dataclass(frozen=True)
class Runtime:
    """A runtime: its layer timer, how a whole model is made ready for it (``prepare``: the module
    itself, or its ONNX file written at a given path without suffix; the layers named last stay fp32
    on an int8 runtime) and which latency backend times that. ``float_runtime``: on an int8 runtime,
    the runtime a layer kept in fp32 runs as (a mixed-precision search times layers there too)."""

    name: str
    time_layer: LayerTimer
    prepare: Prepare
    backend: str
    float_runtime: str | None = None

    def require(self) -> None:
        """A LatencyError with the install hint when the runtime's library is missing."""
        if self.backend == "onnx":
            ort.onnxruntime(LatencyError, f"timing on {self.name}")
            _onnx_helper()

    def time(
        self, targets: Sequence[Any], example: Any, batch: int, threads: int, seconds: float
    ) -> list[float]:
        """Median ms of each prepared target at ``batch`` rows, timed interleaved for ``seconds`` each."""
        timed = interleaved(
            list(targets),
            example,
            backend=self.backend,
            batch_sizes=(batch,),
            threads=threads,
            min_seconds=seconds,
        )
        return [lat[0].median_ms for lat in timed]


def _as_module(model: nn.Module, example: Any, path: Path, keep: Sequence[str] = ()) -> nn.Module:
    return model


def _exported(int8: bool) -> Prepare:
    """Export the model to ``path``.onnx (and quantize it to ``path``.int8.onnx when ``int8``, but for
    the layers named in ``keep``)."""

    def prepare(model: nn.Module, example: Any, path: Path, keep: Sequence[str] = ()) -> Path:
        if not int8:
            return export_onnx(model, example, path.with_suffix(".onnx"), check=False)
        return int8_file(model, example, [example], path, keep)

    return prepare


def _onnx_layer(int8: bool) -> LayerTimer:
    """Time ``op`` as a one-node ONNX file (quantized when ``int8``) in a timing session."""

    def time_layer(op: LayerOp, cin: int, cout: int, threads: int, repeats: int) -> float:
        x = torch.randn(op.shape(cin))
        with tempfile.TemporaryDirectory(prefix="zigprune-layer-") as folder:
            path = Path(folder) / "layer.onnx"
            path.write_bytes(_layer_model(op, cin, cout).SerializeToString())
            if int8:
                path = quantize_onnx(path, [x], Path(folder) / "layer.int8.onnx", preprocess=False)
            session = ort.open_session(path, threads=threads, timing=True, error=LatencyError)
            feed = {"input": x.numpy()}
            return fastest_ms(lambda: session.run(None, feed), repeats, threads)

    return time_layer


def _layer_model(op: LayerOp, cin: int, cout: int) -> Any:
    """``op`` at ``cin`` -> ``cout`` channels as an ONNX model with random weights, input ``input``."""
    onnx, helper, numpy_helper = _onnx_helper()
    rng = np.random.default_rng(0)
    x = helper.make_tensor_value_info("input", onnx.TensorProto.FLOAT, op.shape(cin))
    y = helper.make_tensor_value_info("output", onnx.TensorProto.FLOAT, None)
    bias = numpy_helper.from_array(np.zeros(cout, np.float32), "b")
    if op.kind == "linear":
        weight = rng.standard_normal((cin, cout), dtype=np.float32)
        if len(op.input_shape) == 2:
            nodes = [helper.make_node("Gemm", ["input", "w", "b"], ["output"], transB=1)]
            weight = weight.T.copy()
        else:
            nodes = [
                helper.make_node("MatMul", ["input", "w"], ["mm"]),
                helper.make_node("Add", ["mm", "b"], ["output"]),
            ]
    else:
        weight = rng.standard_normal((cout, cin, *op.kernel), dtype=np.float32)
        attrs = {"kernel_shape": list(op.kernel), "strides": list(op.stride), "dilations": list(op.dilation)}
        nodes = [helper.make_node("Conv", ["input", "w", "b"], ["output"], pads=_pads(op), **attrs)]
    graph = helper.make_graph(nodes, "layer", [x], [y], [numpy_helper.from_array(weight, "w"), bias])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)])


def _pads(op: LayerOp) -> list[int]:
    """ONNX's begin and end pads for the conv's padding (``same`` puts the odd one at the end)."""
    if op.padding == "valid":
        return [0] * (2 * len(op.kernel))
    if op.padding == "same":
        total = [d * (k - 1) for k, d in zip(op.kernel, op.dilation)]
        return [t // 2 for t in total] + [t - t // 2 for t in total]
    return [*op.padding, *op.padding]


def _onnx_helper() -> tuple[Any, Any, Any]:
    try:
        import onnx
        from onnx import helper, numpy_helper
    except ImportError as err:
        raise LatencyError(f"timing layers in ONNX Runtime needs onnx ({err}): {ort.INSTALL}") from None
    return onnx, helper, numpy_helper


RUNTIMES: Registry[Runtime] = Registry(
    "runtime",
    {
        "torch": Runtime("torch", time_torch, _as_module, "torch"),
        "onnxruntime": Runtime("onnxruntime", _onnx_layer(False), _exported(False), "onnx"),
        "onnxruntime-int8": Runtime(
            "onnxruntime-int8", _onnx_layer(True), _exported(True), "onnx", float_runtime="onnxruntime"
        ),
    },
    LatencyError,
    hint=" (torch.compile's inductor is not timed layer by layer yet)",
)
