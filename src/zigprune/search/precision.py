"""Mixed precision on an int8 runtime: which weight layers stay fp32 (ONNX Runtime's
``nodes_to_exclude``), chosen with the widths.

A layer kept fp32 is worth its gain: the loss of the all-int8 model less the loss with that layer
alone in fp32, measured once on the widths first found. It costs its fp32 time less its int8 time,
from both layer tables; where int8 is the slower (small layers, where quantize and dequantize steps
outweigh the integer kernel) it is kept fp32 for free. The paid layers, best gain per ms first, are
then tried as growing sets: for each, the widths are solved again under the same budget with that
set's extra time counted, and the candidate measured whole (widths refit, int8 simulated). The set
measured best is kept: quality bought by cutting a little more elsewhere.
"""

from __future__ import annotations

from ..errors import TargetError
from .budget import Budget
from .database import ErrorDatabase
from .evolution import Evaluator
from .latency import LatencyMeter
from .solvers import Solver

#: Paid layers tried on top of the free ones (each a solve and a measured candidate).
STEPS = 4


def mix(
    db: ErrorDatabase, solver: Solver, meter: LatencyMeter, evaluate: Evaluator, budget: Budget
) -> ErrorDatabase:
    """Set ``meter.float_layers`` to the best set found and return the database solved with it."""
    layers = [layer.name for layer in meter.table.layers]
    removed = solver(db)
    every = set(layers)
    first, *alone = evaluate.losses(removed, [every, *(every - {name} for name in layers)])
    gain = {name: first - loss for name, loss in zip(layers, alone)}
    extra = meter.extra(removed)
    free = [name for name in layers if extra[name] <= 0 and gain[name] > 0]
    paid = sorted((n for n in layers if extra[n] > 0 and gain[n] > 0), key=lambda n: -gain[n] / extra[n])
    best: tuple[float, ErrorDatabase, frozenset[str]] | None = None
    for count in range(min(STEPS, len(paid)) + 1):
        meter.float_layers = frozenset(free + paid[:count])
        trial = ErrorDatabase.build(db.space, db.scores, db.target, meter, budget, db.evaluate)
        try:
            found = solver(trial)
        except TargetError:
            break
        loss = evaluate.losses(found, [every - meter.float_layers])[0]
        if best is None or loss < best[0]:
            best = (loss, trial, meter.float_layers)
    if best is None:
        meter.float_layers = frozenset()
        return db
    meter.float_layers = best[2]
    return best[1]


def precision_of(meter: LatencyMeter) -> dict[str, str]:
    """Every timed layer's precision once :func:`mix` chose."""
    return {
        layer.name: "fp32" if layer.name in meter.float_layers else "int8" for layer in meter.table.layers
    }
