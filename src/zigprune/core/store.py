"""The facts channel rules record while walking the graph.

Element ids are handed out here; rules record which elements must be removed together (unions),
which can never be removed (poison, with a reason), which slice of which parameter each element
owns (producer slices are zeroed with their group; consumer slices are only cut at construction),
which module attributes count which elements (sizes that construction rewrites), and how many MACs
each op spends per channel. Everything is resolved once, after the walk.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
from torch import nn

from .attributes import attribute_slice, size_attributes
from .label import ParamRef


@dataclass
class MacRecord:
    """One op's MACs and the channel id vectors whose kept fraction scales them."""

    macs: int
    factors: list[torch.Tensor]


@dataclass
class HeadRecord:
    """An attention op: its module path and the query/key head ids, to rewrite head counts later."""

    module: str
    q_heads: torch.Tensor
    kv_heads: torch.Tensor


@dataclass
class Store:
    """Accumulates ids, unions, poison, parameter slices and costs for one analysis."""

    count: int = 0
    union_a: list[torch.Tensor] = field(default_factory=list)
    union_b: list[torch.Tensor] = field(default_factory=list)
    poisoned: list[tuple[torch.Tensor, str]] = field(default_factory=list)
    pdims: dict[tuple[str, int], torch.Tensor] = field(default_factory=dict)
    producers: set[tuple[str, int]] = field(default_factory=set)
    macs: list[MacRecord] = field(default_factory=list)
    joints: list[torch.Tensor] = field(default_factory=list)
    heads: list[HeadRecord] = field(default_factory=list)
    model: nn.Module | None = None

    def fresh(self, n: int) -> torch.Tensor:
        ids = torch.arange(self.count, self.count + n, dtype=torch.long)
        self.count += n
        return ids

    def pdim(self, name: str, dim: int, size: int, producer: bool = False) -> torch.Tensor:
        """Element ids of dim ``dim`` of parameter/buffer ``name`` (created on first use)."""
        key = (name, dim)
        if key not in self.pdims:
            self.pdims[key] = self.fresh(size)
        if producer:
            self.producers.add(key)
        return self.pdims[key]

    def size_attributes(self, module: str) -> dict[str, int | tuple[int, ...]]:
        """Int and int-tuple attributes of the module at path ``module`` (empty without a model)."""
        if self.model is None:
            return {}
        try:
            return size_attributes(self.model.get_submodule(module))
        except AttributeError:
            return {}

    def scalar(self, ref: ParamRef) -> float | None:
        """The value of a one-element buffer (a clamp bound, say), or None where it is not known here.

        Parameters are left out: training changes them, so nothing may depend on their value.
        """
        if self.model is None or ref.kind != "buffer" or math.prod(ref.shape) != 1:
            return None
        try:
            value = self.model.get_buffer(ref.name)
        except AttributeError:
            return None
        return None if value.is_meta else float(value.reshape(()))

    def track(self, module: str, name: str, ids: torch.Tensor, index: int = 0) -> None:
        """Attribute ``name`` of module ``module`` (element ``index`` of a tuple) counts positions ``ids``.

        Construction sets it to the number of those positions that are kept. Tracking the same
        attribute again ties the new positions to the earlier ones one by one, so every op that reads
        it still agrees with the rewritten value.
        """
        ids = ids.reshape(-1)
        self.union(self.pdim(attribute_slice(module, name), index, ids.numel()), ids)

    def union(self, a: torch.Tensor, b: torch.Tensor) -> None:
        """Elements at matching (broadcast) positions of ``a`` and ``b`` are removed together."""
        a, b = torch.broadcast_tensors(a, b)
        keep = (a >= 0) & (b >= 0)
        if bool(keep.any()):
            self.union_a.append(a[keep])
            self.union_b.append(b[keep])

    def union_along(
        self, ids: torch.Tensor, dims: list[int], reason: str = "channels are tied to fixed ones"
    ) -> torch.Tensor:
        """Tie together all elements along ``dims``; return ids with those dims narrowed to size 1.

        A tied slice that also holds positions without channel identity can never be removed, so its
        elements are poisoned (with ``reason``).
        """
        self.refuse_mixed(ids, dims, reason)
        first = ids
        for d in dims:
            first = first.narrow(d, 0, 1)
        self.union(ids, first)
        return first

    def refuse_mixed(self, ids: torch.Tensor, dims: list[int], reason: str) -> None:
        """Poison every slice along ``dims`` that mixes elements with positions of no channel identity."""
        if not dims or not bool((ids < 0).any()):
            return
        rigid = (ids < 0).amax(dim=dims, keepdim=True)
        if bool(rigid.any()):
            self.poison(ids[rigid.expand_as(ids) & (ids >= 0)], reason)

    def poison(self, ids: torch.Tensor, reason: str) -> None:
        flat = ids.reshape(-1)
        flat = flat[flat >= 0]
        if flat.numel():
            self.poisoned.append((flat, reason))

    def poison_param(self, ref: ParamRef, reason: str) -> None:
        """A parameter read whole: none of its dims may be cut. Buffers are only cut if already sliced."""
        for d, size in enumerate(ref.shape):
            pdim = ref.pdims[d]
            if pdim is None or size <= 1 or ref.kind == "constant":
                continue
            if ref.kind == "param" or (ref.name, pdim) in self.pdims:
                self.poison(self.pdim(ref.name, pdim, size), reason)

    def joint(self, ids: torch.Tensor) -> None:
        """Remember an id array that spans several dims: it must end up prunable along one dim only."""
        if sum(s > 1 for s in ids.shape) > 1:
            self.joints.append(ids)

    def cost(self, macs: int, *factors: torch.Tensor) -> None:
        if macs > 0:
            self.macs.append(
                MacRecord(int(macs), [f.reshape(-1) for f in factors if f.numel() > 1 or f.ge(0).all()])
            )
