"""The construction check: probe, then repair what breaks, tying families or cutting only the culprits.

Each repair goes into the analysis' :class:`Store` (a union ties two families group by group, poison
makes groups unprunable) and the space is rebuilt from it, so a repaired space is what a fresh
analysis with those facts would give. Every repair is checked again by the next probe.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import torch

from .blocks import Blocks
from .probe import Broken, breaks, probe
from .store import Store

if TYPE_CHECKING:
    from .space import GroupSpace

REASON = "the slim model did not match in the construction check"
HEAD_REASON = (
    f"{REASON}: the forward of {{module}} computes a size that does not follow a cut of its heads "
    "(such as C // num_heads or reshape(B, N, C), C the input width)"
)
MAX_REPAIRS = 4
MAX_PAIRING = 2


@dataclass
class CheckReport:
    """What the construction check changed: families tied, groups cut from a family, families dropped.

    ``ties`` holds the element ids each tie joined, so that loading can rebuild the same groups
    (:func:`zigprune.core.analysis.reanalyze`) without running the check again.
    """

    tied: list[list[str]] = field(default_factory=list)
    cut: dict[str, int] = field(default_factory=dict)
    dropped: list[str] = field(default_factory=list)
    ties: list[tuple[list[int], list[int]]] = field(default_factory=list)

    @property
    def changed(self) -> bool:
        return bool(self.tied or self.cut or self.dropped)


def check(space: GroupSpace, store: Store, rebuild: Callable[[], GroupSpace]) -> GroupSpace:
    """Probe ``space``; repair and rebuild until every probe passes. The report lands on ``space.check``."""
    report = CheckReport()
    attempt = 0
    space.blocks = Blocks.of(space)
    while broken := probe(space, seed=attempt):
        if attempt < MAX_REPAIRS:
            _repair(space, store, broken, report)
        else:
            for b in broken:
                _drop(space, store, b.family, report)
        captured = space.blocks
        space = rebuild()
        space.blocks = Blocks.of(space, captured)
        attempt += 1
    space.blocks = None
    space.check = report
    return space


def _repair(space: GroupSpace, store: Store, broken: list[Broken], report: CheckReport) -> None:
    """Cut the groups at fault; a family that breaks whatever is cut is tied to a partner or dropped.

    Families of one kind (the same layer repeated, e.g. every block's attention) break the same way:
    once one of a kind is found to break however it is cut, with no partner to tie it to, the others
    of that kind that broke in the same probe are dropped without the search (each search costs a
    dozen constructions, and the next probe checks the outcome all the same).
    """
    tied: set[int] = set()
    hopeless: set[tuple[str, int, int]] = set()
    for b in broken:
        if b.family in tied:
            continue
        kind = space.families[b.family].kind
        if kind in hopeless:
            _drop(space, store, b.family, report)
            continue
        size = len(space.families[b.family].groups)
        budget = [4 * math.ceil(math.log2(size + 1)) + 8]
        fault = _at_fault(space, b.groups, budget, top=True)
        if fault == b.groups and _another_breaks(space, b):
            fault = None
        if fault is not None:
            fault = _with_the_rest(space, b.family, fault, budget)
        name = space.families[b.family].name
        if fault is not None:
            _poison(space, store, fault)
            report.cut[name] = report.cut.get(name, 0) + len(fault)
            continue
        partner = _partner(space, b.family, tied)
        if partner is None:
            _drop(space, store, b.family, report)
            if kind is not None:
                hopeless.add(kind)
            continue
        pair = sorted((b.family, partner))
        first, second = (_elements(space, space.families[f].groups) for f in pair)
        store.union(first, second)
        report.ties.append((first.tolist(), second.tolist()))
        tied.update(pair)
        report.tied.append([space.families[f].name for f in pair])


def _with_the_rest(space: GroupSpace, family: int, fault: list[int], budget: list[int]) -> list[int] | None:
    """The culprits of one selection, plus those among the family's other groups: the rest is cut all
    at once and bisected until it constructs (None when that takes more than ``budget`` builds)."""
    while True:
        rest = [g for g in space.families[family].groups if g not in fault]
        if not rest or not breaks(space, rest):
            return fault
        more = _at_fault(space, rest, budget)
        if not more:
            return None
        fault = fault + more


def _another_breaks(space: GroupSpace, broken: Broken) -> bool:
    """A single failing group: does another group of its family break alone too (the family's fault)?"""
    others = [g for g in space.families[broken.family].groups if g not in broken.groups]
    return len(broken.groups) == 1 and bool(others) and breaks(space, others[:1])


def _partner(space: GroupSpace, family: int, taken: set[int]) -> int | None:
    """An equal-size family that, cut at the same positions, makes ``family`` construct.

    A family that breaks however it is cut alone may have to keep another family's width (a reshape
    reads that family's shape): the nearest such families in graph order are tried.
    """
    size = len(space.families[family].groups)
    if size < 2:
        return None
    others = [f.index for f in space.families if f.index not in taken | {family} and len(f.groups) == size]
    others.sort(key=lambda f: abs(f - family))
    positions = list(range(0, size, 2))
    for other in others[:MAX_PAIRING]:
        if not breaks(space, _at(space, [family, other], positions)):
            return other
    return None


def _at(space: GroupSpace, families: list[int], positions: list[int]) -> list[int]:
    return [space.families[f].groups[p] for f in families for p in positions]


def _at_fault(space: GroupSpace, groups: list[int], budget: list[int], top: bool = False) -> list[int] | None:
    """The groups of a failing selection that break construction alone, by bisection.

    None when they break only together, when both halves of the whole selection break (the fault is
    the family's, not a few groups'), or when finding them would take more than ``budget`` builds.
    """
    if len(groups) == 1:
        return groups
    half = len(groups) // 2
    found: list[int] = []
    for i, part in enumerate((groups[:half], groups[half:])):
        if budget[0] <= 0:
            return None
        budget[0] -= 1
        if breaks(space, part):
            if top and i == 1 and found:
                return None
            inner = _at_fault(space, part, budget)
            if inner is None:
                return None
            found += inner
    return found or None


def _drop(space: GroupSpace, store: Store, family: int, report: CheckReport) -> None:
    _poison(space, store, space.families[family].groups)
    report.dropped.append(space.families[family].name)


def _poison(space: GroupSpace, store: Store, groups: list[int]) -> None:
    """Make ``groups`` unprunable; attention heads say which module's forward cannot take the cut."""
    owner = {c: h.module for h in space.heads for c in h.q_classes.tolist()}
    by_reason: dict[str, list[int]] = {}
    for g in groups:
        module = owner.get(int(space.group_class[g]))
        reason = REASON if module is None else HEAD_REASON.format(module=module or "the model")
        by_reason.setdefault(reason, []).append(g)
    for reason, members in by_reason.items():
        store.poison(_elements(space, members), reason)


def _elements(space: GroupSpace, groups: list[int]) -> torch.Tensor:
    """One element id per group (its class' root): enough to union or poison the whole group."""
    return space.class_root[space.group_class[torch.as_tensor(groups, dtype=torch.long)]]
