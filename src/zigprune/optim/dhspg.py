"""DHSPG: Dual Half-Space Projected Gradient with a target group sparsity (Chen et al., OTOv2, 2023).

At ``start_step`` the groups are split once into redundant candidates (as many as the target asks,
lowest importance per unit of cost) and important ones. Important groups get the plain base
update; candidates also get a group-lasso pull ``λ_g x_g/‖x_g‖`` whose ``λ_g`` is chosen per group so
that the step both shrinks the group and still descends the loss, then a half-space projection.
Only candidates can become zero, so the target is never overshot; candidates still non-zero at
``finish_step`` (default 80% of training) shrink linearly to zero by 90%, so it is always met.
"""

from __future__ import annotations

from typing import Any

import torch

from ..core.space import GroupSpace
from .base import TargetedOptimizer, default, linear_decay


class DHSPG(TargetedOptimizer):
    """``torch.optim.Optimizer`` reaching ``target`` group sparsity (or MACs/params cut, ``by``).

    ``lmbda`` is the base penalty λ₀. By default (``None``) it is set at ``start_step`` from the
    budget: the median over candidates of norm / (learning rate × steps until ``finish_step``), so
    the pull alone could bring a typical candidate to zero within the run, however long it is; a
    candidate's learning rate is the mean over its values of their param groups' lr.
    ``amplify`` and ``hat`` bound the adaptive λ_g in
    ``[λ₀, hat·λ₀]``; ``epsilon`` sets the half-space projection; ``cost_power`` (default 0) weighs
    cost (or what ``cost`` returns) into the choice of candidates (see ``Target``; ``target`` may be
    one); ``round_to`` N keeps each pruned family's width a multiple of N.
    """

    def __init__(
        self,
        space: GroupSpace,
        lr: float,
        *args: float,
        finish_step: int | None = None,
        lmbda: float | None = None,
        amplify: float = 2.0,
        hat: float = 10.0,
        epsilon: float = 0.9,
        **kwargs: Any,
    ) -> None:
        self.given_finish_step = finish_step
        self.finish_step = self.finish_steps = 0
        super().__init__(space, lr, *args, **kwargs)
        self.amplify, self.hat, self.epsilon = amplify, hat, epsilon
        self.zig.update(redundant=torch.zeros(space.num_groups, dtype=torch.bool), lmbda=lmbda)
        self._before: dict[int, torch.Tensor] = {}

    def _schedule(self, total_steps: int | None) -> None:
        super()._schedule(total_steps)
        if total_steps is not None:
            self.finish_step = max(default(self.given_finish_step, total_steps, 0.8), self.start_step + 1)
            self.finish_steps = max(1, default(None, total_steps, 0.1))

    @property
    def schedule_end(self) -> int:
        """The last step of the final linear decay: every candidate is zero from then on."""
        return self.finish_step + self.finish_steps - 1

    def _before_update(self, grads: dict[int, torch.Tensor]) -> None:
        step, redundant = self.step_count, self.zig["redundant"]
        if step <= self.start_step:
            self._update_importance(grads, self.importance_momentum)
        if step < self.start_step:
            return
        if step == self.start_step:
            redundant |= self.choose(self.zig["importance"], self.zig["pruned"], 1.0)
            if self.zig["lmbda"] is None:
                self.zig["lmbda"] = self._budget_lmbda(redundant)
        lmbda = self.zig["lmbda"]
        params = {id(p): p.detach() for p in self.grouping.params()}
        x_sq = self.grouping.reduce(params)
        x_dot_d = self.grouping.reduce(params, grads)
        d_sq = self.grouping.reduce(grads)
        norm = x_sq.sqrt().clamp(min=1e-12)
        lam = torch.full_like(norm, lmbda)
        growing = x_dot_d < 0
        low = -x_dot_d / norm
        high = -d_sq * norm / x_dot_d.clamp(max=-1e-12)
        adaptive = (self.amplify * low).clamp(min=lmbda, max=self.hat * lmbda)
        adaptive = torch.where(adaptive >= high, (low + high) / 2, adaptive)
        lam = torch.where(growing, adaptive, lam)
        coef = torch.where(redundant & (x_sq > 0), lam / norm, torch.zeros_like(lam))
        self.grouping.add_(grads, coef, params)
        self._before = {key: p.clone() for key, p in params.items()} if bool(redundant.any()) else {}

    def _budget_lmbda(self, redundant: torch.Tensor) -> float:
        norms = self.grouping.norms()[redundant].double()
        if not norms.numel():
            return 0.0
        lrs = self.grouping.row_mean(self._lrs())[redundant].clamp(min=1e-8)
        return float((norms / lrs).median()) / (self.finish_step - self.start_step)

    def _after_update(self) -> None:
        redundant = self.zig["redundant"] & ~self.zig["pruned"]
        if not self._before or not bool(redundant.any()):
            return
        old_sq = self.grouping.reduce(self._before)
        cross = self.grouping.reduce({id(p): p.detach() for p in self.grouping.params()}, self._before)
        self.zig["pruned"] |= redundant & ((old_sq == 0) | (cross < self.epsilon * old_sq))
        offset = self.step_count - self.finish_step
        if 0 <= offset < self.finish_steps:
            remaining = self.zig["redundant"] & ~self.zig["pruned"]
            factor = torch.ones(self.space.num_groups)
            factor[remaining] = linear_decay(offset, self.finish_steps)
            self.grouping.scale_(factor)
            if offset == self.finish_steps - 1:
                self.zig["pruned"] |= remaining
        self._before = {}
