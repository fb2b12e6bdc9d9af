"""``zigprune compress``, the CLI's main job: train once, construct, measure, save a run folder."""

from ..core.selection import Target
from ..errors import Interrupted, RunDirError, TargetError
from .config import Config, default_out
from .job import compress
from .optimizers import OPTIMIZERS, cost_power
from .rundir import check_dir

__all__ = [
    "OPTIMIZERS", "Config", "Interrupted", "RunDirError", "Target", "TargetError", "check_dir", "compress",
    "cost_power", "default_out",
]  # fmt: skip
