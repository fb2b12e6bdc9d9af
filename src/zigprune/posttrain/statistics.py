"""Input statistics of consumer layers, gathered by forward hooks over calibration passes.

``Gram`` keeps ``H = X̃ᵀX̃`` of the layer's input rows with a trailing column of ones (so it also holds
their sums and count), which OBS needs; ``Moments`` keeps only the per-column sums and sums of
squares, which Wanda and FLAP need. Products are formed in float32 (float64 for float64 models)
over chunks of rows and accumulated in float64.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field

import torch
from torch import nn

from ..errors import CalibrationError
from .calibration import Calibration, StopForward
from .consumers import Consumer

CHUNK_ROWS = 16384


def _work_dtype(rows: torch.Tensor) -> torch.dtype:
    return torch.float64 if rows.dtype == torch.float64 else torch.float32


@dataclass
class Moments:
    """Per-column count, sum and sum of squares of a layer's input rows."""

    count: int = 0
    total: torch.Tensor | None = None
    squares: torch.Tensor | None = None

    def add(self, rows: torch.Tensor) -> None:
        rows = rows.to(_work_dtype(rows))
        total, squares = rows.sum(0).double(), rows.square().sum(0).double()
        self.total = total if self.total is None else self.total + total
        self.squares = squares if self.squares is None else self.squares + squares
        self.count += rows.shape[0]

    @property
    def mean(self) -> torch.Tensor:
        return self.total / max(self.count, 1)

    @property
    def variance(self) -> torch.Tensor:
        return (self.squares / max(self.count, 1) - self.mean.square()).clamp(min=0)


@dataclass
class Gram:
    """``H = X̃ᵀX̃`` for the rows ``X̃ = [X, 1]``: the last row/column holds the sums and the count."""

    matrix: torch.Tensor | None = None

    def add(self, rows: torch.Tensor) -> None:
        rows = rows.to(_work_dtype(rows))
        rows = torch.cat([rows, torch.ones(rows.shape[0], 1, dtype=rows.dtype, device=rows.device)], 1)
        for chunk in rows.split(CHUNK_ROWS):
            product = (chunk.t() @ chunk).double()
            self.matrix = product if self.matrix is None else self.matrix.add_(product)

    @property
    def count(self) -> int:
        return 0 if self.matrix is None else int(self.matrix[-1, -1])

    def for_layer(self, bias: bool) -> torch.Tensor:
        """``H`` over the layer's columns, with the ones column kept only for a layer that has a bias."""
        return self.matrix if bias else self.matrix[:-1, :-1]


@dataclass
class Collector:
    """Statistics of a set of consumers over one calibration pass (``kind``: Gram or Moments)."""

    members: Sequence[Consumer]
    kind: type
    calls: dict[str, int] = field(default_factory=dict)
    stats: dict[str, Gram | Moments] = field(default_factory=dict)

    def collect(
        self, model: nn.Module, calibration: Calibration, bar: object = None
    ) -> dict[str, Gram | Moments]:
        """Run ``calibration`` once with hooks on the members; end each batch once all of them have run."""
        self.stats = {c.name: self.kind() for c in self.members}
        with self._hooks(model):
            calibration.run(model, bar)
        return self.stats

    @contextmanager
    def _hooks(self, model: nn.Module) -> Iterator[None]:
        seen: dict[str, int] = {}
        expected = {c.name: self.calls.get(c.name, 0) for c in self.members}

        def hook_for(consumer: Consumer):
            def hook(module: nn.Module, args: tuple, kwargs: dict) -> None:
                x = args[0] if args else next(iter(kwargs.values()))
                rows = consumer.adapter.rows(module, x.detach())
                if not bool(torch.isfinite(rows).all()):
                    raise CalibrationError(
                        f"non-finite activations (NaN or Inf) reach {consumer.name} on the calibration data; "
                        "check the model and the inputs (nothing was changed)"
                    )
                self.stats[consumer.name].add(rows)
                seen[consumer.name] = seen.get(consumer.name, 0) + 1
                if all(expected[n] and seen.get(n, 0) >= expected[n] for n in expected):
                    raise StopForward

            return hook

        handles = [c.module.register_forward_pre_hook(hook_for(c), with_kwargs=True) for c in self.members]
        handles.append(model.register_forward_pre_hook(lambda module, args: seen.clear()))
        try:
            yield
        finally:
            for h in handles:
                h.remove()


@dataclass
class CallPlan:
    """The consumers a model calls, in the order of the first batch, with their calls per batch and
    the tensor each first reads (storage, shape, strides): layers reading the same tensor share a key."""

    order: list[Consumer]
    calls: dict[str, int]
    inputs: dict[str, tuple]


def call_plan(model: nn.Module, calibration: Calibration, members: Sequence[Consumer]) -> CallPlan:
    """Run the first calibration batch with light hooks to find the :class:`CallPlan` of ``members``."""
    order: list[Consumer] = []
    calls: dict[str, int] = {}
    inputs: dict[str, tuple] = {}
    by_module = {id(c.module): c for c in members}

    def hook(module: nn.Module, args: tuple, kwargs: dict) -> None:
        consumer = by_module[id(module)]
        x = args[0] if args else next(iter(kwargs.values()))
        calls[consumer.name] = calls.get(consumer.name, 0) + 1
        if consumer.name not in inputs:
            order.append(consumer)
            inputs[consumer.name] = (x.data_ptr(), tuple(x.shape), x.stride())

    handles = [c.module.register_forward_pre_hook(hook, with_kwargs=True) for c in members]
    try:
        Calibration(calibration.batches[:1], 1).run(model)
    finally:
        for h in handles:
            h.remove()
    return CallPlan(order, calls, inputs)
