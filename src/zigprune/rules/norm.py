"""Normalisation layers: per-channel statistics are exact, statistics over channels are not.

BatchNorm and InstanceNorm normalise each channel alone, so their affine parameters join the
channel's group. GroupNorm is exact only if whole normalisation groups go together. LayerNorm and
RMSNorm average over their normalised dims, so channels there can never be removed.
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
    x = ctx.label(ctx["input"])
    normalized = len(ctx["normalized_shape"])
    ndim = len(x.shape)
    if any(x.dims[ndim - normalized :]):
        ctx.store.poison(x.ids, f"channels are normalised together by {ctx.name}")
    for ref in (ctx.args.get("weight"), ctx.args.get("bias")):
        if isinstance(ref, ParamRef):
            for d in range(len(ref.shape)):
                if ref.pdims[d] is not None and ref.shape[d] > 1:
                    pids = ctx.store.pdim(ref.name, ref.pdims[d], ref.shape[d])
                    view = [1] * ndim
                    view[ndim - len(ref.shape) + d] = ref.shape[d]
                    ctx.store.union(x.full_ids(), pids.reshape(view))
    out_shape = ctx.out_shape
    shape = tuple(out_shape[0]) if isinstance(out_shape, list) else tuple(out_shape)
    out = Label(x.ids, torch.zeros_like(x.zero), x.dims, shape)
    if isinstance(out_shape, list):
        return [out, *ctx.rigid_out()[1:]]
    return out
