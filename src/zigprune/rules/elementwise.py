"""Elementwise ops: broadcasting, parameters as operands, and what each op does to an exact zero.

Zero-invariance is decided per op: ``f(0) == 0`` keeps a zeroed channel zero (ReLU, GELU, tanh …);
ops with ``f(0) != 0`` (sigmoid, exp, ``x + 1``) do not, so a channel zeroed before them is no longer
zero after them, and any later contraction over it blocks its removal.
"""

from __future__ import annotations

from typing import Any

import torch

from ..core.label import Label, ParamRef, expand_dims
from .registry import Ctx, rule

ZERO_PRESERVING = (
    "relu", "gelu", "silu", "tanh", "leaky_relu", "elu", "selu", "celu", "mish", "hardswish", "abs", "neg",
    "sin", "sqrt", "square", "erf", "atan", "asinh", "sign", "floor", "ceil", "round", "trunc", "clone",
    "contiguous", "alias", "detach", "lift_fresh_copy", "_to_copy", "to", "type_as", "hardshrink",
    "softshrink", "sinh", "tan", "asin", "atanh", "expm1", "log1p", "sgn", "conj", "positive",
)  # fmt: skip
NOT_ZERO_PRESERVING = (
    "sigmoid", "exp", "cos", "log", "rsqrt", "reciprocal", "softplus", "hardsigmoid", "erfc", "cosh",
    "acos", "logical_not", "bitwise_not", "isnan", "isinf", "isfinite", "log_sigmoid", "exp2", "log2",
    "log10",
)  # fmt: skip


def passthrough(label: Label, zero: bool | torch.Tensor = True) -> Label:
    """The same channels; zero-states kept (``zero=True``), dropped (``False``) or masked."""
    if zero is True:
        return label
    mask = label.zero & zero if isinstance(zero, torch.Tensor) else torch.zeros_like(label.zero)
    return Label(label.ids, mask, label.dims, label.shape)


@rule(*ZERO_PRESERVING)
def zero_preserving(ctx: Ctx) -> Any:
    first = next(iter(ctx.args.values()))
    if isinstance(first, ParamRef):
        return first.permute(list(range(len(first.shape))), first.shape)
    return passthrough(ctx.label(first).with_shape(tuple(ctx.out_shape)))


@rule(*NOT_ZERO_PRESERVING)
def not_zero_preserving(ctx: Ctx) -> Label:
    first = next(iter(ctx.args.values()))
    return passthrough(ctx.label(first).with_shape(tuple(ctx.out_shape)), False)


@rule("dropout", "native_dropout", "feature_dropout", "alpha_dropout")
def dropout(ctx: Ctx) -> Any:
    out = passthrough(ctx.label(next(iter(ctx.args.values()))))
    return [out, ctx.rigid_out()[1]] if isinstance(ctx.out_shape, list) else out


@rule("hardtanh", "clamp", "clip", "clamp_min", "clamp_max")
def clamp(ctx: Ctx) -> Label:
    """A zero stays zero if the bounds hold 0. A one-element buffer bound counts by its value; other
    tensor bounds are elementwise partners whose values are unknown, so the result never counts as zero."""
    low, high = (_bound(ctx, ctx.args.get(f"{side}_val", ctx.args.get(side))) for side in ("min", "max"))
    bounds = [b for b in (low, high) if isinstance(b, Label | ParamRef)]
    if bounds:
        return combine(ctx, [ctx["self"], *bounds], tuple(ctx.out_shape), "none")
    keeps = (low is None or low <= 0) and (high is None or high >= 0)
    return passthrough(ctx.label(ctx["self"]), keeps)


def _bound(ctx: Ctx, value: Any) -> Any:
    """A clamp bound: a number, a one-element buffer's value where known, or the tensor itself."""
    if isinstance(value, ParamRef):
        known = ctx.store.scalar(value)
        return value if known is None else known
    return value


@rule("pow.Tensor_Scalar")
def power(ctx: Ctx) -> Label:
    return passthrough(ctx.label(ctx["self"]), float(ctx["exponent"]) > 0)


def _operand_zero(
    value: Any, label_shape: tuple[int, ...], dims: tuple[bool, ...], ndim: int
) -> torch.Tensor:
    """Where ``value`` is exactly zero once the channel at that position is zeroed."""
    if isinstance(value, Label):
        lab = expand_dims(value, ndim)
        return (lab.zero & (lab.ids >= 0)).expand(label_shape)
    if isinstance(value, ParamRef):
        off = ndim - len(value.shape)
        covered = all(value.shape[d - off] > 1 for d in range(off, ndim) if dims[d]) and any(dims[off:])
        return torch.full(label_shape, covered and value.kind == "param", dtype=torch.bool)
    if isinstance(value, int | float | bool):
        return torch.full(label_shape, value == 0, dtype=torch.bool)
    return torch.zeros(label_shape, dtype=torch.bool)


def combine(
    ctx: Ctx, operands: list[Any], out_shape: tuple[int, ...], mode: str, zero_of: list[Any] | None = None
):
    """Label of an elementwise result: tie aligned channels together, refuse rigid partners.

    ``mode`` says how zeros combine: ``add`` (zero if every operand is), ``mul`` (if any is),
    ``first`` (if the first is, e.g. division), ``none`` (never, e.g. comparisons).
    """
    store, ndim = ctx.store, len(out_shape)
    acts: list[Label] = []
    for value in operands:
        if isinstance(value, ParamRef) and value.kind == "constant":
            value = Label.rigid(value.shape)
        if isinstance(value, Label):
            lab = expand_dims(value, ndim)
            for d in range(ndim):
                if lab.dims[d] and lab.shape[d] == 1 and out_shape[d] > 1:
                    store.poison(lab.ids, f"a channel is broadcast against a wider tensor in {ctx.name}")
                    lab = Label.rigid(lab.shape)
                    break
            acts.append(lab)
    dims = tuple(any(a.dims[d] for a in acts) for d in range(ndim))
    label_shape = tuple(out_shape[d] if dims[d] else 1 for d in range(ndim))
    ids = torch.full(label_shape, -1, dtype=torch.long)
    for a in acts:
        a_ids = a.ids.expand(label_shape) if a.ids.dim() else a.ids
        store.union(ids, a_ids)
        ids = torch.where(ids >= 0, ids, a_ids)
    for a in acts:
        ids = _refuse_rigid(ctx, a, ids, dims)
    for value in operands:
        if isinstance(value, ParamRef) and value.kind != "constant":
            tie_param(ctx, value, ids, dims, out_shape)
    zero_ops = operands if zero_of is None else zero_of
    zeros = [_operand_zero(v, label_shape, dims, ndim) for v in zero_ops if v is not None]
    if mode == "add":
        zero = torch.stack(zeros).all(0) if zeros else torch.zeros(label_shape, dtype=torch.bool)
    elif mode == "mul":
        zero = torch.stack(zeros).any(0) if zeros else torch.zeros(label_shape, dtype=torch.bool)
    elif mode == "first":
        zero = zeros[0]
    else:
        zero = torch.zeros(label_shape, dtype=torch.bool)
    if sum(s > 1 for s in ids.shape) > 1:
        store.joint(ids)
    return Label(ids, zero & (ids >= 0), dims, tuple(out_shape))


def _refuse_rigid(ctx: Ctx, partner: Label, ids: torch.Tensor, dims: tuple[bool, ...]) -> torch.Tensor:
    """A partner without channel identity that varies along labeled dims cannot be cut there.

    If other labeled dims remain (e.g. heads, when rotary tables vary along the head dim), the
    channels are tied along the partner's dims so that pruning happens along the others; otherwise
    they are unprunable.
    """
    full = [d for d in range(len(dims)) if dims[d] and partner.shape[d] > 1]
    rigid = (partner.ids.expand(ids.shape) < 0) & (ids >= 0)
    if not full or not bool(rigid.any()):
        return ids
    if any(dims[d] and d not in full for d in range(len(dims))):
        ctx.store.union_along(ids, full)
        return ids
    ctx.store.poison(ids[rigid], f"a channel meets a tensor without channel identity in {ctx.name}")
    return ids


def tie_param(ctx: Ctx, ref: ParamRef, ids: torch.Tensor, dims: tuple[bool, ...], out_shape) -> None:
    """A parameter used elementwise owns the slices that line up with labeled channels."""
    off = len(out_shape) - len(ref.shape)
    for d in range(off, len(out_shape)):
        size = ref.shape[d - off]
        if not dims[d] or size == 1:
            continue
        pdim = ref.pdims[d - off]
        if pdim is None:
            ctx.store.poison(ids, f"{ref.name} is reshaped before use in {ctx.name}")
            continue
        pids = ctx.store.pdim(ref.name, pdim, size, producer=ref.kind == "param")
        view = [1] * len(out_shape)
        view[d] = size
        ctx.store.union(ids, pids.reshape(view))
        rigid = (ids < 0).movedim(d, 0).reshape(size, -1).any(1)
        ctx.store.poison(pids[rigid], f"{ref.name} meets a tensor without channel identity in {ctx.name}")


def _binary(ctx: Ctx, mode: str) -> Label:
    a = ctx.args.get("self", ctx.args.get("input"))
    b = ctx.args.get("other")
    return combine(ctx, [a, b], tuple(ctx.out_shape), mode)


@rule("add", "sub", "maximum", "minimum", "fmax", "fmin", "copysign", "hypot")
def add(ctx: Ctx) -> Label:
    other, alpha = ctx.args.get("other"), ctx.args.get("alpha", 1)
    if isinstance(other, int | float) and alpha != 1:
        ctx.args["other"] = other * alpha
    return _binary(ctx, "add")


@rule("rsub")
def rsub(ctx: Ctx) -> Label:
    return _binary(ctx, "none" if not isinstance(ctx.args.get("other"), Label) else "add")


@rule("mul", "bitwise_and", "logical_and")
def mul(ctx: Ctx) -> Label:
    return _binary(ctx, "mul")


@rule("div", "floor_divide", "remainder", "fmod")
def div(ctx: Ctx) -> Label:
    return _binary(ctx, "first")


@rule(
    "eq", "ne", "gt", "ge", "lt", "le", "logical_or", "logical_xor", "bitwise_or", "bitwise_xor",
    "pow.Tensor_Tensor", "atan2", "xlogy",
)  # fmt: skip
def compare(ctx: Ctx) -> Label:
    return _binary(ctx, "none")


@rule("addcmul", "addcdiv")
def addcmul(ctx: Ctx) -> Label:
    """``self + value * tensor1 * tensor2`` (or ``/ tensor2``): zero where ``self`` and the product are."""
    shape = tuple(ctx.out_shape)
    mode = "mul" if ctx.name.startswith("addcmul") else "first"
    product = combine(ctx, [ctx["tensor1"], ctx["tensor2"]], shape, mode)
    return combine(ctx, [ctx["self"], product], shape, "add")


@rule("where.self", "where.ScalarOther", "where.ScalarSelf", "where.Scalar")
def where(ctx: Ctx) -> Label:
    operands = [ctx["condition"], ctx["self"], ctx["other"]]
    return combine(ctx, operands, tuple(ctx.out_shape), "add", zero_of=operands[1:])


@rule("masked_fill")
def masked_fill(ctx: Ctx) -> Label:
    value = ctx["value"]
    operands = [ctx["self"], ctx["mask"]]
    zero_of = [ctx["self"], value if isinstance(value, int | float) else None]
    return combine(ctx, operands, tuple(ctx.out_shape), "add", zero_of=[z for z in zero_of if z is not None])


@rule("prelu", "_prelu_kernel")
def prelu(ctx: Ctx) -> Label:
    x, weight = ctx["self"], ctx["weight"]
    lab = ctx.label(x)
    if isinstance(weight, ParamRef) and weight.shape[0] > 1 and len(lab.shape) > 1:
        channel_view = [1] * len(lab.shape)
        channel_view[1] = weight.shape[0]
        dims = tuple(0 if d == 1 else None for d in range(len(lab.shape)))
        ref = ParamRef(weight.name, weight.kind, tuple(channel_view), dims)
        return combine(ctx, [x, ref], tuple(ctx.out_shape), "mul", zero_of=[x])
    return passthrough(lab)
