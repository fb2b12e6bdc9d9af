"""Targets and the choice of groups to remove: by group count, or by MACs or params left (cost-aware)."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ..space import GroupSpace

KINDS = ("groups", "macs", "params")
LOOKAHEAD = 64


@dataclass(frozen=True)
class Target:
    """Remove ``fraction`` of the groups, of the MACs, or of the parameters (``by``)."""

    fraction: float
    by: str = "groups"

    def __post_init__(self) -> None:
        if not 0 < self.fraction < 1:
            raise ValueError(f"target must lie strictly between 0 and 1, not {self.fraction}")
        if self.by not in KINDS:
            raise ValueError(f"target kind must be one of {KINDS}, not {self.by!r}")


def cost_left(space: GroupSpace, pruned: torch.Tensor, by: str) -> float:
    if by == "macs":
        return float(space.macs(pruned))
    if by == "params":
        return float(space.params(pruned))
    return float(space.num_groups - int(pruned.sum()))


def select(
    space: GroupSpace, scores: torch.Tensor, taken: torch.Tensor, target: Target, share: float
) -> torch.Tensor:
    """Groups to add to ``taken`` so that ``share`` of the way to ``target`` is reached.

    Lowest score first (per unit of MACs or params for cost targets), never emptying a family that
    has no other channels, then the shortest prefix that meets the goal, checked with exact costs.
    """
    g = space.num_groups
    goal_fraction = target.fraction * share
    if target.by == "groups":
        weight = torch.ones(g, dtype=torch.float64)
        goal = g - round(goal_fraction * g)
    else:
        weight = (space.group_macs if target.by == "macs" else space.group_params.double()).clamp(min=1e-9)
        total = space.total_macs if target.by == "macs" else space.params(None)
        goal = total * (1 - goal_fraction)
    order = torch.argsort(scores.double() / (weight / weight.mean()), stable=True).tolist()
    left = _family_room(space, taken)
    eligible = []
    for group in order:
        family = int(space.group_family[group])
        if taken[group] or left[family] <= 0:
            continue
        left[family] -= 1
        eligible.append(group)
    chosen = torch.zeros(g, dtype=torch.bool)
    if cost_left(space, taken, target.by) <= goal or not eligible:
        return chosen
    lo, hi = 0, len(eligible)
    while lo < hi:
        mid = (lo + hi) // 2
        trial = taken.clone()
        trial[eligible[: mid + 1]] = True
        if cost_left(space, trial, target.by) <= goal:
            hi = mid
        else:
            lo = mid + 1
    chosen[eligible[:lo]] = True
    chosen[_closest(space, taken | chosen, eligible[lo : lo + LOOKAHEAD], goal, target.by)] = True
    return chosen


def _closest(space: GroupSpace, base: torch.Tensor, candidates: list[int], goal: float, by: str) -> int:
    """The candidate that meets ``goal`` while removing the least (the first one always meets it)."""
    best, best_left = candidates[0], -1.0
    for group in candidates:
        trial = base.clone()
        trial[group] = True
        left = cost_left(space, trial, by)
        if best_left < left <= goal:
            best, best_left = group, left
    return best


def _family_room(space: GroupSpace, taken: torch.Tensor) -> list[int]:
    """How many more groups each family can lose (all but one, unless it has unprunable channels)."""
    room = []
    for family in space.families:
        kept_whole = family.width > len(family.groups)
        remaining = sum(1 for group in family.groups if not taken[group])
        room.append(remaining if kept_whole else remaining - 1)
    return room
