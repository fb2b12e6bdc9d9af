"""Targets and the choice of groups to remove: by group count, or by MACs or params left (cost-aware)."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from typing import TYPE_CHECKING, Any

import torch

from ..errors import TargetError
from .limits import Limits

if TYPE_CHECKING:
    from .space import Family, GroupSpace

KINDS = ("groups", "macs", "params")
TARGET_HELP = "1.5x or 0.4 (MACs: a reduction factor or the share removed), params=0.3, params=2x, groups=0.5"
LOOKAHEAD = 64


@dataclass(frozen=True)
class Target:
    """Remove ``fraction`` of the groups, of the MACs, or of the parameters (``by``).

    ``round_to`` N keeps every family's remaining width a multiple of N (where the family allows it).
    ``cost_power`` p ranks groups by score / cost^p for MACs or params targets: 0 (the default, also
    HESSO's and DHSPG's) ignores cost, 1 is the knapsack ratio (the ``cost-aware`` allocator's), in
    between favours cheap groups less strongly. ``cost``, given the groups
    taken so far, returns each group's cost for that ranking in place of its MACs or params (e.g. the
    time its removal saves: :class:`zigprune.measure.layer_latency.LayerLatency`); the goal is still counted
    in ``by``. ``limits`` (a :class:`Limits`) say what may not go: families left alone, a maximum
    share per family, a minimum of heads, the same width in every layer.
    """

    fraction: float
    by: str = "groups"
    round_to: int = 1
    cost_power: float = 0.0
    cost: Callable[[torch.Tensor], torch.Tensor] | None = field(default=None, compare=False)
    limits: Limits = field(default_factory=Limits)

    def __post_init__(self) -> None:
        if not 0 < self.fraction < 1:
            raise TargetError(f"target must lie strictly between 0 and 1, not {self.fraction}")
        if self.by not in KINDS:
            raise TargetError(f"target kind must be one of {KINDS}, not {self.by!r}")
        if self.round_to < 1:
            raise TargetError(f"round_to must be a positive integer, not {self.round_to}")
        if not 0 <= self.cost_power <= 1:
            raise TargetError(f"cost_power must lie in [0, 1], not {self.cost_power}")

    @classmethod
    def of(cls, target: float | Target, **options: Any) -> Target:
        """``target`` if it is a Target, else the fraction ``target`` with the ``options`` not None.

        The optimizers' two spellings, ``target=Target(0.5, "macs")`` and ``target=0.5, by="macs"``;
        options left None take the Target's defaults, and a Target with options beside it is refused.
        """
        given = {name: value for name, value in options.items() if value is not None}
        if not isinstance(target, Target):
            return cls(float(target), **given)
        if given:
            raise TargetError(
                f"{', '.join(given)} must go inside the Target when target is one, e.g. "
                f"Target({target.fraction}, {target.by!r}, {next(iter(given))}=...)"
            )
        return target

    @classmethod
    def parse(cls, text: str, **options: Any) -> Target:
        """Parse ``macs=0.4`` or ``params=0.3`` (share removed), ``macs=2.5x`` (a reduction factor),
        ``groups=0.5``; a bare number or factor (``0.4``, ``1.5x``) is MACs, as users count them.

        ``options`` (``round_to``, ``cost_power``, ``cost``) are passed on to the Target.
        """
        kind, _, value = str(text).strip().rpartition("=")
        kind = kind.strip().lower() or "macs"
        if kind not in KINDS:
            raise TargetError(f"target kind {kind!r} is not groups, macs or params; use {TARGET_HELP}")
        number, factor = parse_number(value)
        if factor:
            if not number > 1 or not math.isfinite(number):
                raise TargetError(f"target factor {value.strip().lower()} must be above 1x (e.g. macs=2.5x)")
            number = 1 - 1 / number
        if not 0 < number < 1:
            raise TargetError(
                f"target {text!r} is outside (0, 1): give the share to remove, e.g. {TARGET_HELP}"
            )
        return cls(number, kind, **options)


def parse_number(text: str) -> tuple[float, bool]:
    """``"0.4"`` → ``(0.4, False)``, ``"2.5x"`` → ``(2.5, True)``: a target's number, and if it is a factor.

    The one reader of a target's number, for ``Target.parse`` and the bench's ``--macs 2.5x``.
    """
    value = str(text).strip().lower()
    try:
        return float(value.removesuffix("x")), value.endswith("x")
    except ValueError:
        raise TargetError(f"target {text!r} is not a number; use {TARGET_HELP}") from None


def total_cost(space: GroupSpace, by: str) -> float:
    """The whole model's cost in ``by``: its groups, MACs or params."""
    if by == "groups":
        return float(space.num_groups)
    return float(space.total_macs if by == "macs" else space.params(None))


def goal(space: GroupSpace, target: Target, share: float = 1.0) -> float:
    """The cost (groups, MACs or params) that may remain once ``share`` of the way to ``target`` is done."""
    fraction = target.fraction * share
    if target.by == "groups":
        return space.num_groups - round(fraction * space.num_groups)
    return total_cost(space, target.by) * (1 - fraction)


def removed_share(space: GroupSpace, pruned: torch.Tensor, by: str) -> float:
    """The share of the model's groups, MACs or params that removing ``pruned`` takes away."""
    return 1 - cost_left(space, pruned, by) / max(total_cost(space, by), 1)


def check_reachable(space: GroupSpace, target: Target, keep: torch.Tensor | None = None) -> None:
    """Raise ``TargetError`` unless removing every removable group meets ``target``.

    Unprunable channels, the channel (or ``round_to`` of them) every layer keeps, and the groups in
    ``keep`` (e.g. those with rows in frozen parameters) bound what can go; checked up front so
    training never runs into a target no selection can meet.
    """
    left = least_left(space, target, keep)
    if left <= goal(space, target):
        return
    most = 1 - left / max(total_cost(space, target.by), 1)
    kept = (
        "every layer keeps a channel"
        if target.round_to == 1
        else f"widths stay multiples of {target.round_to}"
    )
    frozen = f", or in the {int(keep.sum())} groups kept whole" if keep is not None and keep.any() else ""
    frozen += ", or kept by the limits given" if target.limits != Limits() else ""
    raise TargetError(
        f"target {target.fraction:g} of {target.by} cannot be reached: at most {most:.1%} of {target.by} "
        f"can be removed (the rest is unprunable{frozen}, or kept so that {kept}); lower target"
    )


def least_left(space: GroupSpace, target: Target, keep: torch.Tensor | None = None) -> float:
    """The cost (in ``target.by``) left once every unit ``target`` allows to go is gone: what no
    selection for it can go below."""
    return cost_left(space, removable(space, target, keep), target.by)


def removable(space: GroupSpace, target: Target, keep: torch.Tensor | None = None) -> torch.Tensor:
    """Every group ``target`` allows to go (its round_to, floors and limits), as a bool mask."""
    scores = torch.zeros(space.num_groups, dtype=torch.float64)
    everything = _none(space)
    everything[_flat(_units(space, scores, _none(space), target, _held(space, target, keep)))] = True
    return everything


def _held(space: GroupSpace, target: Target, keep: torch.Tensor | None) -> torch.Tensor | None:
    """The groups no selection takes: ``keep``, and those of the families ``target.limits`` leave alone."""
    left = target.limits.held(space)
    if left is None or keep is None:
        return keep if left is None else left
    return keep | left


def _none(space: GroupSpace) -> torch.Tensor:
    return torch.zeros(space.num_groups, dtype=torch.bool)


def cost_left(space: GroupSpace, pruned: torch.Tensor, by: str) -> float:
    if by == "macs":
        return float(space.macs(pruned))
    if by == "params":
        return float(space.params(pruned))
    return float(space.num_groups - int(pruned.sum()))


def select(
    space: GroupSpace,
    scores: torch.Tensor,
    taken: torch.Tensor,
    target: Target,
    share: float,
    keep: torch.Tensor | None = None,
    left: Callable[[torch.Tensor], float] | None = None,
    limit: float | None = None,
) -> torch.Tensor:
    """Groups to add to ``taken`` so that ``share`` of the way to ``target`` is reached.

    Groups are taken in units: one group, or with ``round_to`` N as many as keep the family's width
    a multiple of N. Lowest score first (divided by cost to ``cost_power`` for cost targets), never
    emptying a family that has no other channels, then the shortest prefix of units that meets the
    goal, checked with exact costs; every unit when even all of them fall short (see ``check_reachable``).
    Groups in ``keep`` are never chosen; they count as channels their family keeps. ``left`` and
    ``limit`` measure the cost another way (a latency table): the cost left once a mask of groups is
    gone, and the most that may be left (``target``'s own count and goal when None).
    """
    if left is None:
        left = partial(cost_left, space, by=target.by)
    limit = goal(space, target, share) if limit is None else limit
    weight = _cost(space, taken, target).clamp(min=1e-9)
    ratio = scores.double() / (weight / weight.mean()) ** target.cost_power
    units = _units(space, ratio, taken, target, _held(space, target, keep))
    chosen = _none(space)
    if left(taken) <= limit or not units:
        return chosen
    lo, hi = 0, len(units)
    while lo < hi:
        mid = (lo + hi) // 2
        trial = taken.clone()
        trial[_flat(units[: mid + 1])] = True
        if left(trial) <= limit:
            hi = mid
        else:
            lo = mid + 1
    chosen[_flat(units[:lo])] = True
    if lo < len(units):
        chosen[_closest(taken | chosen, units[lo : lo + LOOKAHEAD], limit, left)] = True
    return chosen


def _cost(space: GroupSpace, taken: torch.Tensor, target: Target) -> torch.Tensor:
    """Each group's cost for the ranking: ``target.cost`` if given, else its MACs, params or 1."""
    if target.cost is not None:
        return target.cost(taken).double()
    if target.by == "macs":
        return space.group_macs
    if target.by == "params":
        return space.group_params.double()
    return torch.ones(space.num_groups, dtype=torch.float64)


Unit = tuple[list[int], float, int]  # groups, their mean score, tier (1: below the soft floor)


def _units(
    space: GroupSpace, ratio: torch.Tensor, taken: torch.Tensor, target: Target, keep: torch.Tensor | None
) -> list[list[int]]:
    """Removable units in the order to remove them.

    Per piece of a family (the whole family, or one input of a concatenation), groups neither taken
    nor kept in score order are cut into units: first as many as bring the kept width down to a
    multiple of ``round_to`` channels, then that many at a time, stopping at the piece's floor (its
    unprunable and kept channels, at least one unit, and what ``target.limits`` keep); groups of
    several channels (heads) count as their channels, so heads of 32 channels go one at a time.
    Units that would leave a piece below ``limits.min_keep`` of its width come after every other
    unit, so they go only when the target needs them. Families tied by ``limits.uniform`` lose their
    units together. A unit's key is the mean score of its groups, raised to at least the key of the
    unit before it, so a stable sort keeps each piece's (or tie's) units in order.
    """
    units: list[list[int]] = []
    keys: list[tuple[int, float]] = []
    for chain in unit_chains(space, ratio, taken, target, keep):
        key = float("-inf")
        for unit, mean, tier in chain:
            key = max(key, mean)
            units.append(unit)
            keys.append((tier, key))
    order = sorted(range(len(units)), key=keys.__getitem__)
    return [units[i] for i in order]


def unit_chains(
    space: GroupSpace,
    ratio: torch.Tensor,
    taken: torch.Tensor,
    target: Target,
    keep: torch.Tensor | None = None,
) -> list[list[Unit]]:
    """One chain of removable units per piece, each in the order its piece loses them (see ``_units``);
    the same piece of families tied by ``limits.uniform`` is one chain. A policy search chooses how far
    down each chain to go."""
    score, gone = ratio.tolist(), taken.tolist()
    held = keep.tolist() if keep is not None else [False] * len(gone)
    chains = {f.index: _family_units(f, score, gone, held, target) for f in space.families}
    for tie in target.limits.ties(space):
        if len({len(chains[i]) for i in tie}) == 1:
            parts = [chains.pop(i) for i in tie]
            chains[tie[0]] = [_zip_units(pieces) for pieces in zip(*parts)]
    return [chain for pieces in chains.values() for chain in pieces if chain]


def _zip_units(chains: tuple[list[Unit], ...]) -> list[Unit]:
    """The same piece of families tied by ``uniform``: their units taken together, row by row."""
    return [
        (
            [g for unit, _, _ in row for g in unit],
            sum(m for _, m, _ in row) / len(row),
            max(t for *_, t in row),
        )
        for row in zip(*chains)
    ]


def _family_units(
    family: Family, score: list[float], gone: list[bool], held: list[bool], target: Target
) -> list[list[Unit]]:
    """One family's removable units in order, one chain per piece (see ``_units``)."""
    step = target.round_to // math.gcd(target.round_to, family.channels)
    limits = target.limits
    chains = []
    for piece in family.pieces:
        free = sorted((g for g in piece.groups if not gone[g] and not held[g]), key=lambda g: (score[g], g))
        kept = piece.width - sum(gone[g] for g in piece.groups)
        fixed = piece.width - len(piece.groups)
        floor = max(fixed if fixed else step, fixed + sum(held[g] and not gone[g] for g in piece.groups))
        floor = max(floor, limits.floor(piece.width, family.channels))
        soft = limits.soft_floor(piece.width)
        goal = (kept - 1) // step * step
        chain = []
        while free and goal >= floor:
            unit, free = free[: kept - goal], free[kept - goal :]
            chain.append((unit, sum(score[g] for g in unit) / len(unit), int(goal < soft)))
            kept, goal = goal, goal - step
        chains.append(chain)
    return chains


def _flat(units: list[list[int]]) -> list[int]:
    return [g for unit in units for g in unit]


def _closest(
    base: torch.Tensor, candidates: list[list[int]], goal: float, left: Callable[[torch.Tensor], float]
) -> list[int]:
    """The candidate unit that meets ``goal`` while removing the least (the first one always meets it)."""
    best, best_left = candidates[0], -1.0
    for unit in candidates:
        trial = base.clone()
        trial[unit] = True
        cost = left(trial)
        if best_left < cost <= goal:
            best, best_left = unit, cost
    return best
