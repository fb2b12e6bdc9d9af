"""The construction probe: zero a sample of every family's groups, construct, and name what breaks."""

from __future__ import annotations

import contextlib
import random
from collections.abc import Iterator
from typing import TYPE_CHECKING

import torch

from .construct import build, culprits, lookup, mismatch, outputs

if TYPE_CHECKING:
    from .space import GroupSpace


@contextlib.contextmanager
def zeroed(space: GroupSpace, groups: list[int]) -> Iterator[None]:
    """Zero ``groups`` in the space's model for the duration of the block, then restore every value."""
    saved = []
    chosen = torch.zeros(space.num_groups + 1, dtype=torch.bool)
    chosen[torch.as_tensor(groups, dtype=torch.long)] = True
    with torch.no_grad():
        for s in space.slices:
            if s.producer:
                positions = torch.nonzero(chosen[space.class_group[s.classes]])
                if positions.numel():
                    tensor = lookup(space.model, s.name)
                    index = positions.reshape(-1).to(tensor.device)
                    saved.append((tensor, s.dim, index, tensor.index_select(s.dim, index)))
    try:
        space.zero_(groups)
        yield
    finally:
        with torch.no_grad():
            for tensor, dim, index, values in reversed(saved):
                tensor.index_copy_(dim, index, values)


def probe(space: GroupSpace, seed: int = 0, atol: float = 1e-4) -> list[int]:
    """Zero half of every family's groups (temporarily), construct, and return the families that break."""
    if not space.num_groups:
        return []
    rng = random.Random(seed)
    chosen: list[int] = []
    for family in space.families:
        if len(family.groups) > 1:
            chosen += rng.sample(family.groups, len(family.groups) // 2)
        elif family.groups and rng.random() < 0.5:
            chosen += family.groups
    with zeroed(space, chosen):
        pruned = space.pruned_classes(torch.as_tensor(chosen, dtype=torch.long))
        reference = outputs(space.model, space.inputs)
        try:
            if mismatch(reference, build(space, pruned), space.inputs, atol) is None:
                return []
        except Exception:
            pass
        return culprits(space, pruned, reference, atol)
