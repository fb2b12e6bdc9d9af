"""The error database a policy search solves over: for every piece of every family, the calibration
error and the cost saved of removing its first ``j`` units (its cheapest groups first, in the units
``round_to`` and the limits allow), from one scoring pass.

Errors are the method's group scores (for ``obs``: each group's structured OBS error in the units of
the model's outputs, once the cheaper groups of its layer are gone), summed along the chain; the cost
saved is exact for one piece alone. Neither adds up exactly across pieces (two layers that shrink
together save less than the sum of each alone; errors interact), so solvers check every candidate's
exact cost on the space, and ``additivity`` says how far the summed error is from the measured one.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

import torch

from ..core.selection import Target, cost_left, total_cost, unit_chains
from ..core.space import GroupSpace
from .budget import Budget


class Meter(Protocol):
    """What a budget counts: the dense model's cost (``total``) and the cost left once a bool mask of
    groups is gone (``left``)."""

    total: float

    def left(self, removed: torch.Tensor) -> float: ...


@dataclass
class CountMeter:
    """MACs or params (``by``), counted exactly on the space."""

    space: GroupSpace
    by: str

    @property
    def total(self) -> float:
        return total_cost(self.space, self.by)

    def left(self, removed: torch.Tensor) -> float:
        return cost_left(self.space, removed, self.by)


@dataclass
class Item:
    """One chain: its units in removal order, and per level ``j`` (the first ``j`` units removed) the
    summed error and the cost saved alone; ``soft`` is the first level below the piece's soft floor."""

    units: list[list[int]]
    errors: torch.Tensor
    saved: torch.Tensor
    soft: int


@dataclass
class ErrorDatabase:
    """Every chain of ``space`` scored by ``scores`` for ``target`` (its ``round_to`` and limits), its
    cost measured by ``meter`` (``target``'s MACs or params unless given: a latency table);
    ``limit`` is the cost the budget leaves, ``total`` the dense model's; ``budget`` names it in errors;
    ``evaluate`` measures a candidate (a bool mask of groups), for strategies that measure; ``layers``
    names the weight layers whose precision a strategy may choose itself (on an int8 runtime)."""

    space: GroupSpace
    target: Target
    scores: torch.Tensor
    items: list[Item]
    meter: Meter
    limit: float
    budget: Budget
    evaluate: Callable[[torch.Tensor], float] | None = None
    layers: tuple[str, ...] = ()

    @classmethod
    def build(
        cls,
        space: GroupSpace,
        scores: torch.Tensor,
        target: Target,
        meter: Meter | None = None,
        budget: Budget | None = None,
        evaluate: Callable[[torch.Tensor], float] | None = None,
        layers: tuple[str, ...] = (),
    ) -> ErrorDatabase:
        meter = meter if meter is not None else CountMeter(space, target.by)
        budget = budget if budget is not None else Budget(target.by, 1 - target.fraction)
        none = torch.zeros(space.num_groups, dtype=torch.bool)
        total = meter.total
        items = []
        for chain in unit_chains(space, scores.double(), none, target):
            errors, saved = [0.0], [0.0]
            removed = none.clone()
            for unit, _, _ in chain:
                removed[unit] = True
                errors.append(errors[-1] + float(scores[unit].double().sum()))
                saved.append(total - meter.left(removed))
            soft = next((j for j, (_, _, tier) in enumerate(chain) if tier), len(chain))
            units = [unit for unit, _, _ in chain]
            items.append(Item(units, torch.tensor(errors), torch.tensor(saved), soft))
        limit = total * budget.keep
        return cls(space, target, scores.double(), items, meter, limit, budget, evaluate, layers)

    @property
    def total(self) -> float:
        """The dense model's cost."""
        return self.meter.total

    @property
    def need(self) -> float:
        """The cost to save to meet the budget."""
        return self.total - self.limit

    def removed(self, levels: list[int]) -> torch.Tensor:
        """The groups removed at ``levels`` (one per item)."""
        mask = torch.zeros(self.space.num_groups, dtype=torch.bool)
        for item, level in zip(self.items, levels):
            for unit in item.units[:level]:
                mask[unit] = True
        return mask

    def left(self, levels: list[int]) -> float:
        """The exact cost left at ``levels``."""
        return self.left_of(self.removed(levels))

    def left_of(self, removed: torch.Tensor) -> float:
        """The cost left once ``removed`` (a bool mask of groups) is gone (exact for MACs and params)."""
        return self.meter.left(removed)

    def levels_of(self, removed: torch.Tensor) -> list[int]:
        """Per item, how many of its units (from the top of its chain) ``removed`` holds whole."""
        gone = removed.tolist()
        return [
            next((j for j, unit in enumerate(item.units) if not all(gone[g] for g in unit)), len(item.units))
            for item in self.items
        ]

    def error(self, levels: list[int]) -> float:
        """The predicted error at ``levels``: the items' errors summed."""
        return float(sum(item.errors[level] for item, level in zip(self.items, levels)))
