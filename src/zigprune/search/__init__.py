"""Policy search: per-family widths for a budget, from an error database and a solver
(``zp.search``; ``docs/search.md``)."""

from . import bayes, evolution, galen, gnn, rl  # strategies that measure, registered beside the solvers
from .budget import parse_budget
from .database import ErrorDatabase
from .files import load_policy, save_policy
from .run import search
from .solvers import STRATEGIES

__all__ = [
    "STRATEGIES",
    "ErrorDatabase",
    "bayes",
    "evolution",
    "galen",
    "gnn",
    "load_policy",
    "parse_budget",
    "rl",
    "save_policy",
    "search",
]
