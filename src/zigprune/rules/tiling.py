"""Repeating ops: ``repeat``, ``tile``, ``repeat_interleave``.

Repeating along a channel dim puts each channel at several positions: the copies carry the same
element id, so they go together, and the repeat count is a count, not a size, so the slim model's
own call still fits once the channel is gone (``(C - k) * r`` positions). Repeating by a tensor of
counts (values unknown here) along a channel dim is refused. A repeated parameter is read whole.
"""

from __future__ import annotations

import math

from ..core.label import Label, normalize_dim, reshape
from .registry import Ctx, rule


def _tiled(lab: Label, reps: list[int], out_shape: tuple[int, ...]) -> Label:
    """Tile ``lab`` by ``reps`` (one count per output dim): copies of a channel keep its id."""
    off = len(reps) - len(lab.shape)
    view = (1,) * off
    ids, zero = lab.ids.reshape(view + tuple(lab.ids.shape)), lab.zero.reshape(view + tuple(lab.zero.shape))
    dims = (False,) * off + lab.dims
    counts = [r if dims[d] else 1 for d, r in enumerate(reps)]
    return Label(ids.repeat(counts), zero.repeat(counts), dims, out_shape)


@rule("repeat")
def repeat(ctx: Ctx) -> Label:
    return _tiled(ctx.whole(ctx["self"]), list(ctx["repeats"]), tuple(ctx.out_shape))


@rule("tile")
def tile(ctx: Ctx) -> Label:
    """``tile`` is ``repeat`` with missing leading counts taken as 1."""
    lab, reps = ctx.whole(ctx["self"]), list(ctx["dims"])
    reps = [1] * (len(lab.shape) - len(reps)) + reps
    return _tiled(lab, reps, tuple(ctx.out_shape))


@rule("repeat_interleave.self_int", "repeat_interleave.self_Tensor")
def repeat_interleave(ctx: Ctx) -> Label:
    lab, out_shape = ctx.whole(ctx["self"]), tuple(ctx.out_shape)
    dim = ctx.args.get("dim")
    if dim is None:
        lab = reshape(lab, (math.prod(lab.shape),)) if lab.labeled else Label.rigid((math.prod(lab.shape),))
        dim = 0
    dim = normalize_dim(dim, len(lab.shape))
    if not lab.dims[dim]:
        return lab.with_shape(out_shape)
    repeats = ctx["repeats"]
    if not isinstance(repeats, int):
        ctx.store.poison(lab.ids, f"channels are repeated by a tensor of counts in {ctx.name}")
        return Label.rigid(out_shape)
    ids, zero = lab.ids.repeat_interleave(repeats, dim), lab.zero.repeat_interleave(repeats, dim)
    return Label(ids, zero, lab.dims, out_shape)
