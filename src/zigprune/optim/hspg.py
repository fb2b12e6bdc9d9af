"""HSPG: Half-Space Stochastic Projected Gradient for group-lasso problems (Chen et al., OTOv1, 2021).

Stage one takes sub-gradient steps on ``f(x) + λ Σ_g ‖x_g‖``. From ``switch_step`` on, a group
whose trial point leaves the half-space ``{z : ⟨z, x_g⟩ ≥ ε ‖x_g‖²}`` is set exactly to zero and
stays zero. Unlike a proximal step, the test does not shrink with the learning rate, so exact zeros
appear at normal learning rates.
"""

from __future__ import annotations

from typing import Any

import torch

from ..core.space import GroupSpace
from .base import GroupOptimizer, checked_total, default


class HSPG(GroupOptimizer):
    """``torch.optim.Optimizer`` for ``loss + lmbda · Σ_g ‖x_g‖`` with half-space projections.

    ``switch_step`` (default a quarter of ``total_steps``) starts the half-space stage; ``epsilon``
    in [0, 1) makes the projection more aggressive. Either ``switch_step`` or ``total_steps`` is needed;
    ``set_total_steps`` moves a default ``switch_step`` to another total before the first step. Groups
    kept whole (rows in frozen parameters) get neither the penalty nor the projection.
    """

    def __init__(
        self,
        space: GroupSpace,
        lr: float,
        *args: float,
        lmbda: float = 1e-3,
        epsilon: float = 0.0,
        switch_step: int | None = None,
        total_steps: int | None = None,
        **kwargs: Any,
    ) -> None:
        if switch_step is None and total_steps is None:
            raise ValueError(
                "HSPG needs switch_step or total_steps (the half-space stage starts at a quarter)"
            )
        if not 0 <= epsilon < 1:
            raise ValueError(f"epsilon must lie in [0, 1), not {epsilon}")
        if total_steps is not None:
            checked_total(total_steps)
        super().__init__(space, lr, *args, **kwargs)
        self.lmbda, self.epsilon = lmbda, epsilon
        self.given_switch_step = switch_step
        self.switch_step = int(switch_step) if switch_step is not None else 0
        self._schedule(total_steps)
        self._before: dict[int, torch.Tensor] = {}

    def _schedule(self, total_steps: int | None) -> None:
        super()._schedule(total_steps)
        if total_steps is not None:
            self.switch_step = default(self.given_switch_step, total_steps, 0.25)

    def _before_update(self, grads: dict[int, torch.Tensor]) -> None:
        norms = self.grouping.norms()
        penalised = (norms > 0) & ~self.frozen
        coef = torch.where(penalised, self.lmbda / norms.clamp(min=1e-12), torch.zeros_like(norms))
        self.grouping.add_(grads, coef, {id(p): p.detach() for p in self.grouping.params()})
        if self.step_count >= self.switch_step:
            self._before = {id(p): p.detach().clone() for p in self.grouping.params()}

    def _after_update(self) -> None:
        if self.step_count < self.switch_step:
            return
        before = self._before
        old_sq = self.grouping.reduce(before)
        cross = self.grouping.reduce({id(p): p.detach() for p in self.grouping.params()}, before)
        leave = (old_sq > 0) & (cross < self.epsilon * old_sq)
        self.zig["pruned"] |= (leave | (old_sq == 0)) & ~self.frozen
        self._before = {}
