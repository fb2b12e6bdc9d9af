"""Optimizers that drive zero-invariant groups to exact zero while training: HSPG, DHSPG, HESSO."""

from ..core.selection import Target
from .base import GroupOptimizer
from .dhspg import DHSPG
from .hesso import HESSO
from .hspg import HSPG

__all__ = ["DHSPG", "HESSO", "HSPG", "GroupOptimizer", "Target"]
