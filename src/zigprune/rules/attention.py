"""Scaled dot-product attention: whole heads are the unit, with grouped-query heads kept aligned.

A head can go only with its query, key and value slices together: zero queries and keys alone
would leave a uniform softmax over non-zero values. With grouped-query attention every query head
of a key/value group goes with that key/value head; with a single key/value head (multi-query
attention) value channels go instead, in every head at once.

Attention written out by hand (``q @ k.transpose(-2, -1)``, softmax, ``attn @ v``) needs no rule
of its own: the matmul rule already ties each head's query, key and value slices, and calls
:func:`eager_heads`, which records the heads as sdpa's are, so construction rewrites the head
counts the module holds.
"""

from __future__ import annotations

import math
from typing import Any

import torch

from ..core.label import Label, ParamRef, expand_dims
from ..core.store import HeadRecord
from .elementwise import tie_param
from .registry import Ctx, rule
from .sizes import module_path


def _heads(ctx: Ctx, value: Any, ndim: int, head: int) -> tuple[torch.Tensor, torch.Tensor, bool]:
    """Per-head ids (one per position of dim ``head``, size 1 elsewhere), whether each head is all zero,
    and whether the tensor is rigid."""
    lab = expand_dims(ctx.label(value), ndim)
    if not lab.labeled:
        return torch.full((1,) * ndim, -1, dtype=torch.long), torch.zeros((1,) * ndim, dtype=torch.bool), True
    if any(flag for d, flag in enumerate(lab.dims) if d not in (head, ndim - 1)):
        ctx.store.poison(lab.ids, f"channels sit on sequence or batch dims of {ctx.name}")
    ids = ctx.store.union_along(lab.full_ids(), [d for d in range(ndim) if d != head])
    zero = lab.zero.expand(lab.label_shape()) & (lab.full_ids() >= 0)
    for d in range(ndim):
        if d != head:
            zero = zero.all(d, keepdim=True)
    return ids, zero, False


def _head_dim(ctx: Ctx, tensors: tuple[Any, ...], ndim: int) -> int | None:
    """The dim that holds the heads: the one dim before the sequence that carries channels in the
    query, key or value (dim -3 in the usual ``[batch, heads, tokens, channels]``; an earlier one when
    windows, blocks or mask units sit between, as in NesT); -3 when none does; None when several do."""
    labeled = set()
    for value in tensors:
        lab = expand_dims(ctx.label(value), ndim)
        if lab.labeled:
            labeled |= {d for d in range(ndim - 2) if lab.dims[d]}
    if len(labeled) > 1:
        return None
    return labeled.pop() if labeled else ndim - 3


def _per_query_head(ids: torch.Tensor, heads_q: int, head: int) -> torch.Tensor:
    heads = ids.shape[head]
    if heads in (1, heads_q):
        return ids
    return ids.repeat_interleave(heads_q // heads, dim=head)


@rule("scaled_dot_product_attention", "_scaled_dot_product_flash_attention_for_cpu")
def sdpa(ctx: Ctx) -> Any:
    store = ctx.store
    out_shape = ctx.out_shape
    shape = tuple(out_shape[0]) if isinstance(out_shape, list) else tuple(out_shape)
    ndim = len(shape)
    q, k, v = ctx["query"], ctx["key"], ctx["value"]
    head = _head_dim(ctx, (q, k, v), ndim)
    if head is None:
        ctx.poison_inputs(f"channels of {ctx.name} sit on more than one dim before the tokens")
        store.cost(_sdpa_macs(q, k, v, shape))
        return ctx.rigid_out()
    heads_q = q.shape[head]
    if heads_q > 1 and k.shape[head] == v.shape[head] == 1 and head == ndim - 3:
        out = _multi_query(ctx, q, k, v, shape)
        return [out, *ctx.rigid_out()[1:]] if isinstance(out_shape, list) else out
    (qh, _, q_rigid), (kh_own, _, k_rigid), (vh, vz, v_rigid) = (
        _heads(ctx, t, ndim, head) for t in (q, k, v)
    )
    if heads_q % max(kh_own.shape[head], 1) or heads_q % max(vh.shape[head], 1):
        ctx.poison_inputs(f"the key/value heads of {ctx.name} do not divide its query heads")
        store.cost(_sdpa_macs(q, k, v, shape))
        return ctx.rigid_out()
    kh, vh, vz = (_per_query_head(t, heads_q, head) for t in (kh_own, vh, vz))
    ids = torch.full((1,) * ndim, -1, dtype=torch.long)
    for p in (qh, kh, vh):
        full = p.expand(torch.broadcast_shapes(p.shape, ids.shape))
        store.union(ids, full)
        ids = torch.where(ids >= 0, ids, full)
    if (q_rigid or k_rigid or v_rigid) and heads_q > 1:
        store.poison(ids, f"some of query, key and value have no channel identity in {ctx.name}")
    mask = ctx.args.get("attn_mask")
    if isinstance(mask, Label):
        _tie_mask(ctx, expand_dims(mask, ndim), ids, head)
    elif isinstance(mask, ParamRef):
        _tie_param_mask(ctx, mask, ids, ndim, head)
    if not bool((ids >= 0).any()):
        out = Label.rigid(shape)
    else:
        head_ids = ids.reshape(-1)
        if head_ids.numel() == heads_q > 1:
            kv_heads = _kv_heads(kh_own, k.shape[head])
            kv_ids = head_ids.reshape(kv_heads, -1)[:, 0] if heads_q % kv_heads == 0 else head_ids
            store.heads.append(HeadRecord(module_path(ctx.node), head_ids, kv_ids))
        dims = tuple(d == head and ids.shape[d] > 1 for d in range(ndim))
        zero = vz.expand(ids.shape)
        out = Label(ids.contiguous(), (zero & (ids >= 0)).contiguous(), dims, shape)
    store.cost(_sdpa_macs(q, k, v, shape), *([out.full_ids().reshape(-1)] if out.labeled else []))
    return [out, *ctx.rigid_out()[1:]] if isinstance(out_shape, list) else out


def eager_heads(ctx: Ctx, a: Any, b: Any, ndim: int) -> None:
    """Record the heads of a matmul of two activations that both carry heads on dim -3 (``q @ kᵀ``,
    ``attn @ v``): attention written out by hand, whose head count construction must rewrite on the
    calling module (``self.num_heads``, ``self.all_head_size``) as it does for sdpa. The second matmul
    of the same heads adds nothing."""
    if ndim < 3 or isinstance(a, ParamRef) or isinstance(b, ParamRef):
        return
    q, kv = _per_head(ctx, a, ndim), _per_head(ctx, b, ndim)
    if q is None or kv is None or q.numel() % kv.numel():
        return
    module = module_path(ctx.node)
    if any(h.module == module and torch.equal(h.q_heads, q) for h in ctx.store.heads):
        return
    kv_heads = _kv_heads(kv, kv.numel()) if kv.numel() == q.numel() else kv.numel()
    ctx.store.heads.append(HeadRecord(module, q, q.reshape(kv_heads, -1)[:, 0]))


def _per_head(ctx: Ctx, value: Any, ndim: int) -> torch.Tensor | None:
    """One element id per head of an operand whose only labeled dim before the last two is dim -3."""
    lab = expand_dims(ctx.label(value), ndim)
    if not lab.labeled or not lab.dims[ndim - 3] or any(lab.dims[: ndim - 3]):
        return None
    ids = lab.full_ids().movedim(ndim - 3, 0)
    first = ids.reshape(ids.shape[0], -1)[:, 0]
    return None if bool((first < 0).any()) else first.clone()


def _multi_query(ctx: Ctx, q: Any, k: Any, v: Any, shape: tuple[int, ...]) -> Label:
    """One key/value head shared by every query head (MobileNetV5's multi-query attention): no head
    can go, as a head without queries and keys still averages the values, and all of them together
    are the whole attention. A value channel can, in every head at once: it is summed by nothing."""
    ndim = len(shape)
    (qh, _, _), (kh, _, _) = _heads(ctx, q, ndim, ndim - 3), _heads(ctx, k, ndim, ndim - 3)
    reason = (
        f"queries and keys of {ctx.name} share one key/value head, so they go only with the whole attention"
    )
    ctx.store.poison(torch.cat([qh.reshape(-1), kh.reshape(-1)]), reason)
    mask = ctx.args.get("attn_mask")
    if isinstance(mask, Label):
        _tie_mask(ctx, expand_dims(mask, ndim), qh, ndim - 3)
    lab = expand_dims(ctx.label(v), ndim)
    batch, source, value_dim = math.prod(shape[:-2]), k.shape[-2], v.shape[-1]
    ctx.store.cost(batch * q.shape[-2] * source * q.shape[-1])
    if any(lab.dims[:-1]):
        ctx.store.poison(lab.ids, f"channels sit on sequence or batch dims of {ctx.name}")
    if not lab.labeled or any(lab.dims[:-1]):
        ctx.store.cost(batch * q.shape[-2] * source * value_dim)
        return Label.rigid(shape)
    ids = lab.full_ids()
    zero = lab.zero.expand(lab.label_shape()) & (ids >= 0)
    ctx.store.cost(batch * q.shape[-2] * source * value_dim, ids.reshape(-1))
    return Label(ids, zero, lab.dims, shape)


def _tie_mask(ctx: Ctx, mask: Label, ids: torch.Tensor, head: int) -> None:
    """A per-head additive mask (relative position bias) goes with its head; anything else is refused."""
    if any(flag for d, flag in enumerate(mask.dims) if d != head):
        ctx.store.poison(mask.ids, f"channels reach the attention mask of {ctx.name}")
    elif mask.dims[head]:
        ctx.store.union(mask.full_ids(), ids)
    elif mask.shape[head] > 1:
        ctx.store.poison(ids, f"the attention mask of {ctx.name} differs per head")


def _tie_param_mask(ctx: Ctx, mask: ParamRef, ids: torch.Tensor, ndim: int, head: int) -> None:
    """A bias parameter used as the mask (a relative-position bias): its head dim is cut with the heads,
    as an elementwise partner's would be, and no other dim may be cut; a constant mask that differs per
    head keeps every head."""
    own = head - (ndim - len(mask.shape))
    if mask.kind == "constant":
        if 0 <= own < len(mask.shape) and mask.shape[own] > 1:
            ctx.store.poison(ids, f"the attention mask of {ctx.name} differs per head")
        return
    tie_param(ctx, mask, ids, tuple(d == head for d in range(ndim)), (1,) * ndim)
    for d, (size, pdim) in enumerate(zip(mask.shape, mask.pdims)):
        if d != own and pdim is not None and size > 1:
            reason = f"{mask.name} is read whole as the attention mask of {ctx.name}"
            ctx.store.poison(ctx.store.pdim(mask.name, pdim, size), reason)


def _sdpa_macs(q: Any, k: Any, v: Any, out_shape: tuple[int, ...]) -> int:
    return math.prod(out_shape[:-2]) * q.shape[-2] * k.shape[-2] * (q.shape[-1] + v.shape[-1])


def _kv_heads(kh: torch.Tensor, heads: int) -> int:
    """Key/value heads before any repeat: copies made by ``repeat_interleave`` (or expand and reshape)
    of one head share its ids, so grouped-query attention that repeats its keys is still seen as such."""
    flat = kh.reshape(-1)
    if flat.numel() != heads or bool((flat < 0).any()):
        return heads
    runs = torch.unique_consecutive(flat)
    if heads % runs.numel() or not torch.equal(runs.repeat_interleave(heads // runs.numel()), flat):
        return heads
    return runs.numel()
