"""``zp.search``: score the groups once, build the error database, let a strategy choose the widths;
for a latency budget, time the layers on the runtime and check the result against a measurement."""

from __future__ import annotations

import warnings
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import torch

from ..core.limits import Limits
from ..core.policy import Policy
from ..core.space import GroupSpace
from ..errors import TargetError
from ..measure.timing_cache import TimingCache
from .budget import Budget, check_budget, parse_budget
from .database import ErrorDatabase
from .evolution import EVALUATIONS, SAMPLES, Evaluator
from .latency import CALIBRATIONS, CLOSE, TOLERANCE, LatencyMeter
from .precision import mix, precision_of
from .score_cache import cached_scores
from .solvers import PRECISION_STRATEGIES, STRATEGIES, Solver


def search(
    space: GroupSpace,
    calibration: Iterable[Any] | None,
    budget: str | float = "macs=0.5",
    *,
    strategy: str = "dp",
    method: str = "obs",
    round_to: int | None = None,
    cost_power: float | None = None,
    limits: Limits | None = None,
    score_damp: float | None = None,
    progress: bool = True,
    scores: torch.Tensor | None = None,
    batch: int = 64,
    threads: int = 1,
    meter: LatencyMeter | None = None,
    latency_seconds: float = 0.5,
    evaluations: int = EVALUATIONS,
    evaluation_samples: int = SAMPLES,
    mixed: bool = True,
    checkpoints: str | Path | None = None,
    agent: str | Path | None = None,
) -> Policy:
    """The widths per family that meet ``budget`` (see :func:`parse_budget`: ``"macs=0.5"`` keeps half
    the MACs, ``"latency=0.3@onnxruntime"`` 30 % of the dense model's time there) with the least
    calibration error, as a :class:`~zigprune.Policy`; the model is not changed.

    Groups are scored once by ``method`` (``obs`` by default: each group's error in the units of the
    model's outputs, from one calibration pass) and every piece of every family becomes a chain of
    removable units (``round_to`` and ``limits`` respected, as in ``zp.prune``). ``strategy`` picks how
    far down each chain to go: ``"dp"`` (least summed error, the exact cost checked), ``"global"``
    (``zp.prune``'s ranking, by score / cost^``cost_power``), ``"uniform"`` (the same share
    everywhere), ``"evolution"`` (the best of those three, mutated; each candidate removed, refit
    on ``evaluation_samples`` calibration samples and measured on as many others, ``evaluations``
    candidates in all), ``"bo"`` (optuna's TPE over every chain's share, each trial measured the
    same way; ``pip install 'zigprune[search]'``), ``"amc"`` (AMC's DDPG agent, rewarded by that
    measurement, ``evaluations // 2`` random and ``2 * evaluations`` learned episodes) or ``"galen"``
    (Galen's joint agent: on an int8 runtime it also picks which layers stay fp32, rewarded by the loss
    measured with the others simulated in int8, as many episodes) or ``"gnn-rl"`` (amc's agent reading
    a graph network's embedding of the model, which transfers to other models: ``agent``). Apply the
    result with ``zp.prune(space, calibration, policy=policy)``, which refits the kept weights as usual.
    ``scores``: the groups' scores from :func:`zigprune.posttrain.prune.group_scores`, to search several
    strategies or budgets from one scoring pass (``calibration`` is then only what ``evolution``
    measures on).

    A latency budget is timed at ``batch`` rows on ``threads`` threads: each Conv and Linear layer at
    the widths the search visits (cached on disk per machine), the dense model and the result whole
    (each for at least ``latency_seconds``); the policy's ``measured`` holds the result's time next
    to the prediction, after the table is calibrated on that measurement (at most twice) while they
    were more than 3 % apart. ``meter``: a :class:`LatencyMeter` already built (several strategies on
    one table; each search leaves its calibration as it found it, so no strategy inherits another's).
    On an int8 runtime (``onnxruntime-int8``) with ``mixed`` and calibration data, the
    policy's ``precision`` also keeps in fp32 the layers that buy more quality than their time costs
    (:mod:`zigprune.search.precision`), widths and precisions chosen together. Raises
    ``UnknownNameError`` for an unknown strategy or runtime, ``TargetError`` for a budget that cannot
    be met, ``LatencyError`` for a runtime not installed.

    ``checkpoints``: a folder where the learned strategies (``amc``, ``galen``, ``gnn-rl``) keep their
    agent and replay buffer when Ctrl-C stops them; the same search run again continues from the
    episode they stopped in (and removes the file when it finishes). ``agent``: for ``gnn-rl``, a file
    its trained agent is written to, or, when it exists, the agent trained on another model there,
    applied to this one without training (its greedy walk).
    """
    solver = STRATEGIES[strategy]
    chosen = parse_budget(budget)
    calibration = list(calibration) if calibration is not None else None  # scored, then measured on
    if chosen.kind == "latency" and meter is None:
        timing = {"batch": batch, "threads": threads, "round_to": round_to or 1, "seconds": latency_seconds}
        timing["cache"] = TimingCache()
        meter = LatencyMeter.build(space, chosen.runtime, **timing)
    table = meter.table if meter is not None else None
    target = chosen.target(round_to=round_to, cost_power=cost_power, limits=limits, cost=table)
    check_budget(space, chosen, target)
    if scores is None:
        scores, _ = cached_scores(space, calibration, method, score_damp=score_damp, progress=progress)
    evaluate = None
    if calibration is not None:
        measure = {"method": method, "evaluations": evaluations, "progress": progress}
        measure["checkpoints"] = Path(checkpoints) if checkpoints is not None else None
        measure["agent"] = Path(agent) if agent is not None else None
        evaluate = Evaluator.of(space, calibration, evaluation_samples, **measure)
    mixing = meter is not None and mixed and meter.mixed and evaluate is not None
    layers = tuple(layer.name for layer in meter.table.layers) if mixing else ()
    given = (meter.scale, meter.fixed) if meter is not None else (1.0, 0.0)
    try:  # Ctrl-C or an unreachable budget keeps the layers timed so far
        db = ErrorDatabase.build(space, scores, target, meter, chosen, evaluate, layers)
        if meter is None:
            removed, measured = solver(db), {}
        else:
            meter.float_layers = frozenset()
            if mixing and strategy not in PRECISION_STRATEGIES:
                db = mix(db, solver, meter, evaluate, chosen)
            db, removed, measured = _checked(db, solver, meter, chosen)
        left = db.left_of(removed)
        precision = precision_of(meter) if meter is not None and meter.mixed else {}
    finally:
        if meter is not None:  # the next search on this table starts from its calibration as given
            meter.save()
            meter.scale, meter.fixed = given
    predicted = {"error": float(scores[removed].sum()), chosen.kind: left, "share": left / db.total}
    about = {"budget": str(budget), "strategy": strategy, "predicted": predicted, "measured": measured}
    return Policy.of(space, removed, **about, precision=precision)


def _checked(
    db: ErrorDatabase, solver: Solver, meter: LatencyMeter, budget: Budget
) -> tuple[ErrorDatabase, torch.Tensor, dict[str, float]]:
    """Measure the solver's result; while the table's prediction is off by more than ``CLOSE`` (at
    most ``CALIBRATIONS`` times), calibrate it on that measurement and solve again; warn when the last
    is still off by more than ``TOLERANCE``. The database, result and last measurement. When the
    calibrated table says the budget cannot be met, an earlier result measured within it is kept;
    without one, the error says what was measured."""
    removed = solver(db)
    check = meter.measure(removed)
    rounds = 0
    while abs(check["off"]) > CLOSE and rounds < CALIBRATIONS:
        rounds += 1
        meter.calibrate(removed, check["share"])
        db = ErrorDatabase.build(db.space, db.scores, db.target, meter, budget, db.evaluate, db.layers)
        try:
            removed = solver(db)
        except TargetError as err:
            if check["share"] <= budget.keep:
                return db, removed, check
            raise TargetError(
                f"{err}. Measured: the first widths found took {check['share']:.1%} of the dense time "
                f"on {budget.runtime} at batch {meter.batch}; at a larger batch the layers weigh more "
                "against the runtime's fixed cost"
            ) from None
        check = meter.measure(removed) | {"calibrations": float(rounds)}
    if abs(check["off"]) > TOLERANCE:
        warnings.warn(
            f"the latency table predicted {check['predicted_share']:.1%} of the dense time on "
            f"{budget.runtime} and the result measured {check['share']:.1%}, still more than "
            f"{TOLERANCE:.0%} apart after {CALIBRATIONS} calibrations: trust the measurement",
            stacklevel=3,
        )
    return db, removed, check
