"""Pruning methods on a GroupSpace: criteria × allocators × schedules × recovery, and named recipes.

Importing the package registers every recipe, the Torch-Pruning baselines (``tp_baselines``) and
``search-hesso`` (``searched``) included.
"""

from . import searched, tp_baselines
from .allocators import ALLOCATORS, allocate
from .criteria import CRITERIA, Criterion
from .recipes import RECIPES, get, register
from .recovery import RECOVERIES, recover
from .run import Outcome, Setup, Trainer
from .schedules import CURVES, SCHEDULES, Schedule

__all__ = [
    "ALLOCATORS", "CRITERIA", "CURVES", "RECIPES", "RECOVERIES", "SCHEDULES", "Criterion", "Outcome",
    "Schedule", "Setup", "Trainer", "allocate", "get", "recover", "register", "searched", "tp_baselines",
]  # fmt: skip
