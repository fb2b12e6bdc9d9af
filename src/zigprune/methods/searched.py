"""Search, then train once, inside one epoch budget: the widths a policy search finds on a briefly
trained model become HESSO's per-family targets for the rest of the training."""

from __future__ import annotations

from ..optim import make as make_optimizer
from ..search import search
from ..training import sample_inputs
from .options import SearchFirstOptions
from .recipes import analyzed, register, removed_ids
from .run import Outcome, Setup, Trainer, split


@register("search-hesso")
def search_hesso(setup: Setup) -> Outcome:
    """SGD for ``pretrain_share`` of the epochs, a ``strategy`` policy for the setup's MACs target
    searched on ``calibration`` training images (OBS scores), then HESSO takes every family to the
    policy's widths in the remaining epochs (``zp.HESSO(space, target=policy)``), no fine-tuning.

    Options: ``SearchFirstOptions`` (``pretrain_share`` 0.5, ``strategy`` "dp", ``calibration`` 512).
    """
    options = setup.read(SearchFirstOptions)
    model, trainer = setup.build(), Trainer(setup)
    first, second = split(setup.epochs, options.pretrain_share)
    trainer.fit(model, first, "pretrain")
    space = analyzed(setup, model)
    calibration = sample_inputs(setup.data.train, options.calibration, seed=setup.seed)
    budget = f"macs={1 - setup.target.fraction}"
    shaping = {"round_to": setup.target.round_to, "cost_power": setup.target.cost_power}
    policy = search(space, calibration, budget, strategy=options.strategy, **shaping, progress=False)
    opt = make_optimizer(
        "hesso",
        space,
        lr=setup.lr,
        momentum=setup.momentum,
        weight_decay=setup.weight_decay,
        total_steps=second * setup.steps_per_epoch,
        target=policy,
    )
    trainer.fit(model, second, "train once", optimizer=opt)
    return trainer.outcome(
        space.construct(), removed_ids(space.zero_groups()), notes=f"{options.strategy} policy"
    )
