"""HESSO: explicit-target group sparsity in one training run (Chen et al., 2024).

After a warm-up, the least important groups are chosen in ``periods`` rounds; each round's groups
shrink linearly to exactly zero over the period while every parameter keeps training, so what they
knew moves to the groups that stay. Zeroed groups are pinned at zero afterwards. Unlike the
reference, importance is an average over many mini-batches (an exponential moving average of
normalised magnitude and first-order Taylor scores), not one batch.
"""

from __future__ import annotations

from typing import Any

import torch

from ..core.space import GroupSpace
from .base import TargetedOptimizer, default, linear_decay


class HESSO(TargetedOptimizer):
    """``torch.optim.Optimizer`` that drives ``target`` of the groups (or of MACs/params) to exact zero.

    ``target`` is the fraction to remove: of the groups (``by="groups"``), of the model's MACs
    (``by="macs"``) or of its parameters (``by="params"``), or a ``Target`` holding all of it; cost
    targets take the least important groups until the budget is met (``cost_power`` > 0, default 0,
    divides importance by cost^p first, the cost being MACs/params or what ``cost`` returns, e.g. a
    ``LayerLatency``; see ``Target``).
    ``total_steps`` sets the schedule: warm-up until ``start_step`` (default 10% of the steps), then
    ``periods`` rounds over ``pruning_steps`` (default 20%) of select-and-decay; ``set_total_steps``
    derives it again from another total before the first step.
    ``variant`` picks the base update: ``"sgd"`` (``momentum``, ``nesterov``), ``"adam"`` or ``"adamw"``.
    ``round_to`` N keeps each pruned family's width a multiple of N (faster kernels on most hardware).
    """

    def __init__(
        self,
        space: GroupSpace,
        lr: float,
        *args: float,
        pruning_steps: int | None = None,
        periods: int = 10,
        **kwargs: Any,
    ) -> None:
        self.given_pruning_steps, self.given_periods = pruning_steps, periods
        self.periods = self.period_steps = 0
        super().__init__(space, lr, *args, **kwargs)
        self.zig.update(active=torch.zeros(space.num_groups, dtype=torch.bool))

    def _schedule(self, total_steps: int | None) -> None:
        super()._schedule(total_steps)
        if total_steps is not None:
            pruning_steps = default(self.given_pruning_steps, total_steps, 0.2)
            self.periods = max(1, min(self.given_periods, pruning_steps))
            self.period_steps = max(1, pruning_steps // self.periods)

    @property
    def schedule_end(self) -> int:
        """The last step of the last period: every selected group is zero from then on."""
        return self.start_step + self.periods * self.period_steps

    def _before_update(self, grads: dict[int, torch.Tensor]) -> None:
        if self.step_count <= self.schedule_end:
            self._update_importance(grads, self.importance_momentum)

    def _after_update(self) -> None:
        offset = self.step_count - self.start_step
        if offset < 1 or offset > self.periods * self.period_steps:
            return
        period, t = divmod(offset - 1, self.period_steps)
        if t == 0:
            taken = self.zig["pruned"] | self.zig["active"]
            share = (period + 1) / self.periods
            self.zig["active"] |= self.choose(self.zig["importance"], taken, share)
        factor = torch.ones(self.space.num_groups)
        factor[self.zig["active"]] = linear_decay(t, self.period_steps)
        self.grouping.scale_(factor)
        if t == self.period_steps - 1:
            self.zig["pruned"] |= self.zig["active"]
            self.zig["active"].zero_()
