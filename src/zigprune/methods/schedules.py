"""Schedules: how much of the final target is removed by a given point of training.

A curve maps ``(progress, fraction)`` — progress through the pruning phase in [0, 1] and the final
fraction to remove — to the fraction removed by then. ``Schedule`` adds how many pruning events
there are and when they happen. Whether zeroed groups stay zero is the hooks' business (``GroupMask``
pins them; SFP's ``SoftZero`` lets them train).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

from ..errors import ZigpruneError
from ..registry import Registry

Curve = Callable[[float, float], float]


def one_shot(progress: float, fraction: float) -> float:
    """Everything at once."""
    return fraction


def linear(progress: float, fraction: float) -> float:
    """The same amount at every event (Molchanov et al.: a fixed number of neurons per round)."""
    return fraction * progress


def geometric(progress: float, fraction: float) -> float:
    """The same share of what is left at every event (lottery-ticket IMP: e.g. 20 % per round)."""
    return 1 - (1 - fraction) ** progress


def agp(progress: float, fraction: float) -> float:
    """Zhu & Gupta's automated gradual pruning: s_f · (1 − (1 − t)³), fast early and slow late."""
    return fraction * (1 - (1 - progress) ** 3)


def one_cycle(progress: float, fraction: float, alpha: float = 14.0, beta: float = 6.0) -> float:
    """One-Cycle Pruning's logistic ramp (Hubens et al.): (1 + e^(β−α)) / (1 + e^(β−α·t)), 1 at t = 1."""
    return fraction * (1 + math.exp(beta - alpha)) / (1 + math.exp(beta - alpha * progress))


CURVES: Registry[Curve] = Registry(
    "schedule curve",
    {"one-shot": one_shot, "linear": linear, "geometric": geometric, "agp": agp, "one-cycle": one_cycle},
)


@dataclass(frozen=True)
class Schedule:
    """``events`` pruning events along ``curve``."""

    curve: str = "one-shot"
    events: int = 1

    def __post_init__(self) -> None:
        CURVES.check(self.curve)
        if self.events < 1:
            raise ZigpruneError(f"a schedule needs at least one pruning event, not {self.events}")

    def fractions(self, fraction: float) -> list[float]:
        """The fraction removed after each event; the last one is always ``fraction``."""
        curve = CURVES[self.curve]
        return [curve((k + 1) / self.events, fraction) for k in range(self.events)]

    def steps(self, first: int, last: int) -> list[int]:
        """Training steps of the events, spread evenly over ``[first, last]`` (the last event at ``last``)."""
        if self.events == 1:
            return [last]
        return [round(first + (last - first) * k / (self.events - 1)) for k in range(self.events)]


SCHEDULES: dict[str, Schedule] = {
    "one-shot": Schedule("one-shot"),
    "iterative": Schedule("geometric", events=5),
    "agp": Schedule("agp", events=10),
    "one-cycle": Schedule("one-cycle", events=20),
}
