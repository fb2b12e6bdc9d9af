"""The ``bo`` strategy: Bayesian optimisation of every chain's share with optuna's TPE sampler (as the
NN-equaliser paper tuned its compression), each trial fitted to the budget (units taken by least
error per cost until it fits, then given back while it still does) and measured like an
``evolution`` candidate; the ``dp``, ``global`` and ``uniform`` answers are its first trials."""

from __future__ import annotations

import logging
from typing import Any

import torch

from ..errors import PolicyError, TargetError
from ..posttrain.calibration import progress_bar
from .database import ErrorDatabase
from .evolution import SEEDS, evaluator_of
from .solvers import STRATEGIES, relax, repair, unreachable

INSTALL = "pip install 'zigprune[search]'"


@STRATEGIES.register("bo")
def bayesian(db: ErrorDatabase) -> torch.Tensor:
    """The candidate that measured best among the seeds and ``evaluations`` TPE trials (seeded)."""
    evaluate = evaluator_of(db, "bo")
    optuna = _optuna()
    study = optuna.create_study(direction="minimize", sampler=optuna.samplers.TPESampler(seed=0))
    measured: dict[tuple[int, ...], float] = {}
    for name in SEEDS:
        try:
            levels = db.levels_of(STRATEGIES[name](db))
        except TargetError:
            continue
        study.enqueue_trial(
            {f"c{i}": level / len(item.units) for i, (item, level) in enumerate(zip(db.items, levels))}
        )

    def objective(trial: Any) -> float:
        shares = [trial.suggest_float(f"c{i}", 0.0, 1.0) for i in range(len(db.items))]
        levels = [min(round(s * len(item.units)), item.soft) for s, item in zip(shares, db.items)]
        levels, left = repair(db, levels, soft=True)
        if left > db.limit:
            raise optuna.TrialPruned()
        key = tuple(relax(db, levels))
        if key not in measured:
            measured[key] = evaluate(db.removed(list(key)))
        bar.update()
        return measured[key]

    trials = len(SEEDS) + evaluate.evaluations
    with progress_bar(trials, "bo: trials", evaluate.progress) as bar:
        study.optimize(objective, n_trials=trials)
    if not measured:
        raise unreachable(db, db.total)
    return db.removed(list(min(measured, key=measured.__getitem__)))


def _optuna() -> Any:
    """optuna, its per-trial log lines off, or a PolicyError saying how to install it."""
    try:
        import optuna
    except ImportError as err:
        raise PolicyError(f"the bo strategy needs optuna ({err}): {INSTALL}") from None
    optuna.logging.set_verbosity(logging.WARNING)
    return optuna
