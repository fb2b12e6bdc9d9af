"""Ops that sum over a channel dim: linear, (batched) matmul, convolutions, embeddings.

The summed dim of one operand and of the other are the same channels, removable only where the
summed values are exactly zero. A weight's output dim is a *producer*: zeroing its rows zeroes the
output channel, which is what a zero-invariant group is made of.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch

from ..core.label import Label, ParamRef, expand_dims
from .attention import eager_heads
from .elementwise import combine
from .registry import Ctx, rule
from .sizes import matching, track


def _param_ids(ctx: Ctx, ref: ParamRef, dim: int, producer: bool) -> torch.Tensor | None:
    pdim = ref.pdims[dim]
    if pdim is None or ref.kind == "constant":
        return None
    return ctx.store.pdim(ref.name, pdim, ref.shape[dim], producer=producer and ref.kind == "param")


@dataclass
class _Side:
    """One matmul operand: contraction ids as ``[..., K, 1]``, output ids, and their zero-states."""

    rigid: bool
    size_k: int
    param: bool = False
    k: torch.Tensor | None = None
    k_zero: torch.Tensor | None = None
    out: torch.Tensor | None = None
    out_zero: torch.Tensor | None = None


def _side(ctx: Ctx, value: Any, ndim: int, is_left: bool) -> _Side:
    k_dim, keep_dim = (-1, -2) if is_left else (-2, -1)
    size_k = value.shape[k_dim]
    if isinstance(value, ParamRef) and value.kind != "constant":
        if any(s > 1 for s in value.shape[:-2]):
            return _Side(rigid=True, size_k=size_k)
        k_ids = _param_ids(ctx, value, len(value.shape) + k_dim, producer=False)
        out_ids = _param_ids(ctx, value, len(value.shape) + keep_dim, producer=True)
        side = _Side(rigid=False, size_k=size_k, param=True)
        if k_ids is not None:
            side.k = k_ids.reshape((1,) * (ndim - 2) + (size_k, 1))
        if out_ids is not None:
            view = [1] * ndim
            view[keep_dim] = value.shape[keep_dim]
            side.out, side.out_zero = out_ids.reshape(view), torch.ones(view, dtype=torch.bool)
        return side
    lab = expand_dims(ctx.label(value), ndim)
    side = _Side(rigid=not lab.labeled, size_k=size_k)
    if side.rigid:
        return side
    ids = lab.full_ids()
    zero = lab.zero.expand(lab.label_shape()) & (ids >= 0)
    on_k = lab.dims[k_dim]
    others = any(flag for d, flag in enumerate(lab.dims) if d != ndim + k_dim)
    if on_k:
        k = ctx.store.union_along(ids, [keep_dim]) if lab.dims[keep_dim] else ids
        k_zero = zero.all(keep_dim, keepdim=True)
        side.k, side.k_zero = (k.transpose(-1, -2), k_zero.transpose(-1, -2)) if is_left else (k, k_zero)
    if others:
        side.out = ctx.store.union_along(ids, [k_dim]) if on_k else ids
        side.out_zero = zero.all(k_dim, keepdim=True)
    return side


def matmul(ctx: Ctx, a: Any, b: Any, out_shape: tuple[int, ...]) -> Label:
    """Label of ``a @ b`` for operands of rank ≥ 2 (parameters or activations)."""
    store, ndim = ctx.store, len(out_shape)
    if len(a.shape) < 2 or len(b.shape) < 2:
        ctx.poison_inputs(f"{ctx.name} with a vector operand")
        return Label.rigid(out_shape)
    sa, sb = _side(ctx, a, ndim, True), _side(ctx, b, ndim, False)
    eager_heads(ctx, a, b, ndim)
    if sa.k is not None and sb.k is not None:
        store.union(sa.k, sb.k)
    for mine, theirs in ((sa, sb), (sb, sa)):
        if mine.k is None or mine.param:
            continue
        if theirs.rigid and theirs.size_k > 1:
            store.poison(
                mine.k, f"channels are summed against a tensor without channel identity in {ctx.name}"
            )
        zero = mine.k_zero if theirs.k_zero is None else mine.k_zero | theirs.k_zero
        k = mine.k.expand(torch.broadcast_shapes(mine.k.shape, zero.shape))
        store.poison(
            k[~zero.expand(k.shape)], f"channels that are not exactly zero are summed away in {ctx.name}"
        )
    out = _out_label(ctx, [s for s in (sa, sb) if s.out is not None], out_shape)
    k_factor = sa.k if sa.k is not None else sb.k
    batch = math.prod(out_shape[:-2]) if ndim > 2 else 1
    store.cost(batch * out_shape[-2] * out_shape[-1] * sa.size_k, *_factors(out, k_factor))
    return out


def _out_label(ctx: Ctx, sides: list[_Side], out_shape: tuple[int, ...]) -> Label:
    ndim = len(out_shape)
    if not sides:
        return Label.rigid(out_shape)
    shape = torch.broadcast_shapes(*(s.out.shape for s in sides))
    ids = torch.full(shape, -1, dtype=torch.long)
    zero = torch.zeros(shape, dtype=torch.bool)
    for s in sides:
        o = s.out.expand(shape)
        ctx.store.union(ids, o)
        ids = torch.where(ids >= 0, ids, o)
        zero = zero | s.out_zero.expand(shape)
    dims = tuple(shape[d] > 1 for d in range(ndim))
    if not any(dims):
        dims = tuple(d == ndim - 1 for d in range(ndim))
    ctx.store.joint(ids)
    return Label(ids.contiguous(), (zero & (ids >= 0)).contiguous(), dims, out_shape)


def _factors(out: Label, k: torch.Tensor | None) -> list[torch.Tensor]:
    """Id vectors whose kept fractions, multiplied, scale an op's MACs: the output's positions (one
    vector over all its labeled dims, which the joint lets vary along one dim only), and the summed
    channels, unless they vary along a labeled batch dim too (``q @ kᵀ``: each head sums its own
    channels, which are that head's group, so the output's vector already counts them)."""
    factors = [out.full_ids().reshape(-1)] if any(out.dims) else []
    if k is not None and not any(k.shape[d] > 1 and out.dims[d] for d in range(k.dim() - 2)):
        factors.append(k.movedim(-2, 0).reshape(k.shape[-2], -1)[:, 0])
    return factors


def _add_bias(ctx: Ctx, out: Label, bias: Any, out_shape: tuple[int, ...]) -> Label:
    if bias is None:
        return out
    return combine(ctx, [out, bias], out_shape, "add")


@rule("linear")
def linear(ctx: Ctx) -> Label:
    weight, out_shape = ctx["weight"], tuple(ctx.out_shape)
    if isinstance(weight, ParamRef):
        w_t = weight.permute([1, 0], (weight.shape[1], weight.shape[0])) if len(weight.shape) == 2 else weight
    else:
        w_t = Label.rigid((weight.shape[1], weight.shape[0]))
    x = ctx["input"]
    out = matmul(ctx, x, w_t, out_shape)
    return _add_bias(ctx, out, ctx.args.get("bias"), out_shape)


@rule("addmm", "baddbmm", "addbmm")
def addmm(ctx: Ctx) -> Label:
    out_shape = tuple(ctx.out_shape)
    out = matmul(ctx, ctx[_first(ctx, "mat1", "batch1")], ctx[_first(ctx, "mat2", "batch2")], out_shape)
    if ctx.get("beta", 1) == 0:
        return out
    return _add_bias(ctx, out, ctx["self"], out_shape)


def _first(ctx: Ctx, *names: str) -> str:
    return next(n for n in names if n in ctx.args)


@rule("mm", "bmm", "matmul")
def mm(ctx: Ctx) -> Label:
    return matmul(ctx, ctx["self"], ctx[_first(ctx, "mat2", "other")], tuple(ctx.out_shape))


def _channels(ctx: Ctx, lab: Label) -> tuple[torch.Tensor, torch.Tensor]:
    """Channel ids and zero-states along dim 1 of a conv/norm input; other labeled dims are refused."""
    if any(flag for d, flag in enumerate(lab.dims) if d != 1):
        ctx.store.poison(lab.ids, f"{ctx.name} sees channels outside its channel dim")
    c = lab.shape[1]
    if not lab.dims[1]:
        return torch.full((c,), -1, dtype=torch.long), torch.zeros(c, dtype=torch.bool)
    ids = lab.full_ids().movedim(1, 0).reshape(c, -1)[:, 0]
    zero = lab.zero.expand(lab.label_shape()).movedim(1, 0).reshape(c, -1)[:, 0] & (ids >= 0)
    return ids, zero


@rule("convolution", "conv1d", "conv2d", "conv3d", "conv_transpose1d", "conv_transpose2d", "conv_transpose3d",
      "_convolution")  # fmt: skip
def conv(ctx: Ctx) -> Label:
    """Input channels feed the weight's input dim; grouped convs go by whole groups, and a group count
    held in an attribute of a module without an updater (BlurPool's ``self.channels``) is tracked."""
    store, out_shape = ctx.store, tuple(ctx.out_shape)
    x, weight, bias = ctx.label(ctx["input"]), ctx["weight"], ctx.args.get("bias")
    transposed = bool(ctx.args.get("transposed", False)) or ctx.name.startswith("conv_transpose")
    groups = int(ctx.get("groups", 1))
    x_ids, x_zero = _channels(ctx, x)
    if not isinstance(weight, ParamRef) or weight.kind == "constant" or None in weight.pdims[:2]:
        store.poison(x_ids, f"{ctx.name} with a computed weight")
        return Label.rigid(out_shape)
    c_in, c_out = x.shape[1], out_shape[1]
    w_out_dim, w_in_dim = (1, 0) if transposed else (0, 1)
    if groups == 1:
        w_in = _param_ids(ctx, weight, w_in_dim, producer=False)
        w_out = _param_ids(ctx, weight, w_out_dim, producer=True)
        store.union(x_ids, w_in)
        store.poison(x_ids[~x_zero], f"channels that are not exactly zero feed {ctx.name}")
        factors = [w_out, w_in]
    else:
        if transposed:
            block = _param_ids(ctx, weight, 0, producer=True)
            w_out = store.fresh(c_out)
        else:
            w_out = _param_ids(ctx, weight, 0, producer=True)
            block = None
        rep = store.union_along(w_out.reshape(groups, c_out // groups), [1])
        track(ctx, matching(ctx, groups), rep)
        x_blocks = x_ids.reshape(groups, c_in // groups)
        store.union(x_blocks, rep)
        if block is not None:
            store.union(block.reshape(groups, -1), rep)
        rigid = (x_blocks < 0).any(1, keepdim=True)
        store.poison(rep[rigid], f"{ctx.name} groups read channels without identity")
        factors = [w_out]
    if isinstance(bias, ParamRef):
        store.union(w_out, store.pdim(bias.name, bias.pdims[0], bias.shape[0], producer=bias.kind == "param"))
    kernel = math.prod(weight.shape[2:])
    if transposed:
        macs = math.prod(x.shape) * (c_out // groups) * kernel
    else:
        macs = math.prod(out_shape) * (c_in // groups) * kernel
    store.cost(macs, *factors)
    return Label.along(w_out, True, 1, out_shape)


@rule("embedding")
def embedding(ctx: Ctx) -> Label:
    weight, out_shape = ctx["weight"], tuple(ctx.out_shape)
    if not isinstance(weight, ParamRef) or weight.pdims[1] is None:
        return Label.rigid(out_shape)
    ids = _param_ids(ctx, weight, 1, producer=True)
    return Label.along(ids, True, len(out_shape) - 1, out_shape)
