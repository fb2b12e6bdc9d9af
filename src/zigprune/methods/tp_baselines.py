"""Torch-Pruning (``pip install torch-pruning``, the ``bench`` extra) as two recipes in the same harness.

``tp-l2``: pre-train, prune with group-L2 importance progressively (small global steps, as
Torch-Pruning's own benchmark does) until the dense/pruned MACs ratio reaches the target, fine-tune.
``tp-group-sl``: the same, but the pre-training phase is group-lasso sparse learning
(``GroupNormPruner.regularize`` after every backward, ``reg`` 5e-4, no weight decay: its defaults).
The classifier (every ``nn.Linear`` with one output per class) is never pruned. Registered with the
other recipes (``zigprune.methods.get("tp-l2")``); ``torch_pruning`` is imported only when one runs.
"""

from __future__ import annotations

from types import ModuleType

from torch import nn

from ..errors import ZigpruneError
from ..training import Hook, Loop
from .options import GroupLassoOptions, PhasedOptions
from .recipes import register
from .run import Outcome, Setup, Trainer, split

STEPS = 200


def _tp() -> ModuleType:
    try:
        import torch_pruning
    except ImportError as err:
        raise ZigpruneError(
            "the Torch-Pruning baselines need torch-pruning: pip install 'zigprune[bench]'"
        ) from err
    return torch_pruning


class _Regularize(Hook):
    """Adds the group-lasso pruner's gradient term after every backward pass."""

    def __init__(self, pruner) -> None:
        self.pruner = pruner

    def after_backward(self, loop: Loop, loss) -> None:
        self.pruner.regularize(loop.model)


def _pruner(setup: Setup, model: nn.Module, sparse: bool):
    """Torch-Pruning's pruner over ``model``: group-lasso (``GroupNormPruner``) when ``sparse``."""
    tp = _tp()
    classes = getattr(setup.data, "num_classes", None)
    ignored = [m for m in model.modules() if isinstance(m, nn.Linear) and m.out_features == classes]
    common = dict(
        importance=tp.importance.GroupMagnitudeImportance(p=2),
        global_pruning=True,
        pruning_ratio=1.0,
        iterative_steps=STEPS,
        ignored_layers=ignored,
    )
    if sparse:
        reg = setup.read(GroupLassoOptions).reg
        return tp.pruner.GroupNormPruner(model, setup.example, reg=reg, **common)
    return tp.pruner.MetaPruner(model, setup.example, **common)


def _prune_to_target(setup: Setup, model: nn.Module, pruner) -> None:
    """Prune step by step until dense MACs / current MACs reaches the setup's MACs target."""
    tp = _tp()
    model.eval()
    dense, _ = tp.utils.count_ops_and_params(model, setup.example)
    goal = 1 / (1 - setup.target.fraction)
    current = 1.0
    while current < goal and pruner.current_step < STEPS:
        pruner.step()
        macs, _ = tp.utils.count_ops_and_params(model, setup.example)
        current = dense / max(macs, 1)
    model.train()


def _run(setup: Setup, sparse: bool) -> Outcome:
    if setup.target.by != "macs":
        raise ZigpruneError("the Torch-Pruning baselines prune to a MACs target; use by='macs'")
    options = setup.read(GroupLassoOptions if sparse else PhasedOptions)
    model, trainer = setup.build(), Trainer(setup)
    first, second = split(setup.epochs, options.pretrain_share)
    pruner = _pruner(setup, model, sparse)
    if sparse:
        optimizer = trainer.optimizer(model, weight_decay=0.0)
        trainer.fit(model, first, "group-lasso", hooks=[_Regularize(pruner)], optimizer=optimizer)
    else:
        trainer.fit(model, first, "pretrain")
    _prune_to_target(setup, model, pruner)
    trainer.fit(model, second, "fine-tune", lr=setup.lr * options.fine_tune_lr)
    return trainer.outcome(model, [], notes="Torch-Pruning")


@register("tp-l2")
def tp_l2(setup: Setup) -> Outcome:
    """Torch-Pruning group-L2, global, progressive to the MACs target, then fine-tune."""
    return _run(setup, sparse=False)


@register("tp-group-sl")
def tp_group_sl(setup: Setup) -> Outcome:
    """Torch-Pruning group-lasso sparse learning (``reg`` 5e-4), then as ``tp-l2``."""
    return _run(setup, sparse=True)
