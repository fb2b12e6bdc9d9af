"""The construction probe: zero chosen groups, construct, and name the families that break."""

from __future__ import annotations

import contextlib
import math
import random
from collections.abc import Iterator
from dataclasses import dataclass
from functools import partial
from typing import TYPE_CHECKING

import torch

from ..errors import ExampleInputError
from .construct import build, culprits, differ, lookup, mismatch, outputs

if TYPE_CHECKING:
    from .space import GroupSpace


@dataclass
class Broken:
    """A family whose slim model broke, and the groups of it that were zeroed when it did."""

    family: int
    groups: list[int]


@contextlib.contextmanager
def zeroed(space: GroupSpace, groups: list[int]) -> Iterator[None]:
    """Zero ``groups`` in the space's model for the duration of the block, then restore every value."""
    saved = []
    with torch.no_grad():
        for s, positions in space.touched(space.selected_classes(groups), producers=True):
            tensor = lookup(space.model, s.name)
            index = positions.to(tensor.device)
            saved.append((tensor, s.dim, index, tensor.index_select(s.dim, index)))
            tensor.index_fill_(s.dim, index, 0)
    try:
        yield
    finally:
        with torch.no_grad():
            for tensor, dim, index, values in reversed(saved):
                tensor.index_copy_(dim, index, values)


def rounds(space: GroupSpace, seed: int) -> list[list[int]]:
    """The selections to construct: about half of every family; then rounds in which families of equal
    size lose different counts.

    The first round keeps families of equal size equal in width, and cuts from a family of ``s``
    groups a count near ``s / 2`` that shares no factor with ``s``: the width left is then divisible by
    no divisor of ``s`` (a grouped conv's or GroupNorm's groups, channel pairs, heads), as a single
    group cut would leave it, so no coincidence of counts inside a family hides a break. In the next
    rounds, each of the ``n`` families of size ``s`` gets a number in base ``s`` (shuffled) and loses,
    in round ``r``, as many groups as its ``r``-th digit says: any two of them lose different counts in
    at least one round (``ceil(log_s n)`` rounds), so families that must stay equal in width (a reshape
    sized from another tensor's shape) break in one; these rounds also zero the single-group families
    the first left alone.
    """
    rng = random.Random(seed)
    first: list[int] = []
    digits: list[list[int]] = [[]]
    by_size: dict[int, list[list[int]]] = {}
    for family in space.families:
        groups = family.groups
        if len(groups) == 1:
            (first if rng.random() < 0.5 else digits[0]).extend(groups)
        elif groups:
            first += rng.sample(groups, near_half(len(groups)))
            by_size.setdefault(len(groups), []).append(groups)
    for size, members in by_size.items():
        numbers = list(range(len(members)))
        rng.shuffle(numbers)
        places = max(1, math.ceil(math.log(len(members), size) - 1e-9)) if len(members) > 1 else 1
        for place in range(places):
            while len(digits) <= place:
                digits.append([])
            for number, groups in zip(numbers, members):
                count = number // size**place % size if len(members) > 1 else _alone(size, rng)
                digits[place] += rng.sample(groups, count)
    return [chosen for chosen in (first, *digits) if chosen]


def near_half(size: int) -> int:
    """A count next to ``size / 2`` that shares no factor with ``size`` (1 for the smallest sizes)."""
    half = size // 2
    for offset in range(half + 1):
        for count in (half - offset, half + offset + 1):
            if 0 < count < size and math.gcd(count, size) == 1:
                return count
    return 1


def _alone(size: int, rng: random.Random) -> int:
    """A count for a family of a size no other family has: not the first round's."""
    first = near_half(size)
    counts = [c for c in range(1, size) if c != first]
    return rng.choice(counts) if counts else first


def breaks(space: GroupSpace, groups: list[int], atol: float = 1e-4) -> bool:
    """Whether zeroing ``groups`` (nothing else) and constructing fails to reproduce the outputs.

    The submodule that holds all of ``groups`` answers when there is one (``space.blocks``, during the
    construction check). Else the slim model runs first: most breaks are a forward that raises, and
    then the zeroed full model's outputs (a second forward) are not needed."""
    if space.blocks is not None:
        space.blocks.prepare(space)
    with zeroed(space, groups):
        local = space.blocks.breaks(space, groups, atol) if space.blocks is not None else None
        if local is not None:
            return local
        pruned = space.pruned_classes(torch.as_tensor(groups, dtype=torch.long))
        try:
            got = outputs(build(space, pruned, share=True), space.inputs)
        except Exception:
            return True
        return differ(outputs(space.model, space.inputs), got, atol) is not None


def probe(space: GroupSpace, seed: int = 0, atol: float = 1e-4) -> list[Broken]:
    """Construct under each of :func:`rounds`' selections; the families at fault in the first that breaks."""
    if not space.num_groups:
        return []
    for chosen in rounds(space, seed):
        with zeroed(space, chosen):
            pruned = space.pruned_classes(torch.as_tensor(chosen, dtype=torch.long))
            reference = outputs(space.model, space.inputs)
            finite = all(bool(torch.isfinite(r).all()) for r in reference if r.is_floating_point())
            if finite and _builds(space, pruned, reference, atol):
                continue
        if not finite:
            require_finite(space)
            with zeroed(space, chosen):
                if _builds(space, pruned, reference, atol):
                    continue
        if space.blocks is not None:
            space.blocks.prepare(space)
        picked = torch.as_tensor(chosen, dtype=torch.long)
        owner = space.group_family[picked]
        with zeroed(space, chosen):
            local = partial(_in_block, space, picked, owner, atol) if space.blocks is not None else None
            families = culprits(space, pruned, reference, atol, local)
        return [Broken(f, picked[owner == f].tolist()) for f in families]
    return []


def require_finite(space: GroupSpace) -> None:
    """Probes compare outputs: NaN or Inf from the model as it is makes them meaningless (the inputs' or
    weights' fault, said as such). Run only when a probe's reference is not finite, so a check pays no
    extra forward for it."""
    for i, value in enumerate(outputs(space.model, space.inputs)):
        if value.is_floating_point() and not bool(torch.isfinite(value).all()):
            raise ExampleInputError(
                f"{type(space.model).__name__} gives NaN or Inf in output {i} on the example inputs; fix the "
                "model's weights or the inputs (or pass check=False to skip the construction check)"
            )


def _in_block(
    space: GroupSpace, picked: torch.Tensor, owner: torch.Tensor, atol: float, family: int
) -> bool | None:
    """Whether ``family``'s groups among ``picked`` break the submodule holding them (None: none does)."""
    return space.blocks.breaks(space, picked[owner == family].tolist(), atol)


def _builds(space: GroupSpace, pruned: torch.Tensor, reference: list[torch.Tensor], atol: float) -> bool:
    try:
        return mismatch(reference, build(space, pruned, share=True), space.inputs, atol) is None
    except Exception:
        return False
