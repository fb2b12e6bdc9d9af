"""An ONNX file behind an ``nn.Module`` face, so the accuracy and fidelity measures that take a PyTorch
model score what ONNX Runtime computes (int8 files included)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..core.trace import Inputs
from ..errors import QuantizeError, first_line
from ..measure.latency import onnx_feed


class OnnxModule(nn.Module):
    """Calls an ONNX Runtime CPU session on the inputs a PyTorch model would take; returns the first output
    as a tensor (a tuple when the file has several). Inference only: no parameters, no gradients."""

    def __init__(self, path: str | os.PathLike, *, threads: int | None = None) -> None:
        super().__init__()
        try:
            import onnxruntime as ort
        except ImportError:
            raise QuantizeError(
                "running an ONNX file needs onnxruntime: pip install 'zigprune[onnx]'"
            ) from None
        self.path = Path(path)
        options = ort.SessionOptions()
        if threads:
            options.intra_op_num_threads = threads
        try:
            self.session = ort.InferenceSession(str(self.path), options, providers=["CPUExecutionProvider"])
        except Exception as err:
            raise QuantizeError(
                f"{self.path} is not an ONNX model ONNX Runtime can load ({first_line(err)}); export it again"
            ) from None
        self.takes = self.session.get_inputs()

    def forward(self, *args: Any, **kwargs: Any) -> torch.Tensor | tuple[torch.Tensor, ...]:
        feed = onnx_feed(self.path, self.takes, Inputs(args, kwargs))
        got = self.session.run(None, {name: t.detach().cpu().numpy() for name, t in feed.items()})
        outputs = tuple(torch.from_numpy(array) for array in got)
        return outputs[0] if len(outputs) == 1 else outputs
