"""Vectorised per-group reductions and updates over a GroupSpace's producer slices.

A group's vector is the concatenation of its rows in every producer slice (weight rows, biases,
norm scales …). Optimizers need norms, dot products and scalings of these vectors every step, so
each slice keeps its group index per row and everything is one scatter (``per_group``)/gather per slice.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from .reduction import Slices, per_group
from .shards import local, local_rows
from .space import GroupSpace


@dataclass
class ProducerSlice:
    """One parameter dim owned by groups: the group of each row (``num_groups`` for none)."""

    param: nn.Parameter
    dim: int
    group: torch.Tensor

    def local(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The rank's block of the parameter (all of it unless sharded) and the group of each of its rows."""
        block, group, _ = local_rows(self.param.detach(), self.dim, self.group)
        return block, group


class Grouping:
    """Per-group operations on the producer slices of ``space`` (see module docstring)."""

    def __init__(self, space: GroupSpace) -> None:
        self.num_groups = space.num_groups
        params = dict(space.model.named_parameters())
        self.slices: list[ProducerSlice] = []
        for s in space.slices:
            if s.producer and s.name in params:
                group = space.class_group[s.classes]
                group = torch.where(group >= 0, group, self.num_groups)
                param = params[s.name]
                self.slices.append(ProducerSlice(param, s.dim, group.to(param.device)))
        self.sizes = self._sizes()
        self._pinned: tuple[torch.Tensor, list[tuple[ProducerSlice, torch.Tensor]]] | None = None

    def _sizes(self) -> torch.Tensor:
        """Number of values in each group's vector (at least 1)."""

        def row_size(rows: torch.Tensor) -> torch.Tensor:
            return torch.full(rows.shape[:1], float(rows.shape[1]), dtype=torch.float64, device=rows.device)

        return per_group(self.slices_of(), self.num_groups, row_size).clamp(min=1)

    def slices_of(self, params: set[int] | None = None) -> Slices:
        """``(param, dim, group)`` of each producer slice for ``per_group``; only ``params`` (ids) if set."""
        for s in self.slices:
            if params is None or id(s.param) in params:
                yield s.param.detach(), s.dim, s.group

    def reduce(
        self, tensors: dict[int, torch.Tensor] | None = None, other: dict[int, torch.Tensor] | None = None
    ) -> torch.Tensor:
        """Per-group float32 sum of squares of ``tensors`` (params by default), or of ``tensors * other``."""
        return per_group(
            self._products(tensors, other), self.num_groups, lambda rows: rows.sum(1), dtype=torch.float32
        )

    def _products(
        self, tensors: dict[int, torch.Tensor] | None, other: dict[int, torch.Tensor] | None
    ) -> Slices:
        """``tensors * other`` (or ``tensors`` squared) on every producer slice where both are given."""
        for s in self.slices:
            a = s.param.detach() if tensors is None else tensors.get(id(s.param))
            b = a if other is None else other.get(id(s.param))
            if a is not None and b is not None:
                yield a.float() * b.float(), s.dim, s.group

    def norms(self) -> torch.Tensor:
        return self.reduce().clamp(min=0).sqrt()

    def padded(self, values: torch.Tensor, fill: float | bool) -> dict[torch.device, torch.Tensor]:
        """``values`` plus one ``fill`` entry (for rows of no group), per device of the sliced params."""
        full = torch.cat([values, torch.tensor([fill], dtype=values.dtype)])
        return {d: full.to(d) for d in {s.param.device for s in self.slices}}

    @staticmethod
    def expand(full: dict[torch.device, torch.Tensor], s: ProducerSlice) -> torch.Tensor:
        """Padded per-group values laid out along slice ``s``'s dim, ready to broadcast against its param."""
        values = full[s.param.device]
        if values.dtype != torch.bool:
            values = values.to(s.param.dtype)
        block, group = s.local()
        shape = [1] * block.dim()
        shape[s.dim] = block.shape[s.dim]
        return values[group].reshape(shape)

    def row_mean(self, values: dict[int, float]) -> torch.Tensor:
        """Per-group mean over the group's values of a per-parameter number (``values[id(param)]``).

        Rows in parameters missing from ``values`` count as 0, so ``row_mean({id(p): 1.0})`` is the share
        of each group's values that lies in ``p`` (e.g. the groups a frozen parameter touches).
        """

        def weighted() -> Slices:
            for s in self.slices:
                if id(s.param) in values:
                    rows, width = s.param.shape[s.dim], s.param.numel() // max(s.param.shape[s.dim], 1)
                    value = float(values[id(s.param)]) * width
                    yield torch.full((rows, 1), value, dtype=torch.float64), 0, s.group.cpu()

        return per_group(weighted(), self.num_groups, lambda rows: rows[:, 0]) / self.sizes

    def params(self) -> list[nn.Parameter]:
        """The parameters that hold producer slices, each once."""
        return list({id(s.param): s.param for s in self.slices}.values())

    @torch.no_grad()
    def scale_(self, factors: torch.Tensor) -> None:
        """Multiply every group's producer rows by ``factors[group]`` (rows of no group are left alone)."""
        full = self.padded(factors, 1.0)
        for s in self.slices:
            local(s.param).mul_(self.expand(full, s))

    @torch.no_grad()
    def add_(
        self, tensors: dict[int, torch.Tensor], factors: torch.Tensor, source: dict[int, torch.Tensor]
    ) -> None:
        """``tensors[p] += factors[group] * source[p]`` on every producer row (e.g. group-lasso gradients)."""
        full = self.padded(factors, 0.0)
        for s in self.slices:
            t, src = tensors.get(id(s.param)), source.get(id(s.param))
            if t is not None and src is not None:
                local(t).add_(self.expand(full, s) * local(src))

    @torch.no_grad()
    def zero_(self, mask: torch.Tensor, tensors: list[dict[int, torch.Tensor]] = ()) -> None:
        """Set the rows of the groups in ``mask`` to exactly zero in the params and in ``tensors``.

        The row masks of the last ``mask`` are kept, so pinning the same groups every step is cheap.
        """
        if self._pinned is None or not torch.equal(self._pinned[0], mask):
            full = self.padded(mask, False)
            rows = [(s, self.expand(full, s)) for s in self.slices]
            self._pinned = (mask.clone(), [(s, r) for s, r in rows if bool(r.any())])
        for s, rows in self._pinned[1]:
            local(s.param).masked_fill_(rows, 0)
            for extra in tensors:
                t = extra.get(id(s.param))
                if t is not None:
                    local(t).masked_fill_(rows, 0)
