"""Structured Optimal Brain Surgeon on one layer: the error of removing a group's columns, and the
least-squares update of the columns that stay.

For a layer ``Y = X̃ W̃ᵀ`` (``W̃ = [W, b]`` when it has a bias, ``X̃ = [X, 1]``) with ``H = X̃ᵀX̃``
damped by ``λ = damp · mean(diag H)``, removing the columns ``Q`` and refitting the rest costs
``tr(W̃_Q ([H⁻¹]_QQ)⁻¹ W̃_Qᵀ)`` (Frantar et al., OBC; removed greedily, cheapest first, as
:func:`group_errors` does), and the refit is the ridge least-squares
solution ``W̃_K = W̃ H_{:,K} (H_KK)⁻¹`` over the kept columns ``K``. With a bias column the refit
also folds the removed channels' mean contribution into the bias.
"""

from __future__ import annotations

import math

import torch

MAX_DAMP_TRIES = 6
STEPS = 64


def damped(h: torch.Tensor, damp: float) -> torch.Tensor:
    """``H + λI`` with ``λ = damp · mean(diag H)`` (at least a tiny floor, so dead inputs stay solvable)."""
    scale = float(h.diagonal().mean()) if h.numel() else 0.0
    lam = max(damp * scale, 1e-12 * max(scale, 1.0), 1e-12)
    return h + lam * torch.eye(h.shape[0], dtype=h.dtype, device=h.device)


def _cholesky(h: torch.Tensor) -> torch.Tensor:
    """Cholesky factor of ``h``, adding more damping if it is not numerically positive definite."""
    extra = 0.0
    for _ in range(MAX_DAMP_TRIES):
        factor, info = torch.linalg.cholesky_ex(h if not extra else damped(h, extra))
        if int(info) == 0:
            return factor
        extra = max(extra * 10, 1e-6)
    raise torch.linalg.LinAlgError("the layer's input statistics are not positive definite")


def inverse(h: torch.Tensor) -> torch.Tensor:
    """``h⁻¹`` for a symmetric positive definite ``h``."""
    return torch.cholesky_inverse(_cholesky(h))


def _by_size(column_group: torch.Tensor) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """The groups of ``column_group`` (-1: none) batched by their number of columns: per size, the
    groups and their column indices ``[groups, size]``."""
    columns = torch.nonzero(column_group >= 0).reshape(-1)
    groups = column_group[columns]
    order = torch.argsort(groups, stable=True)
    columns, groups = columns[order], groups[order]
    unique, counts = torch.unique_consecutive(groups, return_counts=True)
    starts = torch.cumsum(counts, 0) - counts
    batches = []
    for size in counts.unique().tolist():
        pick = counts == size
        batches.append((unique[pick], columns[starts[pick, None] + torch.arange(size)]))
    return batches


def _errors(w: torch.Tensor, h_inv: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """Per row of ``index`` (the columns of one group), ``tr(W_Q ([H⁻¹]_QQ)⁻¹ W_Qᵀ)``."""
    blocks = h_inv[index[:, :, None], index[:, None, :]]
    w_q = w[:, index].permute(1, 2, 0)
    return (w_q * torch.linalg.solve(blocks, w_q)).sum((1, 2))


def group_errors(
    w: torch.Tensor, h_inv: torch.Tensor, column_group: torch.Tensor, num_groups: int, steps: int = STEPS
) -> torch.Tensor:
    """Per group, the OBS error it adds when the groups of this layer are removed cheapest first.

    ``column_group[j]`` is the group of column ``j`` (-1: none; a bias column is never removed). A
    group's error alone, ``tr(W_Q ([H⁻¹]_QQ)⁻¹ W_Qᵀ)``, assumes every other column stays to
    compensate, which a removal of many groups does not leave: summed, such errors let a layer lose
    nearly all its channels at a small predicted cost. So the groups go in ``steps`` rounds, each
    taking the cheapest remaining ones; their joint error is shared among them in proportion to their
    own, and the weights and ``H⁻¹`` of the columns left are updated as the removal leaves them
    (OBS), which costs about as much as inverting ``H`` once. Errors never decrease along that
    order, so sorting by them gives the order back.
    """
    errors = torch.zeros(num_groups, dtype=torch.float64)
    columns = column_group.to(w.device)
    total = int(torch.unique(columns[columns >= 0]).numel())
    if not total:
        return errors
    w, h_inv = w.double(), h_inv.double()
    chunk = max(1, math.ceil(total / steps))
    order: list[torch.Tensor] = []
    shares: list[torch.Tensor] = []
    while bool((columns >= 0).any()):
        batches = _by_size(columns)
        groups = torch.cat([g for g, _ in batches])
        alone = torch.cat([_errors(w, h_inv, index) for _, index in batches]).clamp(min=0)
        cheapest = torch.argsort(alone, stable=True)[:chunk]
        picked, cost = groups[cheapest], alone[cheapest]
        removed = torch.isin(columns, picked)
        q, k = torch.nonzero(removed).reshape(-1), torch.nonzero(~removed).reshape(-1)
        solved = torch.linalg.solve(h_inv[q][:, q], torch.cat([w[:, q].t(), h_inv[q][:, k]], 1))
        joint = (w[:, q].t() * solved[:, : w.shape[0]]).sum()
        w = w[:, k] - w[:, q] @ solved[:, w.shape[0] :]
        h_inv = h_inv[k][:, k] - h_inv[k][:, q] @ solved[:, w.shape[0] :]
        columns = columns[k]
        order.append(picked.cpu())
        weights = cost / cost.sum() if float(cost.sum()) > 0 else torch.full_like(cost, 1 / len(cost))
        shares.append((joint * weights).cpu())
    errors[torch.cat(order)] = torch.cat(shares).cummax(0).values
    return errors


def refit(w: torch.Tensor, h: torch.Tensor, removed: torch.Tensor) -> torch.Tensor:
    """``W̃`` with the columns ``removed`` (bool over columns) at zero and the rest refit by least squares."""
    kept = torch.nonzero(~removed).reshape(-1)
    w = w.double()
    out = torch.zeros_like(w)
    if kept.numel():
        factor = _cholesky(h[kept][:, kept])
        out[:, kept] = torch.cholesky_solve(h[kept] @ w.t(), factor).t()
    return out
