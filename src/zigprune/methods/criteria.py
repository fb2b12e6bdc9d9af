"""Criteria: one score per group of a GroupSpace; the lowest-scored groups are removed first.

Every criterion is built on a space (``make(name, space, **options)``) and returns its scores with
``scores()``; accumulating criteria (Taylor) also take ``update()`` after every backward pass.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from ..core.grouping import Grouping
from ..core.reduction import per_group
from ..core.space import GroupSpace
from ..errors import ZigpruneError
from ..registry import Registry


class Criterion:
    """Scores the groups of ``space``; subclasses override ``scores`` (and ``update`` to accumulate)."""

    def __init__(self, space: GroupSpace) -> None:
        self.space = space
        self.grouping = Grouping(space)

    def update(self) -> None:
        """Read the current gradients (called after each backward); most criteria need nothing."""

    def reset(self) -> None:
        """Forget what ``update`` accumulated (called after each pruning event); most keep nothing."""

    def scores(self) -> torch.Tensor:
        """One float64 score per group (CPU); lower means less important."""
        raise NotImplementedError

    def per_group(
        self, row_stat: Callable[[torch.Tensor], torch.Tensor], params: set[int] | None = None
    ) -> torch.Tensor:
        """Sum of ``row_stat(rows)`` over every producer slice (of ``params`` if given) of each group."""
        return per_group(self.grouping.slices_of(params), self.space.num_groups, row_stat)


class Magnitude(Criterion):
    """L1 (``p=1``, Li et al.) or L2 (``p=2``, SFP) norm of the whole group: every producer slice."""

    def __init__(self, space: GroupSpace, p: int = 1) -> None:
        super().__init__(space)
        if p not in (1, 2):
            raise ZigpruneError(f"magnitude criterion supports p=1 or p=2, not {p}; pick one of them")
        self.p = p

    def scores(self) -> torch.Tensor:
        if self.p == 1:
            return self.per_group(lambda rows: rows.abs().sum(1))
        return self.per_group(lambda rows: rows.square().sum(1)).sqrt()


class BNScale(Criterion):
    """Mean |γ| over the group's BatchNorm scales (Network Slimming); groups with no BatchNorm score +inf."""

    def __init__(self, space: GroupSpace) -> None:
        super().__init__(space)
        self.scales = {
            id(m.weight)
            for m in space.model.modules()
            if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.weight is not None
        }

    def scores(self) -> torch.Tensor:
        total = self.per_group(lambda rows: rows.abs().sum(1), self.scales)
        count = self.per_group(lambda rows: torch.ones(len(rows), device=rows.device), self.scales)
        return torch.where(count > 0, total / count.clamp(min=1), torch.full_like(total, float("inf")))


class Taylor(Criterion):
    """First-order Taylor importance (Molchanov et al.): (Σ_group w·∂L/∂w)², averaged over batches.

    ``update()`` after each backward adds the batch's score to an exponential moving average with
    ``momentum`` (0: keep only the last batch); ``reset()`` starts a new average.
    """

    def __init__(self, space: GroupSpace, momentum: float = 0.9) -> None:
        super().__init__(space)
        if not 0 <= momentum < 1:
            raise ZigpruneError(f"Taylor momentum must lie in [0, 1), not {momentum}; 0.9 is the usual value")
        self.momentum = momentum
        self.average: torch.Tensor | None = None
        self.batches = 0

    def update(self) -> None:
        grads = {id(p): p.grad for p in self.grouping.params() if p.grad is not None}
        batch = self.grouping.reduce(None, grads).double().square()
        if self.average is None:
            self.average = batch
        else:
            self.average.mul_(self.momentum).add_(batch, alpha=1 - self.momentum)
        self.batches += 1

    def reset(self) -> None:
        """Forget the batches seen so far."""
        self.average, self.batches = None, 0

    def scores(self) -> torch.Tensor:
        if self.average is None:
            raise ZigpruneError(
                "Taylor scores need gradients: call update() after at least one backward pass"
            )
        return self.average.clone()


class RandomScore(Criterion):
    """Uniform random scores from ``seed`` (the random-pruning baseline); a new draw on every call."""

    def __init__(self, space: GroupSpace, seed: int = 0) -> None:
        super().__init__(space)
        self.generator = torch.Generator().manual_seed(seed)

    def scores(self) -> torch.Tensor:
        return torch.rand(self.space.num_groups, generator=self.generator, dtype=torch.float64)


class OptimizerImportance(Criterion):
    """The importance a zigprune optimizer (HESSO, DHSPG) tracks for its own selection."""

    def __init__(self, space: GroupSpace, optimizer: torch.optim.Optimizer) -> None:
        super().__init__(space)
        if "zigprune" not in getattr(optimizer, "state", {}):
            raise ZigpruneError(
                "the 'oto' criterion needs a zigprune optimizer (zp.HESSO, zp.DHSPG, zp.HSPG)"
            )
        self.optimizer = optimizer

    def scores(self) -> torch.Tensor:
        return self.optimizer.state["zigprune"]["importance"].double().clone()


CRITERIA: Registry[Callable[..., Criterion]] = Registry(
    "criterion",
    {
        "l1": lambda space, **kw: Magnitude(space, p=1, **kw),
        "l2": lambda space, **kw: Magnitude(space, p=2, **kw),
        "bn": BNScale,
        "taylor": Taylor,
        "random": RandomScore,
        "oto": OptimizerImportance,
    },
)


def make(name: str, space: GroupSpace, **options) -> Criterion:
    """The criterion registered as ``name`` (``CRITERIA``), built on ``space``."""
    return CRITERIA[name](space, **options)
