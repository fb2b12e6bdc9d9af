"""The live state of one compress run: stage timings, and the analysed model with its optimizer."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch


@dataclass
class Stage:
    """Wall time of each stage, where stage messages go, and where the run is now (for a Ctrl-C's message)."""

    log: Callable[[str], None]
    seconds: dict[str, float] = field(default_factory=dict)
    current: str = "setup"
    announce: bool = True

    @classmethod
    def of(cls, log: Callable[[str], None] | None, progress: bool) -> Stage:
        """A job's stages: messages to ``log`` (stderr by default), stage lines only with progress on."""
        return cls(log or (lambda text: print(text, file=sys.stderr)), announce=progress)

    def timed(self, name: str, fn: Callable[[], Any], say: str | None = None) -> Any:
        """``fn()``, its wall time added to stage ``name``'s; ``say`` is logged first when the run shows
        its progress (what a long stage is doing, so the terminal is not silent for minutes)."""
        if say and self.announce:
            self.log(say)
        start = time.perf_counter()
        self.current = name
        value = fn()
        self.current = f"after {name}"
        self.seconds[name] = self.seconds.get(name, 0.0) + time.perf_counter() - start
        return value


@dataclass
class Run:
    """The analysed model, a copy of its initial weights for the baseline, and the pruning optimizer."""

    model: torch.nn.Module
    initial: torch.nn.Module
    example: Any
    single: Any
    space: Any
    optimizer: torch.optim.Optimizer
    steps: int
