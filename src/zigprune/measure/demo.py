"""The exactness demonstration of ``zigprune analyze``: zero random groups, build the slim model, compare."""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any

import torch

from ..core.analysis import analyze
from ..core.construct import outputs
from ..core.trace import as_inputs
from .count import count


@dataclass(frozen=True)
class Demo:
    """A random construction: the share zeroed, the largest output difference, counts before and after."""

    fraction: float
    max_diff: float
    before: dict[str, int]
    after: dict[str, int]

    def describe(self) -> str:
        lines = [
            f"zeroed {self.fraction:.0%} of groups at random and built the slim model "
            f"(max |Δ output| = {self.max_diff:.2e}):"
        ]
        for key, label in (("params", "params"), ("macs", "MACs per sample")):
            before, after = self.before[key], self.after[key]
            ratio = before / max(after, 1)
            lines.append(f"  {label:<15} {before:>14,} -> {after:>14,}  ({ratio:.2f}x fewer)")
        return "\n".join(lines)


def random_construction(model: torch.nn.Module, inputs: Any, fraction: float, seed: int = 0) -> Demo:
    """Zero ``fraction`` of the groups of a copy of ``model`` at random and construct it (``model`` stays)."""
    trial = copy.deepcopy(model)
    space = analyze(trial, inputs, check=False)
    chosen = torch.randperm(space.num_groups, generator=torch.Generator().manual_seed(seed))
    space.zero_(chosen[: int(fraction * space.num_groups)])
    slim = space.construct()
    packed = as_inputs(inputs, trial)
    diff = max((a - b).abs().max().item() for a, b in zip(outputs(trial, packed), outputs(slim, packed)))
    return Demo(fraction, diff, count(trial, inputs), count(slim, inputs))
