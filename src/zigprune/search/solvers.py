"""Strategies that choose how far down each chain of an :class:`ErrorDatabase` to cut: ``dp``
(SPDY-style dynamic programming on the summed error, its budget tightened until the exact cost
fits), and the baselines ``global`` (today's ``zp.prune`` choice: one ranking of every unit by score)
and ``uniform`` (every chain goes the same share of the way down). Each returns the groups to remove."""

from __future__ import annotations

import math
from collections.abc import Callable

import torch

from ..core.selection import removable, select
from ..errors import TargetError
from ..registry import Registry
from .budget import beyond
from .database import ErrorDatabase

Solver = Callable[[ErrorDatabase], torch.Tensor]
STRATEGIES: Registry[Solver] = Registry("strategy", error=TargetError)
#: Strategies that choose the precisions of ``ErrorDatabase.layers`` themselves (no mixing after them).
PRECISION_STRATEGIES: set[str] = set()
BINS = 2000
TIGHTENINGS = 16


@STRATEGIES.register("dp")
def dp(db: ErrorDatabase) -> torch.Tensor:
    """The least summed error whose summed saving reaches the need, asked for more until the exact cost
    fits (savings of two shrinking layers overlap, so their sum overstates them), then repaired unit
    by unit if it still does not (see ``repair``) and relaxed where it cut more than needed (see
    ``relax``); units below a piece's soft floor only when the budget cannot be met without them."""
    for soft in (True, False):
        ask, levels = db.need, None
        for _ in range(TIGHTENINGS):
            found = solve(db, ask, soft)
            if found is None:
                break
            levels, left = found, db.left(found)
            if left <= db.limit:
                return db.removed(relax(db, levels))
            ask += (left - db.limit) * 1.1 + 1e-9 * db.total
        levels, left = repair(db, levels or [0] * len(db.items), soft)
        if left <= db.limit:
            return db.removed(relax(db, levels))
    raise unreachable(db, left)


def relax(db: ErrorDatabase, levels: list[int]) -> list[int]:
    """``levels`` that fit, taken one unit back up the chain whose last unit costs the most error, as
    long as the exact cost still fits: the summed savings the knapsack trusted can overstate what two
    chains save together, so its answer may cut more than the budget needs."""
    levels = list(levels)
    while True:
        best: tuple[float, int] | None = None
        for i, item in enumerate(db.items):
            if levels[i] == 0:
                continue
            gain = float(item.errors[levels[i]] - item.errors[levels[i] - 1])
            if gain > 0 and (best is None or gain > best[0]):
                trial = levels.copy()
                trial[i] -= 1
                if db.left(trial) <= db.limit:
                    best = (gain, i)
        if best is None:
            return levels
        levels[best[1]] -= 1


def repair(db: ErrorDatabase, levels: list[int], soft: bool) -> tuple[list[int], float]:
    """``levels`` taken one unit further down the chain whose next unit adds the least error per cost
    it saves (measured exactly), until the budget fits or no unit saves any more; and the cost left.
    For costs whose savings overlap or are noisy (a latency table), where asking the knapsack for more
    does not converge."""
    levels, left = list(levels), db.left(levels)
    while left > db.limit:
        best: tuple[float, int, float] | None = None
        for i, item in enumerate(db.items):
            if levels[i] >= (item.soft if soft else len(item.units)):
                continue
            trial = levels.copy()
            trial[i] += 1
            after = db.left(trial)
            if after < left:
                rate = float(item.errors[levels[i] + 1] - item.errors[levels[i]]) / (left - after)
                best = min(best or (math.inf, i, after), (rate, i, after))
        if best is None:
            break
        levels[best[1]] += 1
        left = best[2]
    return levels, left


def solve(db: ErrorDatabase, ask: float, soft: bool = False) -> list[int] | None:
    """Levels of least summed error whose summed saving is at least ``ask`` (None when even every unit
    falls short): a knapsack over the saving in ``BINS`` steps, each rounded down, so the levels found
    never save less than asked in the sum."""
    scale = BINS / max(ask, 1e-12)
    best = torch.full((BINS + 1,), math.inf, dtype=torch.float64)
    best[0] = 0.0
    bins = torch.arange(BINS + 1)
    trail = []
    for item in db.items:
        top = item.soft if soft else len(item.units)
        steps = (item.saved[: top + 1] * scale).floor().long().clamp(min=0, max=BINS).tolist()
        tail, tail_at = _suffix_min(best)
        new = torch.full_like(best, math.inf)
        level = torch.zeros(BINS + 1, dtype=torch.long)
        came = bins.clone()
        for j, step in enumerate(steps):
            source = (bins - step).clamp(min=0)
            value = torch.where(bins >= step, best[source], math.inf) + float(item.errors[j])
            value[BINS], source[BINS] = tail[BINS - step] + float(item.errors[j]), tail_at[BINS - step]
            better = value < new
            new, level, came = (
                torch.where(better, value, new),
                torch.where(better, j, level),
                torch.where(better, source, came),
            )
        trail.append((level, came))
        best = new
    if not math.isfinite(float(best[BINS])):
        return None
    levels, at = [], BINS
    for level, came in reversed(trail):
        levels.append(int(level[at]))
        at = int(came[at])
    return levels[::-1]


def _suffix_min(values: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """For every index, the least value at or after it and where it is."""
    flipped = values.flip(0)
    running, where = torch.cummin(flipped, 0)
    return running.flip(0), (len(values) - 1 - where).flip(0)


@STRATEGIES.register("global")
def global_ranking(db: ErrorDatabase) -> torch.Tensor:
    """Today's ``zp.prune`` choice: every unit ranked by score (divided by cost^p), the shortest prefix
    that fits."""
    none = torch.zeros(db.space.num_groups, dtype=torch.bool)
    removed = select(db.space, db.scores, none, db.target, 1.0, left=db.left_of, limit=db.limit)
    left = db.left_of(removed)
    if left > db.limit:
        raise unreachable(db, left)
    return removed


@STRATEGIES.register("uniform")
def uniform(db: ErrorDatabase) -> torch.Tensor:
    """Every chain goes the same share of the way down: the least share that fits (bisection)."""

    def levels(share: float) -> list[int]:
        return [math.ceil(share * len(item.units) - 1e-9) for item in db.items]

    if db.left(levels(1.0)) > db.limit:
        raise unreachable(db, db.left(levels(1.0)))
    low, high = 0.0, 1.0
    for _ in range(30):
        middle = (low + high) / 2
        low, high = (low, middle) if db.left(levels(middle)) <= db.limit else (middle, high)
    return db.removed(levels(high))


def unreachable(db: ErrorDatabase, left: float) -> TargetError:
    """The error for a budget beyond what the chains can remove, saying what can be reached (at
    least ``left``, the cost the solver got down to, or what every unit removed leaves if less)."""
    least = min(left, db.left_of(removable(db.space, db.target)))
    return beyond(db.budget, least / max(db.total, 1e-12))
