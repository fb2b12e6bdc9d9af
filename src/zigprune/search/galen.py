"""The ``galen`` strategy (Krieger et al., Galen 2023): one agent chooses a policy's precisions and
widths together, rewarded by the candidate's measured loss under a latency budget on the target
runtime.

An episode first walks the weight layers of a model on an int8 runtime and decides, for each, whether
it stays fp32 (the action above one half), as long as the time that adds (its fp32 time less its
int8 time, both timed on the runtime) can still be bought back by cutting; a layer whose int8 kernel
is the slower stays fp32 without a step (nothing to trade there). Then it walks the chains
as ``amc`` does, with what the budget needs raised by the time the fp32 layers cost. The candidate
is refit and measured with its int8 layers simulated (:mod:`zigprune.search.fake_int8`); its reward,
shared by every step, is minus that loss against a moving average. One DDPG agent takes both kinds
of step (a flag in the state tells them apart), as Galen's joint agent does. Without a precision to
choose (a MACs, params or fp32 budget) the episode is the chains' walk alone.
"""

from __future__ import annotations

import torch

from .database import ErrorDatabase
from .rl import FEATURES, Agent, Episode, best, train, walk
from .solvers import PRECISION_STRATEGIES, STRATEGIES

#: Above this, the actor's action keeps a layer fp32.
FP32 = 0.5


@STRATEGIES.register("galen")
def galen(db: ErrorDatabase) -> torch.Tensor:
    """The best candidate measured over the agent's episodes (seeded), relaxed as ``amc``'s; on an
    int8 runtime its fp32 layers are left in ``db.meter.float_layers``."""
    agent = Agent.of(seed=0, features=FEATURES + 1)
    costs = layer_costs(db)
    measured = train(db, agent, lambda db, agent, sigma: play(db, agent, sigma, costs), name="galen")
    if measured and db.layers:
        _, int8 = min(measured, key=measured.__getitem__)
        db.meter.float_layers = frozenset(db.layers) - int8
    return best(db, measured)


PRECISION_STRATEGIES.add("galen")


def layer_costs(db: ErrorDatabase) -> tuple[dict[str, float], dict[str, float]]:
    """Per layer whose precision ``db`` lets a strategy choose, at the dense widths and in the meter's
    ms: its int8 time, and the time keeping it fp32 adds (negative where int8 is the slower)."""
    if not db.layers:
        return {}, {}
    meter, none = db.meter, torch.zeros(db.space.num_groups, dtype=torch.bool)
    int8_ms = {name: ms * meter.scale for name, ms in meter.table.times(none, set(db.layers)).items()}
    return int8_ms, {name: ms * meter.scale for name, ms in meter.extra(none, set(db.layers)).items()}


def play(
    db: ErrorDatabase, agent: Agent, sigma: float | None, costs: tuple[dict[str, float], dict[str, float]]
) -> Episode | None:
    """One episode: the layers' precisions, then the chains' widths under what remains; ``costs``
    from :func:`layer_costs`."""
    if not db.layers:
        return walk(db, agent, sigma, flag=(0.0,))
    meter, none = db.meter, torch.zeros(db.space.num_groups, dtype=torch.bool)
    meter.float_layers = frozenset()
    int8_ms, extra = costs
    total = max(db.total, 1e-12)
    slack = sum(float(item.saved[item.soft]) for item in db.items) - db.need
    floats = [name for name in db.layers if extra[name] <= 0]  # int8 is the slower there: no choice
    paid_layers = [name for name in db.layers if extra[name] > 0]
    states, actions = [], []
    paid, previous = 0.0, 0.0
    for i, name in enumerate(paid_layers):
        state = [1.0, i / max(len(paid_layers) - 1, 1), int8_ms[name] / total]
        state += [extra[name] / total, paid / total, max(slack - paid, 0.0) / total, previous, 0.0]
        states.append(torch.tensor(state))
        action = agent.act(states[-1], sigma)
        keep = action > FP32 and paid + extra[name] <= slack
        if keep:
            floats.append(name)
            paid += extra[name]
        actions.append(action)
        previous = float(keep)
    meter.float_layers = frozenset(floats)
    widths = walk(db, agent, sigma, need=db.left_of(none) - db.limit, flag=(0.0,))
    if widths is None:
        return None
    int8 = frozenset(db.layers) - meter.float_layers
    return Episode(widths.levels, states + widths.states, actions + widths.actions, int8)
