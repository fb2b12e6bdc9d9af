"""``zp.search``: score the groups once, build the error database, let a strategy choose the widths."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch

from ..core.limits import Limits
from ..core.policy import Policy
from ..core.space import GroupSpace
from ..posttrain.prune import group_scores
from .budget import check_budget, parse_budget
from .database import ErrorDatabase
from .solvers import STRATEGIES


def search(
    space: GroupSpace,
    calibration: Iterable[Any] | None,
    budget: str | float = "macs=0.5",
    *,
    strategy: str = "dp",
    method: str = "obs",
    round_to: int | None = None,
    cost_power: float | None = None,
    limits: Limits | None = None,
    score_damp: float | None = None,
    progress: bool = True,
    scores: torch.Tensor | None = None,
) -> Policy:
    """The widths per family that meet ``budget`` (see :func:`parse_budget`: ``"macs=0.5"`` keeps half
    the MACs) with the least calibration error, as a :class:`~zigprune.Policy`; the model is not changed.

    Groups are scored once by ``method`` (``obs`` by default: each group's error in the units of the
    model's outputs, from one calibration pass) and every piece of every family becomes a chain of
    removable units (``round_to`` and ``limits`` respected, as in ``zp.prune``). ``strategy`` picks how
    far down each chain to go: ``"dp"`` (least summed error, the exact cost checked), ``"global"``
    (``zp.prune``'s ranking, by score / cost^``cost_power``) or ``"uniform"`` (the same share
    everywhere). Apply the result with
    ``zp.prune(space, calibration, policy=policy)``, which refits the kept weights as usual.
    ``scores``: the groups' scores from :func:`zigprune.posttrain.prune.group_scores`, to search several
    strategies or budgets from one scoring pass (``calibration`` and ``method`` are then not used).
    Raises ``UnknownNameError`` for an unknown strategy, ``TargetError`` for a budget that cannot be met.
    """
    solver = STRATEGIES[strategy]
    target = parse_budget(budget, round_to=round_to, cost_power=cost_power, limits=limits)
    check_budget(space, target)
    if scores is None:
        scores = group_scores(space, calibration, method, score_damp=score_damp, progress=progress)
    db = ErrorDatabase.build(space, scores, target)
    removed = solver(db)
    left = db.left_of(removed)
    predicted = {"error": float(scores[removed].sum()), target.by: left, "share": left / max(db.total, 1)}
    return Policy.of(space, removed, budget=str(budget), strategy=strategy, predicted=predicted)
