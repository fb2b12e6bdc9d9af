"""Allocators: turn per-group scores into the set of groups to remove, to meet a ``Target``.

Every allocator has the signature ``(space, scores, target, taken=None) -> bool mask`` over the
groups; the mask includes ``taken`` (groups already removed by earlier rounds) and meets the target's
MACs, params or group budget with exact costs (``space.macs``/``space.params``). No family is ever
emptied unless it keeps unprunable channels.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace

import torch

from ..core.selection import Target, check_reachable, cost_left, goal, select
from ..core.space import GroupSpace
from ..errors import ZigpruneError
from ..registry import Registry

Allocator = Callable[[GroupSpace, torch.Tensor, Target, "torch.Tensor | None"], torch.Tensor]
BISECTIONS = 40
KNAPSACK = 1.0


def room(space: GroupSpace, taken: torch.Tensor) -> torch.Tensor:
    """How many more groups each family may lose (all but one, unless it keeps unprunable channels)."""
    out = torch.zeros(len(space.families), dtype=torch.long)
    for family in space.families:
        left = sum(1 for g in family.groups if not taken[g])
        out[family.index] = left if family.width > len(family.groups) else max(left - 1, 0)
    return out


def _taken(space: GroupSpace, taken: torch.Tensor | None) -> torch.Tensor:
    if taken is None:
        return torch.zeros(space.num_groups, dtype=torch.bool)
    return taken.clone().bool()


def _check(space: GroupSpace, scores: torch.Tensor) -> torch.Tensor:
    scores = torch.as_tensor(scores, dtype=torch.float64).reshape(-1)
    if scores.numel() != space.num_groups:
        raise ZigpruneError(
            f"got {scores.numel()} scores for {space.num_groups} groups; score every group of this space"
        )
    return scores


def global_ranking(
    space: GroupSpace, scores: torch.Tensor, target: Target, taken: torch.Tensor | None = None
) -> torch.Tensor:
    """Remove the lowest scores across all families (one global threshold), as few as meet the target."""
    scores, pruned = _check(space, scores), _taken(space, taken)
    limit = goal(space, target)
    if cost_left(space, pruned, target.by) <= limit:
        return pruned
    left = room(space, pruned)
    order = []
    for g in torch.argsort(scores, stable=True).tolist():
        family = int(space.group_family[g])
        if not pruned[g] and left[family] > 0:
            left[family] -= 1
            order.append(g)
    lo, hi = 0, len(order)
    while lo < hi:
        mid = (lo + hi) // 2
        trial = pruned.clone()
        trial[order[: mid + 1]] = True
        if cost_left(space, trial, target.by) <= limit:
            hi = mid
        else:
            lo = mid + 1
    pruned[order[: lo + 1]] = True
    return pruned


def _uniform_mask(
    space: GroupSpace, order: list[list[int]], base: torch.Tensor, ratio: float, limits: list[int]
) -> torch.Tensor:
    mask = base.clone()
    for family, groups in zip(space.families, order):
        want = min(int(ratio * len(family.groups)), limits[family.index])
        already = sum(1 for g in family.groups if base[g])
        extra = max(want - already, 0)
        mask[groups[:extra]] = True
    return mask


def uniform(
    space: GroupSpace, scores: torch.Tensor, target: Target, taken: torch.Tensor | None = None
) -> torch.Tensor:
    """The same share of every family's groups (its lowest scores): the smallest share meeting the target."""
    scores, base = _check(space, scores), _taken(space, taken)
    limits = [int(v) + sum(1 for g in f.groups if base[g]) for v, f in zip(room(space, base), space.families)]
    order = [
        sorted((g for g in f.groups if not base[g]), key=lambda g: (float(scores[g]), g))
        for f in space.families
    ]
    limit = goal(space, target)
    if cost_left(space, base, target.by) <= limit:
        return base
    lo, hi = 0.0, 1.0
    for _ in range(BISECTIONS):
        mid = (lo + hi) / 2
        if cost_left(space, _uniform_mask(space, order, base, mid, limits), target.by) <= limit:
            hi = mid
        else:
            lo = mid
    return _uniform_mask(space, order, base, hi, limits)


def cost_aware(
    space: GroupSpace, scores: torch.Tensor, target: Target, taken: torch.Tensor | None = None
) -> torch.Tensor:
    """Lowest score per unit of cost first (``core.selection.select``): the most accuracy per MAC saved.

    The ranking is the knapsack ratio (``cost_power`` 1) whatever the target's own ``cost_power``.
    """
    scores, base = _check(space, scores), _taken(space, taken)
    return base | select(space, scores, base, replace(target, cost_power=KNAPSACK), 1.0)


ALLOCATORS: Registry[Allocator] = Registry(
    "allocator", {"global": global_ranking, "uniform": uniform, "cost-aware": cost_aware}
)


def allocate(
    name: str, space: GroupSpace, scores: torch.Tensor, target: Target, taken: torch.Tensor | None = None
) -> torch.Tensor:
    """Run the allocator registered as ``name`` (``ALLOCATORS``); ``TargetError`` for an unreachable target.

    Only ``cost-aware`` keeps widths multiples of ``round_to``, so the others are checked without it.
    """
    ALLOCATORS.check(name)
    check_reachable(space, target if name == "cost-aware" else replace(target, round_to=1))
    return ALLOCATORS[name](space, scores, target, taken)
