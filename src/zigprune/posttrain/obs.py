"""Structured Optimal Brain Surgeon on one layer: the error of removing a group's columns, and the
least-squares update of the columns that stay.

For a layer ``Y = X̃ W̃ᵀ`` (``W̃ = [W, b]`` when it has a bias, ``X̃ = [X, 1]``) with ``H = X̃ᵀX̃``
damped by ``λ = damp · mean(diag H)``, removing the columns ``Q`` and refitting the rest costs
``tr(W̃_Q ([H⁻¹]_QQ)⁻¹ W̃_Qᵀ)`` (Frantar et al., OBC), and the refit is the ridge least-squares
solution ``W̃_K = W̃ H_{:,K} (H_KK)⁻¹`` over the kept columns ``K``. With a bias column the refit
also folds the removed channels' mean contribution into the bias.
"""

from __future__ import annotations

import torch

MAX_DAMP_TRIES = 6


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


def group_errors(
    w: torch.Tensor, h_inv: torch.Tensor, column_group: torch.Tensor, num_groups: int
) -> torch.Tensor:
    """Per group, the OBS error of removing that group's columns alone: ``tr(W_Q ([H⁻¹]_QQ)⁻¹ W_Qᵀ)``.

    ``column_group[j]`` is the group of column ``j`` (-1: none; a bias column is never removed).
    Groups with the same number of columns are solved together as a batch of small systems.
    """
    errors = torch.zeros(num_groups, dtype=torch.float64)
    columns = torch.nonzero(column_group >= 0).reshape(-1)
    if not columns.numel():
        return errors
    groups = column_group[columns]
    order = torch.argsort(groups, stable=True)
    columns, groups = columns[order], groups[order]
    unique, counts = torch.unique_consecutive(groups, return_counts=True)
    starts = torch.cumsum(counts, 0) - counts
    w = w.double()
    for size in counts.unique().tolist():
        pick = counts == size
        index = columns[starts[pick, None] + torch.arange(size)]
        blocks = h_inv[index[:, :, None], index[:, None, :]]
        w_q = w[:, index].permute(1, 2, 0)
        solved = torch.linalg.solve(blocks, w_q)
        errors[unique[pick]] = (w_q * solved).sum((1, 2)).cpu()
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
