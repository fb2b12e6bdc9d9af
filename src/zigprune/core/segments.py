"""Index vectors laid end to end, for counting per vector with one scatter instead of a loop."""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass
class Segments:
    """Index vectors laid end to end: ``classes``, the vector each belongs to (``segment``), their sizes."""

    classes: torch.Tensor
    segment: torch.Tensor
    sizes: torch.Tensor

    @classmethod
    def of(cls, vectors: list[torch.Tensor]) -> Segments:
        sizes = torch.tensor([v.numel() for v in vectors], dtype=torch.long)
        classes = torch.cat(vectors) if vectors else torch.empty(0, dtype=torch.long)
        return cls(classes, torch.repeat_interleave(torch.arange(len(vectors)), sizes), sizes)

    def count(self, mask: torch.Tensor, dtype: torch.dtype = torch.long) -> torch.Tensor:
        """How many entries of each vector ``mask`` (over classes) holds."""
        return torch.zeros(len(self.sizes), dtype=dtype).index_add_(
            0, self.segment, mask[self.classes].to(dtype)
        )
