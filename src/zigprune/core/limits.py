"""What a selection may not do to the model, whatever the scores say: the user's limits on pruning.

- ``leave``: module-name patterns (``fnmatch``, e.g. ``"*.attention.*"`` or ``"encoder.layer.0.*"``);
  a family whose channels any matching module produces is left whole.
- ``max_share``: at most this share of any family's channels (or heads) goes.
- ``min_heads``: a family of multi-channel groups (attention heads) keeps at least this many.
- ``uniform``: families repeated across layers (the same module path up to layer numbers, the same
  width) lose the same groups count at once, so every layer keeps the same width, as configs of
  Hugging Face models describe them (one ``intermediate_size``, one ``num_attention_heads``).
- ``min_keep``: every family (every input of a concatenation) keeps at least this share of its width
  unless the target cannot be met otherwise: a selection that thins one layer to a channel or two
  makes a bottleneck that no compensation undoes, and such widths run slowly. A soft floor, on by
  default (0.1); 0 turns it off, ``max_share`` is the hard one.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from fnmatch import fnmatchcase
from typing import TYPE_CHECKING

import torch

from ..errors import TargetError

if TYPE_CHECKING:
    from .space import GroupSpace

MIN_KEEP = 0.1


@dataclass(frozen=True)
class Limits:
    """The user's limits on what pruning may remove (see the module docstring); none by default."""

    leave: tuple[str, ...] = ()
    max_share: float = 1.0
    min_heads: int = 0
    uniform: bool = False
    min_keep: float = MIN_KEEP

    def __post_init__(self) -> None:
        if isinstance(self.leave, str):
            object.__setattr__(self, "leave", (self.leave,))
        object.__setattr__(self, "leave", tuple(self.leave))
        if not 0 < self.max_share <= 1:
            raise TargetError(f"max_share must lie in (0, 1], not {self.max_share}")
        if isinstance(self.min_heads, bool) or not isinstance(self.min_heads, int) or self.min_heads < 0:
            raise TargetError(f"min_heads must be a whole number of at least 0, not {self.min_heads!r}")
        if not 0 <= self.min_keep < 1:
            raise TargetError(f"min_keep must lie in [0, 1), not {self.min_keep}")

    def held(self, space: GroupSpace) -> torch.Tensor | None:
        """Groups of the families ``leave`` names (None when it names none)."""
        if not self.leave:
            return None
        held = torch.zeros(space.num_groups, dtype=torch.bool)
        for family in space.families:
            if any(fnmatchcase(module, pattern) for module in family.modules for pattern in self.leave):
                held[family.groups] = True
        return held

    def floor(self, width: int, channels: int) -> int:
        """The fewest groups (counted with the unprunable ones) a family or piece of ``width`` groups of
        ``channels`` channels each may keep under these limits."""
        floor = math.ceil(width * (1 - self.max_share) - 1e-9)
        return max(floor, self.min_heads if channels > 1 else 0)

    def soft_floor(self, width: int) -> int:
        """The groups a family or piece of ``width`` keeps unless the target needs them (``min_keep``)."""
        return math.ceil(width * self.min_keep - 1e-9)

    def ties(self, space: GroupSpace) -> list[list[int]]:
        """Indices of the families that lose groups together under ``uniform`` (one list per kind of
        layer with two or more prunable families); empty otherwise."""
        if not self.uniform:
            return []
        kinds: dict[tuple[str, int, int], list[int]] = {}
        for family in space.families:
            if family.groups and family.kind is not None:
                kinds.setdefault(family.kind, []).append(family.index)
        return [indices for indices in kinds.values() if len(indices) > 1]
