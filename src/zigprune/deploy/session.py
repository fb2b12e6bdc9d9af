"""An ONNX file behind an ``nn.Module`` face, so the accuracy and fidelity measures that take a PyTorch
model score what ONNX Runtime computes (int8 files included)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..core.trace import Inputs
from ..errors import QuantizeError
from ..io import ort


class OnnxModule(nn.Module):
    """Calls an ONNX Runtime CPU session on the inputs a PyTorch model would take; returns the first output
    as a tensor (a tuple when the file has several). Inference only: no parameters, no gradients."""

    def __init__(self, path: str | os.PathLike, *, threads: int | None = None) -> None:
        super().__init__()
        self.path = Path(path)
        self.session = ort.open_session(self.path, threads=threads, error=QuantizeError)
        self.takes = self.session.get_inputs()

    def forward(self, *args: Any, **kwargs: Any) -> torch.Tensor | tuple[torch.Tensor, ...]:
        feed = ort.feed(self.path, self.takes, Inputs(args, kwargs), QuantizeError)
        got = self.session.run(None, ort.arrays(feed))
        outputs = tuple(torch.from_numpy(array) for array in got)
        return outputs[0] if len(outputs) == 1 else outputs
