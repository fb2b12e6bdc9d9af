"""``zigprune bench``: every pruning method on the same groups, model, data, MACs target and budget."""

from .harness import Bench, RunRecord, Settings

__all__ = ["Bench", "RunRecord", "Settings"]
