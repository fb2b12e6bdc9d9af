"""Normalisation layers: per-channel statistics are exact, statistics over channels are not.

BatchNorm and InstanceNorm normalise each channel alone, so their affine parameters join the
channel's group. GroupNorm is exact only if whole normalisation groups go together. LayerNorm and
RMSNorm average over their normalised dims, so a channel there can never be removed alone; only
whole normalised slices can, where channels also vary along another dim (a per-head ``q_norm``).
"""

from __future__ import annotations

from typing import Any

import torch

from ..core.label import Label, ParamRef
from .contraction import _channels
from .registry import Ctx, rule


def _tie_channel_params(ctx: Ctx, ids: torch.Tensor, params: list[Any], producer: bool) -> None:
    for ref in params:
        if not isinstance(ref, ParamRef) or ref.kind == "constant" or ref.pdims[0] is None:
            continue
        pids = ctx.store.pdim(ref.name, ref.pdims[0], ref.shape[0], producer=producer and ref.kind == "param")
        ctx.store.union(ids, pids)
        ctx.store.poison(pids[ids < 0], f"{ctx.name} parameters of channels without identity")


def _per_channel(ctx: Ctx, keeps_zero: bool, group_count: int | None = None) -> Label:
    """Per-channel normalisation: zeroed weight and bias give exact zeros; without weight only the
    input's zeros can survive, and only if normalising a zero channel gives zero (``keeps_zero``)."""
    x = ctx.label(ctx["input"])
    ids, zero = _channels(ctx, x)
    if group_count and group_count < ids.numel():
        ctx.store.union_along(ids.reshape(group_count, -1), [1])
        per_group = zero.reshape(group_count, -1)
        zero = per_group.all(1, keepdim=True).expand_as(per_group).reshape(-1)
    weight, bias = ctx.args.get("weight"), ctx.args.get("bias")
    _tie_channel_params(ctx, ids, [weight, bias], producer=True)
    buffers = [ctx.args.get("running_mean"), ctx.args.get("running_var")]
    _tie_channel_params(ctx, ids, [b for b in buffers if b is not None], producer=False)
    if weight is not None:
        out_zero = torch.ones_like(zero)
    elif bias is not None or not keeps_zero:
        out_zero = torch.zeros_like(zero)
    else:
        out_zero = zero
    out_shape = ctx.out_shape
    shape = tuple(out_shape[0]) if isinstance(out_shape, list) else tuple(out_shape)
    out = Label.along(ids, out_zero & (ids >= 0), 1, shape) if x.dims[1] else Label.rigid(shape)
    if isinstance(out_shape, list):
        return [out, *ctx.rigid_out()[1:]]
    return out


@rule("batch_norm", "_native_batch_norm_legit_no_training", "_native_batch_norm_legit", "native_batch_norm",
      "_native_batch_norm_legit_functional", "cudnn_batch_norm", "_batch_norm_with_update",
      "_batch_norm_no_update")  # fmt: skip
def batch_norm(ctx: Ctx) -> Label:
    return _per_channel(ctx, keeps_zero=False)


@rule("instance_norm")
def instance_norm(ctx: Ctx) -> Label:
    return _per_channel(ctx, keeps_zero=True)


@rule("group_norm", "native_group_norm")
def group_norm(ctx: Ctx) -> Label:
    groups = ctx.args.get("num_groups", ctx.args.get("group"))
    return _per_channel(ctx, keeps_zero=True, group_count=int(groups))


@rule("layer_norm", "native_layer_norm", "rms_norm", "_fused_rms_norm")
def layer_norm(ctx: Ctx) -> Any:
    """Channels on the normalised dims are averaged together, so none can go alone. If channels also
    vary along other dims (heads, under a per-head ``q_norm``), whole normalised slices can: they
    are tied, and the affine parameters, shared by every slice, are read whole. An all-zero slice
    normalises to zero unless a bias is added."""
    x = ctx.label(ctx["input"])
    ndim = len(x.shape)
    normalized = list(range(ndim - len(ctx["normalized_shape"]), ndim))
    on = [d for d in normalized if x.dims[d]]
    params = [ref for ref in (ctx.args.get("weight"), ctx.args.get("bias")) if isinstance(ref, ParamRef)]
    if not x.labeled or len(on) == sum(x.dims):
        if on:
            ctx.store.poison(x.ids, f"channels are normalised together by {ctx.name}")
        for ref in params:
            _tie_affine(ctx, x, ref)
        out = Label(x.ids, torch.zeros_like(x.zero), x.dims, x.shape)
    else:
        ids = ctx.store.union_along(x.full_ids(), on)
        zero = x.zero.expand(x.label_shape())
        for d in on:
            zero = zero.all(d, keepdim=True)
        flags = tuple(f and d not in on for d, f in enumerate(x.dims))
        out = Label(ids, zero & (ids >= 0) & (ctx.args.get("bias") is None), flags, x.shape)
        for ref in params:
            ctx.store.poison_param(ref, f"{ref.name} is shared by every slice {ctx.name} normalises")
    out_shape = ctx.out_shape
    shape = tuple(out_shape[0]) if isinstance(out_shape, list) else tuple(out_shape)
    out = out.with_shape(shape)
    if isinstance(out_shape, list):
        return [out, *ctx.rigid_out()[1:]]
    return out


def _tie_affine(ctx: Ctx, x: Label, ref: ParamRef) -> None:
    """The affine parameters of a normalisation over the channels go with those channels."""
    ndim = len(x.shape)
    for d in range(len(ref.shape)):
        if ref.pdims[d] is not None and ref.shape[d] > 1:
            pids = ctx.store.pdim(ref.name, ref.pdims[d], ref.shape[d])
            view = [1] * ndim
            view[ndim - len(ref.shape) + d] = ref.shape[d]
            ctx.store.union(x.full_ids(), pids.reshape(view))
