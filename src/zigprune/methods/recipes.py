"""The seed methods as named recipes: criterion × allocator × schedule × recovery on one GroupSpace.

Each recipe is ``fn(setup) -> Outcome`` and spends exactly ``setup.epochs`` epochs in total
(pre-training, pruning and recovery all count), except ``scratch-b``, which by definition trains
the found architecture for as much compute as the dense model. Structured recipes end with
``space.construct()``, so their model is physically smaller; ``magnitude`` and ``lth`` are
unstructured and report theoretical MACs. Hyper-parameters are named ``setup.options`` keys, read
into each recipe's options dataclass (its fields, types and defaults; an unknown name is an error);
the optimizer recipes pass their options on to the optimizer as keywords.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace

import torch
from torch import nn

from ..core.analysis import analyze
from ..core.space import GroupSpace
from ..errors import ZigpruneError
from ..optim import make as make_optimizer
from ..optim import targeted
from ..registry import Registry
from . import unstructured
from .allocators import allocate
from .criteria import Taylor, make
from .hooks import Accumulate, BNPenalty, Gradual, GradualMagnitude, GroupMask, Snapshot, SoftZero, WeightMask
from .options import (
    DenseOptions,
    LTHOptions,
    MagnitudeOptions,
    OneCycleOptions,
    PruneOnceOptions,
    ScratchOptions,
    SFPOptions,
    SlimmingOptions,
    TaylorOptions,
)
from .recovery import Found, recover
from .run import Outcome, Setup, Trainer, split
from .schedules import Schedule

Recipe = Callable[[Setup], Outcome]
RECIPES: Registry[Recipe] = Registry("method")


def register(name: str) -> Callable[[Recipe], Recipe]:
    """Register a recipe under ``name`` (``RECIPES``); the bench can run every registered name."""

    def decorate(recipe: Recipe) -> Recipe:
        if name in RECIPES:
            raise ValueError(f"recipe {name!r} is already registered")
        RECIPES[name] = recipe
        return recipe

    return decorate


def get(name: str) -> Recipe:
    """The recipe registered as ``name``, or an error listing them all."""
    return RECIPES[name]


def analyzed(setup: Setup, model: nn.Module) -> GroupSpace:
    return analyze(model, setup.example)


def slim(space: GroupSpace, pruned: torch.Tensor) -> nn.Module:
    """Zero the ``pruned`` groups (bool mask) in the space's model and construct the smaller model."""
    space.zero_(torch.nonzero(pruned).reshape(-1))
    return space.construct()


def removed_ids(mask: torch.Tensor) -> list[int]:
    return torch.nonzero(mask).reshape(-1).tolist()


@register("dense")
def dense(setup: Setup) -> Outcome:
    """The unpruned model, trained for the whole budget: the reference every method is compared to."""
    options = setup.read(DenseOptions)
    model, trainer = setup.build(), Trainer(setup)
    trainer.fit(model, setup.epochs, "train")
    return trainer.outcome(model, [], notes=str(options.note))


def prune_and_recover(setup: Setup, criterion: str, **criterion_options) -> Outcome:
    """Pre-train, prune once by ``criterion`` and the allocator, construct, then recover (fine-tune)."""
    options = setup.read(PruneOnceOptions)
    model, trainer = setup.build(), Trainer(setup)
    first, second = split(setup.epochs, options.pretrain_share)
    trainer.fit(model, first, "pretrain")
    space = analyzed(setup, model)
    scores = make(criterion, space, **criterion_options).scores()
    pruned = allocate(options.allocator, space, scores, setup.target)
    found = Found(slim(space, pruned), setup.lr, second, seed=setup.seed)
    retrain = recover(options.recovery, found)
    trainer.fit(retrain.model, retrain.epochs, "fine-tune", lr=retrain.lr)
    return trainer.outcome(retrain.model, removed_ids(pruned))


@register("l1-filter")
def l1_filter(setup: Setup) -> Outcome:
    """Li et al.: L1 norm of each group, the same share of every layer, one shot, then fine-tune.

    Options: ``PruneOnceOptions`` (``pretrain_share`` 0.5, ``allocator`` "uniform", ``recovery``).
    """
    return prune_and_recover(setup, "l1")


@register("random")
def random_groups(setup: Setup) -> Outcome:
    """Random groups instead of a criterion, otherwise as ``l1-filter`` (``PruneOnceOptions``)."""
    return prune_and_recover(setup, "random", seed=setup.seed)


@register("slimming")
def slimming(setup: Setup) -> Outcome:
    """Liu et al.: train with λ·Σ|γ| on BatchNorm scales, prune by |γ| globally, then fine-tune.

    Options: ``SlimmingOptions``.
    """
    options = setup.read(SlimmingOptions)
    model, trainer = setup.build(), Trainer(setup)
    first, second = split(setup.epochs, options.pretrain_share)
    trainer.fit(model, first, "sparsity", hooks=[BNPenalty(model, options.lmbda)])
    space = analyzed(setup, model)
    pruned = allocate(options.allocator, space, make("bn", space).scores(), setup.target)
    model = slim(space, pruned)
    trainer.fit(model, second, "fine-tune", lr=setup.lr * options.fine_tune_lr)
    return trainer.outcome(model, removed_ids(pruned))


@register("sfp")
def sfp(setup: Setup) -> Outcome:
    """He et al.: at every epoch end zero the lowest-L2 groups of every layer; they keep training.

    The zeros of the last epoch end are removed by ``construct``; no fine-tuning. Options:
    ``SFPOptions``.
    """
    options = setup.read(SFPOptions)
    model, trainer = setup.build(), Trainer(setup)
    space = analyzed(setup, model)
    soft = SoftZero(space, make("l2", space), options.allocator, setup.target)
    trainer.fit(model, setup.epochs, "soft-prune", hooks=[soft])
    return trainer.outcome(space.construct(), removed_ids(soft.pruned))


@register("taylor")
def taylor(setup: Setup) -> Outcome:
    """Molchanov et al.: pre-train, then prune by first-order Taylor scores averaged over batches.

    Groups are removed in ``events`` equal rounds over the first half of the second phase (global
    ranking, masks pinned), which then fine-tunes; ``construct`` at the end. Options:
    ``TaylorOptions``.
    """
    options = setup.read(TaylorOptions)
    model, trainer = setup.build(), Trainer(setup)
    first, second = split(setup.epochs, options.pretrain_share)
    trainer.fit(model, first, "pretrain")
    space = analyzed(setup, model)
    criterion = Taylor(space, momentum=options.momentum)
    steps = second * setup.steps_per_epoch
    events = max(1, min(options.events, steps // 2))
    mask = GroupMask(space)
    gradual = Gradual(
        mask,
        criterion,
        options.allocator,
        setup.target,
        Schedule("linear", events=events),
        first=max(1, steps // (2 * events)),
        last=max(1, steps // 2),
    )
    lr = setup.lr * options.fine_tune_lr
    trainer.fit(model, second, "prune+fine-tune", hooks=[Accumulate(criterion), gradual, mask], lr=lr)
    return trainer.outcome(slim(space, mask.pruned), removed_ids(mask.pruned))


@register("one-cycle")
def one_cycle(setup: Setup) -> Outcome:
    """Hubens et al.: prune from the start along a logistic ramp over the whole run; no fine-tuning.

    Group L2 norms, cost-aware allocation, hard masks, 20 pruning events; ``construct`` at the end.
    Options: ``OneCycleOptions``.
    """
    options = setup.read(OneCycleOptions)
    model, trainer = setup.build(), Trainer(setup)
    space = analyzed(setup, model)
    steps = setup.epochs * setup.steps_per_epoch
    events = max(1, min(options.events, steps))
    mask = GroupMask(space)
    gradual = Gradual(
        mask,
        make(options.criterion, space),
        options.allocator,
        setup.target,
        Schedule("one-cycle", events=events),
        first=max(1, steps // events),
        last=steps,
    )
    trainer.fit(model, setup.epochs, "prune", hooks=[gradual, mask])
    return trainer.outcome(slim(space, mask.pruned), removed_ids(mask.pruned))


def _scratch(setup: Setup, recovery: str) -> Outcome:
    source = setup.read(ScratchOptions).source
    if setup.architecture is None:
        raise ZigpruneError(
            f"scratch trains the architecture another method found: run it with {source!r} (the bench does)"
        )
    ids = setup.architecture(source)
    model, trainer = setup.build(), Trainer(setup)
    space = analyzed(setup, model)
    pruned = torch.zeros(space.num_groups, dtype=torch.bool)
    pruned[ids] = True
    dense_macs = space.total_macs
    found = Found(
        slim(space, pruned), setup.lr, setup.epochs, None, dense_macs, space.macs(pruned), setup.seed
    )
    retrain = recover(recovery, found)
    trainer.fit(retrain.model, retrain.epochs, recovery)
    return trainer.outcome(retrain.model, ids, notes=f"architecture of {source}")


@register("scratch")
def scratch(setup: Setup) -> Outcome:
    """Scratch-E (Liu et al.): the architecture ``source`` ("hesso") found, re-initialised, E epochs."""
    return _scratch(setup, "scratch-e")


@register("scratch-b")
def scratch_b(setup: Setup) -> Outcome:
    """Scratch-B: as ``scratch`` but trained for the dense model's compute (E × dense/slim MACs epochs)."""
    return _scratch(setup, "scratch-b")


@register("magnitude")
def magnitude(setup: Setup) -> Outcome:
    """Han et al.: global |w| masks on conv/linear weights, raised along AGP's cubic ramp, then fine-tuned.

    Unstructured: theoretical MACs. The masks grow at ``events`` points over the first half of the
    second phase and stay zero through training. Options: ``MagnitudeOptions``.
    """
    options = setup.read(MagnitudeOptions)
    model, trainer = setup.build(), Trainer(setup)
    first, second = split(setup.epochs, options.pretrain_share)
    trainer.fit(model, first, "pretrain")
    macs = unstructured.layer_macs(model, setup.example)
    steps = second * setup.steps_per_epoch
    events = max(1, min(options.events, steps // 2))
    hook = GradualMagnitude(model, macs, setup.target.fraction, Schedule("agp", events=events), steps // 2)
    lr = setup.lr * options.fine_tune_lr
    trainer.fit(model, second, "prune+fine-tune", hooks=[hook], lr=lr)
    return trainer.outcome(model, [], theoretical=unstructured.theoretical(model, macs))


@register("lth")
def lth(setup: Setup) -> Outcome:
    """Frankle et al.: iterative magnitude pruning with weight rewinding (lottery tickets, unstructured).

    The budget is cut into ``rounds`` + 1 equal segments; after each of the first ``rounds`` the
    global |w| masks grow geometrically (the same share of what is left) and the surviving weights
    rewind to their values after ``rewind_share`` of the first segment, replaying the schedule.
    Options: ``LTHOptions`` (fewer ``rounds`` if the budget is short).
    """
    options = setup.read(LTHOptions)
    rounds = max(1, min(options.rounds, setup.epochs - 1))
    segments = [setup.epochs // (rounds + 1)] * (rounds + 1)
    segments[-1] += setup.epochs - sum(segments)
    model, trainer = setup.build(), Trainer(setup)
    macs = unstructured.layer_macs(model, setup.example)
    rewind_at = max(1, round(options.rewind_share * segments[0] * setup.steps_per_epoch))
    snapshot = Snapshot(rewind_at)
    masks = WeightMask(model, {})
    fractions = Schedule("geometric", events=rounds).fractions(setup.target.fraction)
    trainer.fit(model, segments[0], "train", hooks=[snapshot])
    for k, (segment, fraction) in enumerate(zip(segments[1:], fractions)):
        masks.masks = unstructured.magnitude_masks(model, macs, fraction)
        retrain = recover("weight-rewind", Found(model, setup.lr, segment, snapshot.state))
        masks.apply()
        trainer.fit(retrain.model, retrain.epochs, f"round {k + 1}", hooks=[masks], lr=retrain.lr)
    return trainer.outcome(model, [], theoretical=unstructured.theoretical(model, macs))


TARGET_OPTIONS = {"target": "fraction", "by": "by", "round_to": "round_to", "cost_power": "cost_power"}


def _optimizer_recipe(setup: Setup, name: str) -> Outcome:
    """Train once with optimizer ``name`` (``zigprune.optim.make``); no fine-tuning.

    HESSO and DHSPG get the setup's ``Target`` (its ``round_to`` and ``cost_power`` included), with
    the options ``target``, ``by``, ``round_to`` and ``cost_power`` replacing its fields; every other
    option is passed to the optimizer as a keyword argument.
    """
    model, trainer = setup.build(), Trainer(setup)
    space = analyzed(setup, model)
    options = dict(setup.options)
    if targeted(name):
        fields_given = {field: options.pop(key) for key, field in TARGET_OPTIONS.items() if key in options}
        options["target"] = replace(setup.target, **fields_given)
    opt = make_optimizer(
        name,
        space,
        lr=setup.lr,
        momentum=setup.momentum,
        weight_decay=setup.weight_decay,
        total_steps=setup.epochs * setup.steps_per_epoch,
        **options,
    )
    trainer.fit(model, setup.epochs, "train once", optimizer=opt)
    pruned = space.zero_groups()
    return trainer.outcome(space.construct(), removed_ids(pruned))


@register("hspg")
def hspg(setup: Setup) -> Outcome:
    """zigprune's HSPG: group-lasso half-space projections, no explicit target.

    Options: any ``zp.HSPG`` keyword, e.g. ``lmbda`` (1e-3), ``epsilon``.
    """
    return _optimizer_recipe(setup, "hspg")


@register("dhspg")
def dhspg(setup: Setup) -> Outcome:
    """zigprune's DHSPG with the setup's target (by MACs), one run, no fine-tuning.

    Options: any ``zp.DHSPG`` keyword, e.g. ``lmbda``, ``cost_power``, ``round_to``.
    """
    return _optimizer_recipe(setup, "dhspg")


@register("hesso")
def hesso(setup: Setup) -> Outcome:
    """zigprune's HESSO with the setup's target (by MACs), one run, no fine-tuning.

    Options: any ``zp.HESSO`` keyword, e.g. ``periods``, ``cost_power``, ``round_to``.
    """
    return _optimizer_recipe(setup, "hesso")
