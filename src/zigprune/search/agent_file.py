"""A learned strategy's state on Ctrl-C: the agent (its networks, optimizers, noise generator and
replay buffer), the candidates measured and the episode it stopped in, kept in one pickle-free
checkpoint so the next search with the same folder continues the same episodes."""

from __future__ import annotations

import re
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import LoadError
from ..training.checkpoint import load, save
from .database import ErrorDatabase

Key = tuple[tuple[int, ...], frozenset[str]]


@dataclass
class Progress:
    """Where a strategy's training stands: the next episode, every candidate measured so far (by its
    levels and int8 layers) and the reward baseline."""

    episode: int
    measured: dict[Key, float]
    baseline: float | None


def agent_file(folder: Path | None, name: str, db: ErrorDatabase) -> Path | None:
    """Where ``name`` keeps its agent for ``db``'s budget in ``folder`` (None: nowhere)."""
    if folder is None:
        return None
    budget = re.sub(r"[^A-Za-z0-9.]+", "_", db.budget.spell(db.budget.keep))
    return Path(folder) / f"{name}-{budget}.safetensors"


def fingerprint(name: str, db: ErrorDatabase) -> dict[str, Any]:
    """What a saved agent must match to continue on ``db``: the strategy, budget and chains."""
    return {
        "strategy": name,
        "budget": db.budget.spell(db.budget.keep),
        "units": [len(item.units) for item in db.items],
    }


def keep(path: Path, agent_state: dict[str, Any], progress: Progress, tag: dict[str, Any]) -> None:
    """Write the agent and ``progress`` to ``path`` atomically."""
    measured = [(list(levels), sorted(int8), loss) for (levels, int8), loss in progress.measured.items()]
    state = {"agent": agent_state, "episode": progress.episode, "baseline": progress.baseline}
    save(path, state | {"measured": measured, "tag": tag})


def resume(path: Path, tag: dict[str, Any]) -> tuple[dict[str, Any], Progress] | None:
    """The agent state and progress saved at ``path`` for ``tag``; None (with a warning) when the file
    is corrupt or belongs to another search, which then starts over."""
    try:
        state = load(path)
        if state.get("tag") != tag:
            raise LoadError(f"{path} holds the agent of another search ({state.get('tag')})")
        measured = {(tuple(levels), frozenset(int8)): loss for levels, int8, loss in state["measured"]}
        return state["agent"], Progress(state["episode"], measured, state["baseline"])
    except (LoadError, KeyError, TypeError, ValueError, AttributeError) as err:
        warnings.warn(f"not continuing from {path}: {err}; the search starts over", stacklevel=3)
        return None
