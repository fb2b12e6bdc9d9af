"""Splitting ops: ``split``, ``split_with_sizes``, ``chunk``, ``unbind``, ``tensor_split``.

A split channel dim is exact only if the slim model's own call still cuts it into the right pieces:

- **By a count** (``chunk``, ``unbind``, ``tensor_split`` into sections): the pieces are tied
  position by position, so they stay equal (channel k of q, k and v after ``qkv.unbind(0)`` go
  together, which keeps heads aligned). Pieces of unequal size are refused: a cut would move
  channels from one piece to the next; so are pieces of one channel each when nothing else in the
  tensor carries channels (the tied class would be the whole dim, which can never go).
- **By sizes** (``split``, ``split_with_sizes``): sizes held in attributes of the calling module are
  tracked and rewritten at construction (:mod:`zigprune.rules.sizes`). A tuple attribute equal to
  all the sizes lets each piece shrink on its own; an int attribute equal to one size ties the
  pieces of that size together; an attribute equal to the total is rewritten to the kept total.
  Equal sizes no attribute holds (read from a shape, say) are tied as for a count; unequal sizes
  no attribute holds are fixed numbers in the slim model, so those pieces' channels stay.
- **At fixed positions** (``tensor_split`` by indices): refused.
"""

from __future__ import annotations

import torch

from ..core.label import Label, normalize_dim
from .registry import Ctx, rule
from .sizes import matching, module_path, track

COUNTED = ("chunk", "unsafe_chunk", "unbind", "tensor_split.sections")
SIZED = ("split", "unsafe_split", "split_with_sizes", "unsafe_split_with_sizes")


@rule(*COUNTED, *SIZED, "tensor_split")
def split(ctx: Ctx) -> list[Label]:
    lab = ctx.whole(ctx["self"])
    dim = normalize_dim(ctx.get("dim", 0), len(lab.shape))
    unbind = ctx.name.startswith("unbind")
    shapes = [s[:dim] + (1,) + s[dim:] if unbind else s for s in (tuple(s) for s in ctx.out_shape)]
    sizes = [s[dim] for s in shapes]
    if not lab.dims[dim]:
        pieces = [lab.with_shape(s) for s in shapes]
    elif ctx.name.split(".")[0] in SIZED:
        pieces = _sized(ctx, lab, dim, sizes, shapes)
    elif ctx.name in COUNTED or ctx.name.split(".")[0] in COUNTED:
        pieces = _counted(ctx, lab, dim, sizes, shapes)
    else:
        pieces = _refuse(ctx, lab, shapes, f"channels are cut at fixed positions by {ctx.name}")
    return [_squeeze(p, dim) for p in pieces] if unbind else pieces


class _Parts:
    """The ids and zero-states of each piece along the split dim, tied together where needed."""

    def __init__(self, ctx: Ctx, lab: Label, dim: int, sizes: list[int]) -> None:
        self.ctx, self.lab, self.dim = ctx, lab, dim
        ids, zero = lab.full_ids(), lab.zero.expand(lab.label_shape())
        self.ids, self.zero = list(ids.split(sizes, dim)), list(zero.split(sizes, dim))

    def tie(self, members: list[int]) -> None:
        """Tie the pieces ``members`` (of equal size) position by position."""
        if len(members) < 2:
            return
        reason = f"a piece cut by {self.ctx.name} lines up channels with positions without channel identity"
        stacked = torch.stack([self.ids[i] for i in members], self.dim)
        first = self.ctx.store.union_along(stacked, [self.dim], reason).squeeze(self.dim)
        zero = torch.stack([self.zero[i] for i in members], self.dim).all(self.dim)
        for i in members:
            self.ids[i], self.zero[i] = first, zero

    def line(self, i: int) -> torch.Tensor:
        """The ids of piece ``i`` along the split dim (other labeled dims are tied first)."""
        return self.ids[i].movedim(self.dim, 0).reshape(self.ids[i].shape[self.dim], -1)[:, 0]

    def labels(self, shapes: list[tuple[int, ...]]) -> list[Label]:
        return [Label(i, z, self.lab.dims, s) for i, z, s in zip(self.ids, self.zero, shapes)]


def _counted(ctx: Ctx, lab: Label, dim: int, sizes: list[int], shapes: list[tuple[int, ...]]) -> list[Label]:
    if len(set(sizes)) > 1:
        return _refuse(ctx, lab, shapes, f"channels are cut into unequal pieces by {ctx.name}")
    if sizes[0] == 1 and sum(lab.dims) == 1:
        return _refuse(ctx, lab, shapes, f"channels are taken apart one by one by {ctx.name}")
    parts = _Parts(ctx, lab, dim, sizes)
    parts.tie(list(range(len(sizes))))
    return parts.labels(shapes)


def _sized(ctx: Ctx, lab: Label, dim: int, sizes: list[int], shapes: list[tuple[int, ...]]) -> list[Label]:
    """Pieces of a split by sizes: tie or free them after the attributes that hold the sizes."""
    if not ctx.name.startswith(("split_with_sizes", "unsafe_split_with_sizes")) and sizes[-1] != sizes[0]:
        return _refuse(
            ctx, lab, shapes, f"channels are split by {ctx.name} into pieces with a smaller last one"
        )
    whole = matching(ctx, tuple(sizes)) if len(sizes) > 1 and "with_sizes" in ctx.name else []
    each = {size: ([] if whole else matching(ctx, size)) for size in sorted(set(sizes)) if size}
    totals = matching(ctx, sum(sizes))
    if any(each.values()) or whole or totals:
        lab = _one_labeled_dim(ctx, lab, dim)
    parts = _Parts(ctx, lab, dim, sizes)
    for size, names in each.items():
        members = [i for i, s in enumerate(sizes) if s == size]
        if names or (len(each) == 1 and not whole):
            parts.tie(members)
            if names:
                track(ctx, names, parts.line(members[0]))
        elif not whole:
            where = module_path(ctx.node) or "the model"
            for i in members:
                ctx.store.poison(parts.ids[i], f"channels are split by {ctx.name} at sizes fixed in {where}")
    if whole:
        for i in (i for i, size in enumerate(sizes) if size):
            track(ctx, whole, parts.line(i), i)
    if totals:
        track(ctx, totals, torch.cat([parts.line(i) for i in range(len(sizes))]))
    return parts.labels(shapes)


def _one_labeled_dim(ctx: Ctx, lab: Label, dim: int) -> Label:
    """Tie the other labeled dims, so that each position along ``dim`` is one element to count."""
    others = [d for d, flag in enumerate(lab.dims) if flag and d != dim]
    if not others:
        return lab
    ids = ctx.store.union_along(lab.full_ids(), others)
    zero = lab.zero.expand(lab.label_shape())
    for d in others:
        zero = zero.all(d, keepdim=True)
    return Label(ids, zero, tuple(d == dim for d in range(len(lab.dims))), lab.shape)


def _refuse(ctx: Ctx, lab: Label, shapes: list[tuple[int, ...]], reason: str) -> list[Label]:
    ctx.store.poison(lab.ids, reason)
    return [Label.rigid(s) for s in shapes]


def _squeeze(piece: Label, dim: int) -> Label:
    """Drop the size-1 dim ``unbind`` removes."""
    return Label(
        piece.ids.squeeze(dim), piece.zero.squeeze(dim), piece.dims[:dim] + piece.dims[dim + 1 :],
        piece.shape[:dim] + piece.shape[dim + 1 :],
    )  # fmt: skip
