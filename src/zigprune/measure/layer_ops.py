"""One Conv or Linear layer as a runtime sees it (input shape at the timing batch, kernel, stride,
padding), timed alone at given widths in eager torch: an entry of a per-layer latency table.

Other runtimes (ONNX Runtime fp32 and int8, :mod:`zigprune.deploy.runtimes`) time the same
``LayerOp`` through the same ``LayerTimer`` signature, so the table does not care which one it holds.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import partial

import torch
import torch.nn.functional as F
from torch import nn

from .latency import fastest_ms


@dataclass(frozen=True)
class LayerOp:
    """A layer's op: ``kind`` (``linear``, ``conv1d``, ``conv2d``, ``conv3d``), its input shape at the
    timing batch with the full widths, and for convolutions kernel, stride, padding and dilation."""

    kind: str
    input_shape: tuple[int, ...]
    kernel: tuple[int, ...] = ()
    stride: tuple[int, ...] = ()
    padding: tuple[int, ...] | str = ()
    dilation: tuple[int, ...] = ()

    @classmethod
    def of(cls, module: nn.Module, input_shape: tuple[int, ...]) -> LayerOp:
        if isinstance(module, nn.Linear):
            return cls("linear", input_shape)
        kernel = tuple(module.weight.shape[2:])
        return cls(f"conv{len(kernel)}d", input_shape, kernel, module.stride, module.padding, module.dilation)

    @property
    def channel_dim(self) -> int:
        """Where the input's channels sit: last for a Linear, 1 for a convolution."""
        return len(self.input_shape) - 1 if self.kind == "linear" else 1

    def shape(self, cin: int) -> list[int]:
        """The input shape with ``cin`` channels."""
        shape = list(self.input_shape)
        shape[self.channel_dim] = cin
        return shape

    def key(self, cin: int, cout: int) -> str:
        """The op at ``cin`` -> ``cout`` channels as one line, the key of a timing cache."""
        shape = "x".join(map(str, self.shape(cin)))
        return f"{self.kind} {shape}->{cout} k{self.kernel} s{self.stride} p{self.padding} d{self.dilation}"


LayerTimer = Callable[[LayerOp, int, int, int, int], float]


def time_torch(op: LayerOp, cin: int, cout: int, threads: int, repeats: int) -> float:
    """Fastest of ``repeats`` eager calls (ms) of ``op`` at ``cin`` -> ``cout`` channels."""
    x = torch.randn(op.shape(cin))
    w = torch.randn(cout, cin, *op.kernel)
    if op.kind == "linear":
        call = partial(F.linear, x, w)
    else:
        conv = getattr(F, op.kind)
        call = partial(conv, x, w, None, op.stride, op.padding, op.dilation)
    return fastest_ms(call, repeats, threads)
