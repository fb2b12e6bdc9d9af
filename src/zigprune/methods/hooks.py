"""Training hooks that put criteria, allocators and schedules into ``zigprune.training.train``.

Hard masks pin removed groups (or weights) at exact zero after every step, in the parameters and
in the optimizer's moments; soft zeroing (SFP) zeroes at epoch ends and lets the groups train on.
"""

from __future__ import annotations

import copy
from dataclasses import replace

import torch
from torch import nn

from ..core.grouping import Grouping
from ..core.selection import Target
from ..core.space import GroupSpace
from ..training import Hook, Loop
from . import unstructured
from .allocators import allocate
from .criteria import Criterion
from .schedules import Schedule

MOMENTS = ("momentum_buffer", "exp_avg", "exp_avg_sq")


def _moments(optimizer: torch.optim.Optimizer, params: list[torch.Tensor]) -> list[dict[int, torch.Tensor]]:
    return [
        {id(p): optimizer.state[p][k] for p in params if k in optimizer.state.get(p, {})} for k in MOMENTS
    ]


class GroupMask(Hook):
    """Keep the groups in ``pruned`` (bool mask) exactly zero after every optimizer step."""

    def __init__(self, space: GroupSpace, pruned: torch.Tensor | None = None) -> None:
        self.space = space
        self.grouping = Grouping(space)
        self.pruned = torch.zeros(space.num_groups, dtype=torch.bool) if pruned is None else pruned.clone()

    def apply(self, optimizer: torch.optim.Optimizer | None = None) -> None:
        """Zero the pruned groups now (and their optimizer moments, if an optimizer is given)."""
        moments = _moments(optimizer, self.grouping.params()) if optimizer is not None else []
        self.grouping.zero_(self.pruned, moments)

    def on_train_start(self, loop: Loop) -> None:
        self.apply(loop.optimizer)

    def after_step(self, loop: Loop) -> None:
        self.apply(loop.optimizer)


class WeightMask(Hook):
    """Keep masked-out weights (``masks[name]`` False) exactly zero after every step (unstructured)."""

    def __init__(self, model: nn.Module, masks: dict[str, torch.Tensor]) -> None:
        self.params = dict(model.named_parameters())
        self.masks = masks

    @torch.no_grad()
    def apply(self, optimizer: torch.optim.Optimizer | None = None) -> None:
        """Zero the masked weights now (and their optimizer moments, if an optimizer is given)."""
        for name, mask in self.masks.items():
            param = self.params[name]
            param.mul_(mask)
            state = optimizer.state.get(param, {}) if optimizer is not None else {}
            for key in MOMENTS:
                if key in state:
                    state[key].mul_(mask)

    def on_train_start(self, loop: Loop) -> None:
        self.apply(loop.optimizer)

    def after_step(self, loop: Loop) -> None:
        self.apply(loop.optimizer)


class BNPenalty(Hook):
    """Network Slimming's sparsity term: adds ``lmbda · sign(γ)`` to the gradient of every BatchNorm scale."""

    def __init__(self, model: nn.Module, lmbda: float) -> None:
        self.scales = [
            m.weight
            for m in model.modules()
            if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.weight is not None
        ]
        self.lmbda = lmbda

    @torch.no_grad()
    def after_backward(self, loop: Loop, loss: torch.Tensor) -> None:
        for gamma in self.scales:
            if gamma.grad is not None:
                gamma.grad.add_(torch.sign(gamma), alpha=self.lmbda)


class Accumulate(Hook):
    """Feed every backward pass to an accumulating criterion (Taylor)."""

    def __init__(self, criterion: Criterion) -> None:
        self.criterion = criterion

    def after_backward(self, loop: Loop, loss: torch.Tensor) -> None:
        self.criterion.update()


class SoftZero(Hook):
    """SFP: at every epoch end, zero the lowest-scored groups; they are not pinned and may come back."""

    def __init__(self, space: GroupSpace, criterion: Criterion, allocator: str, target: Target) -> None:
        self.space, self.criterion, self.allocator, self.target = space, criterion, allocator, target
        self.pruned = torch.zeros(space.num_groups, dtype=torch.bool)
        self.rounds = 0

    def on_epoch_end(self, loop: Loop, epoch: int) -> None:
        self.pruned = allocate(self.allocator, self.space, self.criterion.scores(), self.target)
        self.space.zero_(torch.nonzero(self.pruned).reshape(-1))
        self.rounds += 1


class Gradual(Hook):
    """Prune more groups at the ``schedule``'s events between steps ``first`` and ``last``; masks are hard.

    At each event the criterion scores the groups, the allocator extends ``mask.pruned`` to the
    scheduled fraction of ``target``, and accumulating criteria start a fresh average.
    """

    def __init__(
        self,
        mask: GroupMask,
        criterion: Criterion,
        allocator: str,
        target: Target,
        schedule: Schedule,
        first: int,
        last: int,
    ) -> None:
        self.mask, self.criterion, self.allocator = mask, criterion, allocator
        fractions = schedule.fractions(target.fraction)
        self.events = {
            step: replace(target, fraction=fraction)
            for step, fraction in zip(schedule.steps(first, last), fractions)
            if fraction > 0
        }

    def after_step(self, loop: Loop) -> None:
        target = self.events.get(loop.step)
        if target is not None:
            scores = self.criterion.scores()
            self.mask.pruned = allocate(self.allocator, self.mask.space, scores, target, self.mask.pruned)
            self.criterion.reset()


class Snapshot(Hook):
    """Save a copy of the model's weights once, after step ``at`` (0: before training): a rewind point."""

    def __init__(self, at: int) -> None:
        self.at = at
        self.state: dict[str, torch.Tensor] | None = None

    def on_train_start(self, loop: Loop) -> None:
        if self.at == 0 and self.state is None:
            self.state = copy.deepcopy(loop.model.state_dict())

    def after_step(self, loop: Loop) -> None:
        if loop.step == self.at and self.state is None:
            self.state = copy.deepcopy(loop.model.state_dict())


class GradualMagnitude(WeightMask):
    """Weight masks that grow along a schedule: at each event a global |w| threshold, then pinned."""

    def __init__(
        self, model: nn.Module, macs: dict[str, int], fraction: float, schedule: Schedule, last: int
    ) -> None:
        super().__init__(model, {})
        self.model, self.macs = model, macs
        steps = schedule.steps(max(1, last // schedule.events), max(1, last))
        self.events = dict(zip(steps, schedule.fractions(fraction)))

    def after_step(self, loop: Loop) -> None:
        fraction = self.events.get(loop.step)
        if fraction:
            self.masks = unstructured.magnitude_masks(self.model, self.macs, fraction)
        self.apply(loop.optimizer)
