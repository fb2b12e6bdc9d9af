"""Groups as weight values: zero them, measure them, tell which are zero; on the meta device too.

A model built on the meta device has shapes but no values. Analysis, zeroing and construction still
work on it: zeroing is recorded per group instead of written, ``zero_groups`` answers from that
record, and group norms are read from a :class:`TensorSource` (a checkpoint read one tensor at a
time) rather than from the model.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Protocol

import torch
from torch import nn

from ..errors import MetaDeviceError
from .reduction import per_group

if TYPE_CHECKING:
    from .segments import Segments
    from .space import Slice


class TensorSource(Protocol):
    """Where weight values come from when the model holds none: ``tensor(name)`` loads one tensor."""

    def tensor(self, name: str) -> torch.Tensor: ...


def on_meta(model: nn.Module) -> bool:
    """True when any parameter of ``model`` lives on the meta device (shapes without values)."""
    return isinstance(model, nn.Module) and any(p.is_meta for p in model.parameters())


class GroupValues:
    """The value side of a GroupSpace (mixed in): zeroing, norms and zero tests of groups."""

    model: nn.Module
    slices: list[Slice]
    num_groups: int
    class_group: torch.Tensor
    #: Groups zeroed through ``zero_``; the answer to ``zero_groups`` on a meta model.
    zeroed: torch.Tensor
    _slice_index: tuple[list[Slice], Segments]

    def touched(self, class_mask: torch.Tensor, producers: bool = False) -> list[tuple[Slice, torch.Tensor]]:
        """The slices (only producers, with ``producers``) holding a class of ``class_mask`` (a bool mask
        over classes), each with those positions: one count over all slices, then only the touched
        ones are visited (a probe zeroing a few groups of a large model no longer walks every slice)."""
        live, index = self._slice_index
        found = []
        for i in torch.nonzero(index.count(class_mask)).reshape(-1).tolist():
            s = live[i]
            if s.producer or not producers:
                found.append((s, torch.nonzero(class_mask[s.classes]).reshape(-1)))
        return found

    def selected_classes(self, ids: Iterable[int] | torch.Tensor) -> torch.Tensor:
        """The classes of groups ``ids`` as a bool mask over classes."""
        chosen = torch.zeros(self.num_groups + 1, dtype=torch.bool)
        chosen[self._check_ids(ids)] = True
        return chosen[self.class_group]

    def _tensor(self, name: str) -> torch.Tensor:
        try:
            return self.model.get_parameter(name)
        except AttributeError:
            return self.model.get_buffer(name)

    def _check_ids(self, ids: Iterable[int] | torch.Tensor) -> torch.Tensor:
        """Group ids as a long tensor; a bool tensor is a mask over all groups and must have that length."""
        if isinstance(ids, torch.Tensor) and ids.dtype == torch.bool:
            if ids.shape != (self.num_groups,):
                raise IndexError(
                    f"a bool mask of groups must have shape ({self.num_groups},), not {tuple(ids.shape)}"
                )
            return torch.nonzero(ids).reshape(-1)
        ids = torch.as_tensor(
            list(ids) if not isinstance(ids, torch.Tensor) else ids, dtype=torch.long
        ).reshape(-1)
        bad = ids[(ids < 0) | (ids >= self.num_groups)]
        if bad.numel():
            raise IndexError(f"group ids must lie in range({self.num_groups}); got {bad[:5].tolist()}")
        return ids

    @torch.no_grad()
    def zero_(self, ids: Iterable[int] | torch.Tensor) -> GroupValues:
        """Set groups ``ids`` exactly to zero in the model the space was built from, in place.

        On a meta model there is nothing to write: the groups are only recorded as zero.
        """
        ids = self._check_ids(ids)
        self.zeroed[ids] = True
        for s, positions in self.touched(self.selected_classes(ids), producers=True):
            tensor = self._tensor(s.name)
            tensor.index_fill_(s.dim, positions.to(tensor.device), 0)
        return self

    def _per_group(
        self,
        row_stat: Callable[[torch.Tensor], torch.Tensor],
        reduce: str,
        weights: TensorSource | None = None,
    ) -> torch.Tensor:
        """Reduce a per-row statistic of every producer slice into one value per group (float64, CPU)."""
        read = weights.tensor if weights is not None else self._tensor
        slices = (
            (read(s.name).detach(), s.dim, self.class_group[s.classes] % (self.num_groups + 1))
            for s in self.slices
            if s.producer
        )
        return per_group(slices, self.num_groups, row_stat, reduce)

    def group_norms(self, weights: TensorSource | None = None) -> torch.Tensor:
        """L2 norm of every group's producer slices (float64, on CPU).

        ``weights`` (e.g. ``zp.Checkpoint(path)``) supplies the values one tensor at a time, for a
        model on the meta device or one too large to hold; by default the model's own are read.
        """
        if weights is None and on_meta(self.model):
            raise MetaDeviceError(
                "the model is on the meta device and holds no weights; pass group_norms(weights="
                "zp.Checkpoint(path)) to read them from its checkpoint one tensor at a time"
            )
        return self._per_group(
            lambda rows: torch.linalg.vector_norm(rows, dim=1).double().square(), "sum", weights
        ).sqrt()

    def zero_groups(self) -> torch.Tensor:
        """Bool mask of the groups whose every producer slice is exactly zero.

        On a meta model: the groups zeroed through ``zero_`` (there are no values to test).
        """
        if on_meta(self.model):
            return self.zeroed.clone()
        return self._per_group(lambda rows: torch.linalg.vector_norm(rows, float("inf"), dim=1), "amax") == 0
