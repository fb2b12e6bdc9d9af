"""Shape ops: views, permutes, concatenation, slicing and selection, with channel offsets kept exact.

Selecting along a channel dim would bake offsets into the model's code, so the channels are tied
along that dim or, where that is impossible, left unprunable. Splitting is in
:mod:`zigprune.rules.split`, repeating in :mod:`zigprune.rules.tiling`.
"""

from __future__ import annotations

from typing import Any

import torch

from ..core.label import Label, ParamRef, normalize_dim, permute, reshape
from .elementwise import combine
from .registry import Ctx, rule


def _param_view(ref: ParamRef, out_shape: tuple[int, ...]) -> ParamRef | None:
    """A parameter reshaped only by adding or dropping size-1 dims keeps its dim mapping; so do the
    dims of an equal leading or trailing run when only dims without a mapping are reshaped between
    (``table[index].view(N, N, heads)``: the heads stay parameter dim 1)."""
    kept = [(s, p) for s, p in zip(ref.shape, ref.pdims) if s != 1]
    if [s for s in out_shape if s != 1] == [s for s, _ in kept]:
        it = iter(p for _, p in kept)
        return ParamRef(
            ref.name, ref.kind, tuple(out_shape), tuple(next(it) if s != 1 else None for s in out_shape)
        )
    n_in, n_out = len(ref.shape), len(out_shape)
    head = next((i for i in range(min(n_in, n_out)) if ref.shape[i] != out_shape[i]), min(n_in, n_out))
    tail = next((i for i in range(min(n_in, n_out) - head) if ref.shape[-1 - i] != out_shape[-1 - i]),
                min(n_in, n_out) - head)  # fmt: skip
    middle = ref.pdims[head : n_in - tail]
    if any(p is not None and s > 1 for p, s in zip(middle, ref.shape[head : n_in - tail])):
        return None
    pdims = ref.pdims[:head] + (None,) * (n_out - head - tail) + ref.pdims[n_in - tail :]
    return ParamRef(ref.name, ref.kind, tuple(out_shape), pdims)


@rule(
    "view", "reshape", "_unsafe_view", "flatten", "unflatten", "view_as", "reshape_as", "squeeze", "unsqueeze"
)
def view(ctx: Ctx) -> Any:
    src, out_shape = next(iter(ctx.args.values())), tuple(ctx.out_shape)
    if isinstance(src, ParamRef):
        ref = _param_view(src, out_shape)
        return ref if ref is not None else Label.rigid(out_shape)
    return reshape(ctx.label(src), out_shape)


@rule("permute")
def permute_rule(ctx: Ctx) -> Any:
    src = ctx["self"]
    order = [normalize_dim(d, len(ctx.out_shape)) for d in ctx["dims"]]
    if isinstance(src, ParamRef):
        return src.permute(order, tuple(ctx.out_shape))
    return permute(ctx.label(src), order, tuple(ctx.out_shape))


@rule("transpose", "t", "numpy_T", "swapaxes", "movedim")
def transpose(ctx: Ctx) -> Any:
    src = ctx.args.get("self", ctx.args.get("input"))
    ndim = len(ctx.out_shape)
    order = list(range(ndim))
    if ctx.name.startswith("movedim"):
        source, dest = ctx["source"], ctx["destination"]
        source = [source] if isinstance(source, int) else source
        dest = [dest] if isinstance(dest, int) else dest
        moved = [normalize_dim(s, ndim) for s in source]
        rest = [d for d in order if d not in moved]
        order = [None] * ndim
        for s, d in zip(moved, dest):
            order[normalize_dim(d, ndim)] = s
        fill = iter(rest)
        order = [o if o is not None else next(fill) for o in order]
    elif ndim == 2 and "dim0" not in ctx.args:
        order = [1, 0]
    else:
        d0 = normalize_dim(ctx.args.get("dim0", ctx.args.get("axis0")), ndim)
        d1 = normalize_dim(ctx.args.get("dim1", ctx.args.get("axis1")), ndim)
        order[d0], order[d1] = order[d1], order[d0]
    if isinstance(src, ParamRef):
        return src.permute(order, tuple(ctx.out_shape))
    return permute(ctx.label(src), order, tuple(ctx.out_shape))


@rule("expand", "expand_as", "broadcast_to")
def expand(ctx: Ctx) -> Any:
    src, out_shape = ctx["self"], tuple(ctx.out_shape)
    if isinstance(src, ParamRef):
        off = len(out_shape) - len(src.shape)
        pdims = (None,) * off + tuple(
            p if s == out_shape[i + off] else None for i, (s, p) in enumerate(zip(src.shape, src.pdims))
        )
        return ParamRef(src.name, src.kind, out_shape, pdims)
    lab = ctx.label(src)
    off = len(out_shape) - len(lab.shape)
    for d, flag in enumerate(lab.dims):
        if flag and lab.shape[d] == 1 and out_shape[d + off] > 1:
            ctx.store.poison(lab.ids, "a single channel is expanded")
    view = (1,) * off
    return Label(
        lab.ids.reshape(view + tuple(lab.ids.shape)),
        lab.zero.reshape(view + tuple(lab.zero.shape)),
        (False,) * off + lab.dims,
        out_shape,
    )


@rule("cat", "concat", "concatenate")
def cat(ctx: Ctx) -> Label:
    tensors = [t for t in ctx["tensors"] if not (isinstance(t, Label | ParamRef) and 0 in t.shape)]
    out_shape = tuple(ctx.out_shape)
    dim = normalize_dim(ctx.get("dim", 0), len(out_shape))
    labels = [t for t in tensors if isinstance(t, Label)]
    if not any(lab.dims[dim] for lab in labels if len(lab.shape) == len(out_shape)):
        flat = [_squash(t, dim) for t in tensors]
        squashed = out_shape[:dim] + (1,) + out_shape[dim + 1 :]
        lab = combine(ctx, flat, squashed, "add")
        return Label(lab.ids, lab.zero, lab.dims, out_shape)
    dims = tuple(any(lab.dims[d] for lab in labels) for d in range(len(out_shape)))
    pieces_ids, pieces_zero = [], []
    for t in tensors:
        lab = ctx.label(t)
        shape = tuple(lab.shape[d] if (dims[d] or d == dim) else 1 for d in range(len(out_shape)))
        pieces_ids.append(lab.ids.expand(shape) if lab.labeled else torch.full(shape, -1, dtype=torch.long))
        pieces_zero.append(lab.zero.expand(shape) if lab.labeled else torch.zeros(shape, dtype=torch.bool))
    ids, zero = torch.cat(pieces_ids, dim), torch.cat(pieces_zero, dim)
    ctx.store.joint(ids)
    flags = tuple(dims[d] or d == dim for d in range(len(out_shape)))
    return Label(ids, zero, flags, out_shape)


def _squash(value: Any, dim: int) -> Any:
    """Pretend a concatenated input is size 1 along the cat dim, so the rest lines up elementwise."""
    if isinstance(value, Label):
        shape = value.shape[:dim] + (1,) + value.shape[dim + 1 :]
        return Label(value.ids, value.zero, value.dims, shape)
    if isinstance(value, ParamRef):
        shape = value.shape[:dim] + (1,) + value.shape[dim + 1 :]
        return ParamRef(value.name, value.kind, shape, value.pdims)
    return value


@rule("stack")
def stack(ctx: Ctx) -> Label:
    out_shape = tuple(ctx.out_shape)
    dim = normalize_dim(ctx.get("dim", 0), len(out_shape))
    expanded = []
    for t in ctx["tensors"]:
        if isinstance(t, Label):
            lab = (
                reshape(t, t.shape[:dim] + (1,) + t.shape[dim:])
                if t.labeled
                else Label.rigid(t.shape[:dim] + (1,) + t.shape[dim:])
            )
            expanded.append(lab)
        else:
            expanded.append(t)
    squashed = out_shape[:dim] + (1,) + out_shape[dim + 1 :]
    lab = combine(ctx, expanded, squashed, "add")
    return Label(lab.ids, lab.zero, lab.dims, out_shape)


def _pick(ctx: Ctx, lab: Label, dim: int, out_shape: tuple[int, ...], keepdim: bool) -> Label:
    """Result of taking part of dim ``dim``: fine if it carries no channels, else tie it or refuse."""
    if not lab.dims[dim]:
        shape = out_shape if keepdim else out_shape[:dim] + (1,) + out_shape[dim:]
        picked = Label(lab.ids, lab.zero, lab.dims, shape)
    elif sum(lab.dims) > 1:
        ids = ctx.store.union_along(lab.full_ids(), [dim])
        zero = lab.zero.expand(lab.label_shape()).all(dim, keepdim=True)
        flags = tuple(f and d != dim for d, f in enumerate(lab.dims))
        shape = out_shape if keepdim else out_shape[:dim] + (1,) + out_shape[dim:]
        picked = Label(ids, zero, flags, shape)
    else:
        ctx.store.poison(lab.ids, f"channels are indexed at fixed positions by {ctx.name}")
        return Label.rigid(out_shape)
    if keepdim:
        return picked
    return Label(
        picked.ids.squeeze(dim),
        picked.zero.squeeze(dim),
        picked.dims[:dim] + picked.dims[dim + 1 :],
        out_shape,
    )


@rule("slice", "narrow")
def slice_rule(ctx: Ctx) -> Any:
    src = ctx.args.get("self", ctx.args.get("input"))
    out_shape = tuple(ctx.out_shape)
    if isinstance(src, ParamRef):
        return src if tuple(src.shape) == out_shape else Label.rigid(out_shape)
    lab = ctx.label(src)
    dim = normalize_dim(ctx.get("dim", 0), len(lab.shape))
    if lab.shape[dim] == out_shape[dim]:
        return lab.with_shape(out_shape)
    return _pick(ctx, lab, dim, out_shape, keepdim=True)


@rule("select", "index_select")
def select(ctx: Ctx) -> Label:
    lab = ctx.label(ctx["self"])
    dim = normalize_dim(ctx["dim"], len(lab.shape))
    return _pick(ctx, lab, dim, tuple(ctx.out_shape), keepdim=ctx.name.startswith("index_select"))


@rule("index.Tensor", "_unsafe_index.Tensor")
def index(ctx: Ctx) -> Any:
    src, indices = ctx["self"], ctx["indices"]
    if isinstance(src, ParamRef):
        return _param_rows(src, indices, tuple(ctx.out_shape))
    lab = ctx.label(src)
    used = [d for d, idx in enumerate(indices) if idx is not None]
    if lab.labeled and (any(lab.dims[d] for d in used) or len(ctx.out_shape) != len(lab.shape)):
        ctx.store.poison(lab.ids, f"channels go through advanced indexing in {ctx.name}")
        return Label.rigid(tuple(ctx.out_shape))
    return (
        Label(lab.ids, lab.zero, lab.dims, tuple(ctx.out_shape))
        if lab.labeled
        else Label.rigid(ctx.out_shape)
    )


def _param_rows(ref: ParamRef, indices: list[Any], out_shape: tuple[int, ...]) -> Any:
    """Rows of a parameter gathered by one index tensor (a relative-position bias table): the other
    dims keep their mapping, so the table can still be cut along them; anything else is rigid."""
    used = [d for d, idx in enumerate(indices) if idx is not None]
    rest = len(ref.shape) - 1
    if used != [0] or len(out_shape) < rest or tuple(out_shape[len(out_shape) - rest :]) != ref.shape[1:]:
        return Label.rigid(out_shape)
    pdims = (None,) * (len(out_shape) - rest) + ref.pdims[1:]
    return ParamRef(ref.name, ref.kind, out_shape, pdims)


@rule("constant_pad_nd", "pad")
def pad(ctx: Ctx) -> Label:
    lab = ctx.label(ctx["self"])
    widths = list(ctx["pad"])
    ndim = len(lab.shape)
    padded = {ndim - 1 - i // 2 for i, w in enumerate(widths) if w != 0}
    if any(lab.dims[d] for d in padded):
        ctx.store.poison(lab.ids, "channels are padded")
        return Label.rigid(tuple(ctx.out_shape))
    value = ctx.get("value", 0)
    return Label(lab.ids, lab.zero & (value == 0), lab.dims, tuple(ctx.out_shape))


@rule("flip")
def flip(ctx: Ctx) -> Label:
    lab = ctx.label(ctx["self"])
    dims = [
        normalize_dim(d, len(lab.shape)) for d in ctx["dims"] if lab.dims[normalize_dim(d, len(lab.shape))]
    ]
    if not dims:
        return lab
    return Label(lab.ids.flip(dims), lab.zero.flip(dims), lab.dims, lab.shape)


@rule("roll", "pixel_shuffle", "pixel_unshuffle", "channel_shuffle", "native_channel_shuffle")
def scramble(ctx: Ctx) -> Label:
    lab = ctx.label(ctx["self"])
    out_shape = tuple(ctx.out_shape)
    if ctx.name.startswith("roll"):
        dims = ctx["dims"] or list(range(len(lab.shape)))
        if not any(lab.dims[normalize_dim(d, len(lab.shape))] for d in dims):
            return lab
    ctx.store.poison(lab.ids, f"channels are rearranged by {ctx.name}")
    return Label.rigid(out_shape)
