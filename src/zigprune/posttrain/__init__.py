"""Post-training pruning: choose groups from a few calibration batches and compensate, no training."""

from .methods import METHODS
from .prune import prune

__all__ = ["METHODS", "prune"]
