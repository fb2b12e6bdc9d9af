"""Reductions, softmax, pooling and resampling.

Summing over channels is exact when the removed channels are zero; averaging, max, variance or
softmax over channels is not (the divisor or the competitors change), except for a whole slice
along a softmax or cumulative dim when channels also vary along another dim. Over other dims these
ops keep each channel separate, and pooling, resampling and sums of zeros stay zero.
"""

from __future__ import annotations

from typing import Any

import torch

from ..core.label import Label, normalize_dim
from .registry import Ctx, rule

SUM_LIKE = ("sum", "nansum")
ZERO_KEEPING = ("mean", "amax", "amin", "max", "min", "var", "std", "linalg_vector_norm", "norm", "var_mean",
                "std_mean", "nanmean", "prod", "any", "all")  # fmt: skip
ZERO_LOSING = ("logsumexp", "argmax", "argmin")


def _reduce(ctx: Ctx, kind: str) -> Any:
    x = ctx.label(ctx.args.get("self", ctx.args.get("input")))
    ndim = len(x.shape)
    dims = ctx.args.get("dim")
    if dims is None or dims == []:
        dims = list(range(ndim))
    dims = [normalize_dim(d, ndim) for d in ([dims] if isinstance(dims, int) else dims)]
    keepdim = bool(ctx.args.get("keepdim", False))
    out_shape = ctx.out_shape
    shape = tuple(out_shape[0]) if isinstance(out_shape, list) else tuple(out_shape)
    ids, zero = x.full_ids(), x.zero.expand(x.label_shape())
    on_channels = [d for d in dims if x.dims[d]]
    if on_channels:
        if kind == "sum":
            ctx.store.poison(ids[~zero], f"channels that are not exactly zero are summed by {ctx.name}")
        else:
            ctx.store.poison(ids, f"channels are reduced together by {ctx.name}")
    rest = [d for d in range(ndim) if x.dims[d] and d not in dims]
    if on_channels and rest:
        ids = ctx.store.union_along(ids, on_channels)
    elif on_channels:
        ids = torch.full_like(ids, -1)
    for d in dims:
        ids, zero = ids.narrow(d, 0, 1), zero.all(d, keepdim=True)
    flags = tuple(f and d not in dims for d, f in enumerate(x.dims))
    if not keepdim:
        ids, zero = (
            ids.reshape([s for d, s in enumerate(ids.shape) if d not in dims]),
            zero.reshape([s for d, s in enumerate(zero.shape) if d not in dims]),
        )
        flags = tuple(f for d, f in enumerate(flags) if d not in dims)
    if not any(flags):
        out = Label.rigid(shape)
    else:
        out = Label(ids, zero & (ids >= 0) & (kind != "lose"), flags, shape)
    if isinstance(out_shape, list):
        return [out, *ctx.rigid_out()[1:]]
    return out


@rule(*SUM_LIKE)
def sum_rule(ctx: Ctx) -> Any:
    return _reduce(ctx, "sum")


@rule(*ZERO_KEEPING)
def keep_rule(ctx: Ctx) -> Any:
    return _reduce(ctx, "keep")


@rule(*ZERO_LOSING)
def lose_rule(ctx: Ctx) -> Any:
    return _reduce(ctx, "lose")


@rule("softmax", "_softmax", "log_softmax", "_log_softmax", "cumsum", "cumprod", "cummax", "logcumsumexp")
def along_dim(ctx: Ctx) -> Any:
    """Channels along the op's dim compete (softmax) or accumulate (cumsum): none can go alone. If
    channels also vary along other dims (SKNet's softmax over paths, per channel), a whole slice
    along the op's dim can: it is tied and the cut goes across it."""
    x = ctx.label(ctx.args.get("self", ctx.args.get("input")))
    dim = normalize_dim(ctx["dim"], len(x.shape))
    keeps = ctx.name.startswith("cumsum")
    if x.dims[dim] and sum(x.dims) > 1:
        ids = ctx.store.union_along(x.full_ids(), [dim])
        zero = x.zero.expand(x.label_shape()).all(dim, keepdim=True)
        x = Label(ids, zero, tuple(f and d != dim for d, f in enumerate(x.dims)), x.shape)
    elif x.dims[dim]:
        ctx.store.poison(x.ids, f"channels compete in {ctx.name}")
    out = Label(x.ids, x.zero & keeps, x.dims, x.shape)
    return [out, *ctx.rigid_out()[1:]] if isinstance(ctx.out_shape, list) else out


@rule(
    "max_pool1d", "max_pool2d", "max_pool3d", "max_pool2d_with_indices", "max_pool3d_with_indices",
    "avg_pool1d", "avg_pool2d", "avg_pool3d", "adaptive_avg_pool1d", "adaptive_avg_pool2d",
    "adaptive_avg_pool3d", "_adaptive_avg_pool2d", "_adaptive_avg_pool3d", "adaptive_max_pool1d",
    "adaptive_max_pool2d", "adaptive_max_pool3d", "upsample_nearest1d", "upsample_nearest2d",
    "upsample_nearest3d", "upsample_linear1d",
    "upsample_bilinear2d", "upsample_bicubic2d", "upsample_trilinear3d", "_upsample_nearest_exact2d",
    "_upsample_bilinear2d_aa", "_upsample_bicubic2d_aa", "_upsample_nearest_exact1d",
    "_upsample_nearest_exact3d", "lp_pool2d", "fractional_max_pool2d", "reflection_pad1d", "reflection_pad2d",
    "replication_pad1d", "replication_pad2d", "reflection_pad3d", "replication_pad3d",
)  # fmt: skip
def spatial(ctx: Ctx) -> Any:
    x = ctx.label(ctx.args.get("self", ctx.args.get("input")))
    out_shape = ctx.out_shape
    shape = tuple(out_shape[0]) if isinstance(out_shape, list) else tuple(out_shape)
    spatial_dims = _spatial_count(ctx.name)
    if any(x.dims[len(x.shape) - spatial_dims :]):
        ctx.store.poison(x.ids, f"channels sit on the spatial dims of {ctx.name}")
        out = Label.rigid(shape)
    else:
        out = Label(x.ids, x.zero, x.dims, shape)
    return [out, *ctx.rigid_out()[1:]] if isinstance(out_shape, list) else out


def _spatial_count(name: str) -> int:
    for n in ("3d", "2d", "1d"):
        if n in name.split(".")[0]:
            return int(n[0])
    return 2
