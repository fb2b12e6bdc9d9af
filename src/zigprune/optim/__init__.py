"""Optimizers that drive zero-invariant groups to exact zero while training: HSPG, DHSPG, HESSO."""

from ..core.selection import Target
from .base import GroupOptimizer, TargetedOptimizer
from .dhspg import DHSPG
from .factory import OPTIMIZERS, make, optimizer_class, targeted
from .hesso import HESSO
from .hspg import HSPG
from .params import decay_groups

__all__ = [
    "DHSPG", "HESSO", "HSPG", "OPTIMIZERS", "GroupOptimizer", "Target", "TargetedOptimizer", "decay_groups",
    "make", "optimizer_class", "targeted",
]  # fmt: skip
