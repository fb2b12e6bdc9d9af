"""The ``evolution`` strategy (DarwinLM-style): candidates measured, not summed. Each candidate's
groups are removed and the kept weights refit exactly as ``zp.prune`` would, and its loss is the
relative squared distance of the model's outputs to the dense model's on held-out calibration
batches; the search starts from the best of ``dp``, ``global`` and ``uniform`` and keeps a child
when it measures better (a (1+1) evolution strategy with level-switch mutations: one chain gives
units back, others take units until the budget fits, each drawn at random as the database
suggests, then the result is relaxed)."""

from __future__ import annotations

import random
from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from ..core.construct import outputs
from ..core.space import GroupSpace
from ..core.trace import Inputs, batch_size
from ..errors import CalibrationError, TargetError
from ..posttrain.calibration import Calibration, progress_bar
from ..posttrain.prune import apply_removal
from .database import ErrorDatabase
from .fake_int8 import fake_int8
from .solvers import STRATEGIES, relax, unreachable

#: Candidates measured after the seeds, and how many samples each fits on and is measured on.
EVALUATIONS = 24
SAMPLES = 128
MAX_STEP = 2


@dataclass
class Evaluator:
    """Measures a candidate (a bool mask of groups): removed and refit by ``method`` on the ``fit``
    batches, its outputs compared with the dense model's on the ``check`` batches, the model restored.
    ``evaluations`` bounds the candidates an evolution measures after its seeds; ``checkpoints`` is the
    folder where learned strategies keep their agent on Ctrl-C (:mod:`zigprune.search.agent_file`);
    ``agent`` the file ``gnn-rl`` writes its trained agent to, or applies it from without training."""

    space: GroupSpace
    fit: list[Inputs]
    check: list[Inputs]
    method: str = "obs"
    evaluations: int = EVALUATIONS
    progress: bool = True
    checkpoints: Path | None = None
    agent: Path | None = None
    reference: list[list[torch.Tensor]] = field(default_factory=list)

    @classmethod
    def of(
        cls, space: GroupSpace, calibration: Iterable[Any], samples: int = SAMPLES, **options: Any
    ) -> Evaluator:
        """The first batches holding ``samples`` rows to fit on, the next ones to measure on (the same
        when there are no more)."""
        evaluations = options.get("evaluations", EVALUATIONS)
        if samples < 1 or evaluations < 0:
            raise ValueError(
                f"evaluation_samples must be at least 1 and evaluations at least 0, not {samples} "
                f"and {evaluations}"
            )
        batches = Calibration.of(calibration, space.model).batches
        fit = _take(batches, samples)
        return cls(space, fit, _take(batches[len(fit) :], samples) or fit, **options)

    def __call__(self, removed: torch.Tensor) -> float:
        return self.losses(removed, [()])[0]

    def losses(self, removed: torch.Tensor, int8: Sequence[Collection[str]]) -> list[float]:
        """The candidate's loss once refit, with each of ``int8``'s sets of weight layers run as int8
        would (:func:`~zigprune.search.precision.fake_int8`; an empty set: all fp32): one refit for all."""
        model = self.space.model
        if not self.reference:  # the dense outputs, once, when a strategy first measures
            self.reference = [outputs(model, batch) for batch in self.check]
        before = {k: v.detach().clone() for k, v in model.state_dict().items()}
        try:
            apply_removal(self.space, self.fit, removed, method=self.method)
            found = []
            for layers in int8:
                with fake_int8(model, layers):
                    found.append(self._loss())
        finally:
            model.load_state_dict(before)
        return found

    def _loss(self) -> float:
        """The relative squared distance of the model's outputs to the dense ones on the check batches."""
        error = norm = 0.0
        for batch, reference in zip(self.check, self.reference):
            for got, want in zip(outputs(self.space.model, batch), reference):
                error += float((got.double() - want.double()).square().sum())
                norm += float(want.double().square().sum())
        return error / max(norm, 1e-30)


def _take(batches: list[Inputs], samples: int) -> list[Inputs]:
    """The first batches whose rows reach ``samples`` (at least one when there is one)."""
    taken, rows = [], 0
    for batch in batches:
        if rows >= samples:
            break
        taken.append(batch)
        rows += batch_size(batch)
    return taken


SEEDS = ("dp", "global", "uniform")


@STRATEGIES.register("evolution")
def evolution(db: ErrorDatabase) -> torch.Tensor:
    """The best candidate found from the best seed (``dp``, ``global``, ``uniform``, each measured) by
    ``db.evaluate.evaluations`` mutations, seeded random so a search is repeatable."""
    evaluate = evaluator_of(db, "evolution")
    rng = random.Random(0)
    measured: dict[tuple[int, ...], float] = {}
    with progress_bar(len(SEEDS) + evaluate.evaluations, "evolution: candidates", evaluate.progress) as bar:
        for name in SEEDS:
            try:
                levels = tuple(db.levels_of(STRATEGIES[name](db)))
            except TargetError:
                continue
            measured.setdefault(levels, evaluate(db.removed(list(levels))))
            bar.update()
        if not measured:
            raise unreachable(db, db.total)
        parent = min(measured, key=measured.__getitem__)
        tries = 0
        while len(measured) < len(SEEDS) + evaluate.evaluations and tries < 20 * evaluate.evaluations:
            tries += 1
            child = _mutate(db, list(parent), rng)
            if child is None or tuple(child) in measured:
                continue
            measured[tuple(child)] = evaluate(db.removed(child))
            bar.update()
            if measured[tuple(child)] < measured[parent]:
                parent = tuple(child)
    return db.removed(list(parent))


def evaluator_of(db: ErrorDatabase, strategy: str) -> Evaluator:
    """The database's evaluator, or a CalibrationError saying ``strategy`` needs calibration data."""
    if not isinstance(db.evaluate, Evaluator):
        raise CalibrationError(
            f"{strategy} measures candidates on calibration data: pass calibration batches"
        )
    return db.evaluate


def _mutate(db: ErrorDatabase, levels: list[int], rng: random.Random) -> list[int] | None:
    """One chain gives back 1..``MAX_STEP`` units, drawn in proportion to the error the database
    gives its last unit; others take one unit each, drawn in inverse proportion to the error of
    their next one, until the exact cost fits; then any unit that can come back within the budget
    does. The database proposes, the measurement decides. None when the budget cannot be met so."""
    back = [i for i, level in enumerate(levels) if level > 0]
    if not back:
        return None
    i = rng.choices(back, [_step(db, j, levels[j] - 1) + 1e-12 for j in back])[0]
    levels[i] -= min(levels[i], rng.randint(1, MAX_STEP))
    left = db.left(levels)
    while left > db.limit:
        room = [j for j, item in enumerate(db.items) if j != i and levels[j] < item.soft]
        if not room:
            return None
        j = rng.choices(room, [1 / (_step(db, j, levels[j]) + 1e-12) for j in room])[0]
        levels[j] += 1
        left = db.left(levels)
    return relax(db, levels)


def _step(db: ErrorDatabase, item: int, level: int) -> float:
    """The error the database gives the unit after ``level`` on chain ``item``."""
    errors = db.items[item].errors
    return max(float(errors[level + 1] - errors[level]), 0.0)
