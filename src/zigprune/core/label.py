"""Channel identity of traced values.

A :class:`Label` says, for every position of an activation, which channel *element* it belongs to
(``ids``, ``-1`` for none) and whether the position is exactly zero once that element's group is
zeroed (``zero``). Both arrays broadcast to the tensor's shape; ``dims`` marks the dims that carry
ids, so a one-channel tensor is still told apart from one with no channel identity at all.

A :class:`ParamRef` is a parameter or buffer, possibly seen through transposes and unsqueezes, so
that rules can slice it along the right parameter dim.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch


@dataclass
class Label:
    """Per-position element ids and zero-states of one activation (see module docstring)."""

    ids: torch.Tensor
    zero: torch.Tensor
    dims: tuple[bool, ...]
    shape: tuple[int, ...]

    @staticmethod
    def rigid(shape: tuple[int, ...]) -> Label:
        """A value with no channel identity: nothing in it can be removed."""
        one = (1,) * len(shape)
        return Label(
            torch.full(one, -1, dtype=torch.long),
            torch.zeros(one, dtype=torch.bool),
            (False,) * len(shape),
            shape,
        )

    @staticmethod
    def along(ids: torch.Tensor, zero: torch.Tensor | bool, dim: int, shape: tuple[int, ...]) -> Label:
        """A value whose dim ``dim`` carries ``ids`` (1-D) and nothing else."""
        view = [1] * len(shape)
        view[dim] = ids.numel()
        if isinstance(zero, bool):
            zero = torch.full((ids.numel(),), zero, dtype=torch.bool)
        dims = tuple(d == dim for d in range(len(shape)))
        return Label(ids.reshape(view), zero.reshape(view), dims, shape)

    @property
    def labeled(self) -> bool:
        return bool((self.ids >= 0).any())

    def full_ids(self) -> torch.Tensor:
        """Ids over the labeled dims at their real sizes (unlabeled dims stay size 1)."""
        return self.ids.expand(self.label_shape())

    def label_shape(self) -> tuple[int, ...]:
        return tuple(s if d else 1 for s, d in zip(self.shape, self.dims))

    def with_shape(self, shape: tuple[int, ...]) -> Label:
        return Label(self.ids, self.zero, self.dims, tuple(shape))


@dataclass(frozen=True)
class ParamRef:
    """A parameter or buffer seen through view-like ops: ``pdims[d]`` is the parameter dim of tensor dim d."""

    name: str
    kind: str
    shape: tuple[int, ...]
    pdims: tuple[int | None, ...]

    def permute(self, order: list[int], shape: tuple[int, ...]) -> ParamRef:
        return ParamRef(self.name, self.kind, shape, tuple(self.pdims[o] for o in order))


def normalize_dim(dim: int, ndim: int) -> int:
    return dim + ndim if dim < 0 else dim


def expand_dims(label: Label, ndim: int) -> Label:
    """Prepend broadcast dims so that ``label`` has rank ``ndim``."""
    extra = ndim - len(label.shape)
    if extra <= 0:
        return label
    view = (1,) * extra
    return Label(
        label.ids.reshape(view + tuple(label.ids.shape)),
        label.zero.reshape(view + tuple(label.zero.shape)),
        (False,) * extra + label.dims,
        view + label.shape,
    )


def permute(label: Label, order: list[int], shape: tuple[int, ...]) -> Label:
    return Label(
        label.ids.permute(order), label.zero.permute(order), tuple(label.dims[o] for o in order), tuple(shape)
    )


def _boundary(shape: tuple[int, ...], prefix: int) -> int | None:
    """Index j with prod(shape[:j]) == prefix (the largest such j), or None."""
    best, acc = None, 1
    for j in range(len(shape) + 1):
        if acc == prefix:
            best = j
        if j < len(shape):
            acc *= shape[j]
    return best


def reshape(label: Label, out_shape: tuple[int, ...]) -> Label:
    """Carry a label through view/reshape/flatten/unflatten.

    Only the smallest block of dims that holds every labeled dim and maps onto whole output dims is
    materialised, so the cost follows the channel count, not the tensor size.
    """
    in_shape, out_shape = tuple(label.shape), tuple(out_shape)
    labeled = [d for d, flag in enumerate(label.dims) if flag]
    if not labeled:
        return Label.rigid(out_shape)
    lo, hi = labeled[0], labeled[-1] + 1
    while True:
        j_lo = _boundary(out_shape, math.prod(in_shape[:lo]))
        j_hi = _boundary(out_shape, math.prod(in_shape[:hi]))
        if j_lo is not None and j_hi is not None and j_lo <= j_hi:
            break
        if j_lo is None and lo > 0:
            lo -= 1
        elif hi < len(in_shape):
            hi += 1
        elif lo > 0:
            lo -= 1
        else:
            raise ValueError(f"cannot map shape {in_shape} onto {out_shape}")
    block_in = in_shape[lo:hi]
    block_out = out_shape[j_lo:j_hi]
    index = (0,) * lo + (slice(None),) * (hi - lo) + (0,) * (len(in_shape) - hi)
    ids = label.ids.expand(in_shape)[index].reshape(block_in).reshape(block_out)
    zero = label.zero.expand(in_shape)[index].reshape(block_in).reshape(block_out)
    ids, zero, dims = _compress(ids, zero)
    view = (1,) * j_lo + tuple(ids.shape) + (1,) * (len(out_shape) - j_hi)
    flags = (False,) * j_lo + dims + (False,) * (len(out_shape) - j_hi)
    return Label(ids.reshape(view).contiguous(), zero.reshape(view).contiguous(), flags, out_shape)


def _compress(ids: torch.Tensor, zero: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, tuple[bool, ...]]:
    """Collapse dims along which ids and zero-states are constant; keep at least one labeled dim."""
    if ids.dim() == 0:
        return ids, zero, ()
    keep = []
    for d in range(ids.dim()):
        first_ids, first_zero = ids.narrow(d, 0, 1), zero.narrow(d, 0, 1)
        keep.append(
            ids.shape[d] > 1 and not (bool((ids == first_ids).all()) and bool((zero == first_zero).all()))
        )
    if not any(keep) and ids.numel() > 0 and bool((ids >= 0).any()):
        keep[max(range(ids.dim()), key=lambda d: ids.shape[d])] = True
    for d in range(ids.dim()):
        if not keep[d]:
            ids, zero = ids.narrow(d, 0, 1), zero.narrow(d, 0, 1)
    return ids, zero, tuple(keep)


def varying_dims(ids: torch.Tensor) -> list[int]:
    """Dims along which ``ids`` is not constant."""
    return [d for d in range(ids.dim()) if ids.shape[d] > 1 and not bool((ids == ids.narrow(d, 0, 1)).all())]
