"""``zp.prune``: choose groups from calibration statistics, zero them and compensate, with no training."""

from __future__ import annotations

import warnings
from collections.abc import Iterable
from typing import Any

import torch
from torch import nn

from ..core.group_values import TensorSource, on_meta
from ..core.limits import Limits
from ..core.policy import Policy
from ..core.selection import Target, check_reachable, select
from ..core.space import GroupSpace
from ..errors import CalibrationError, MetaDeviceError
from . import obs
from .batchnorm import recalibrate
from .calibration import Calibration, progress_bar
from .consumers import Consumer, consumers
from .methods import METHODS, Method, compensate_bias
from .sensitivity import output_sensitivity
from .statistics import CallPlan, Collector, Gram, Moments, call_plan

BLOCK_BYTES = 2**30


def prune(
    space: GroupSpace,
    calibration: Iterable[Any] | None = None,
    target: float | Target = 0.4,
    by: str | None = None,
    *,
    method: str = "obs",
    round_to: int | None = None,
    cost_power: float | None = None,
    limits: Limits | None = None,
    damp: float = 0.01,
    score_damp: float | None = None,
    recalibrate_bn: bool = True,
    steps: int = 1,
    progress: bool = True,
    block_bytes: int = BLOCK_BYTES,
    weights: TensorSource | None = None,
    policy: Policy | None = None,
) -> list[int]:
    """Prune ``space``'s model now, without training: choose groups, zero them, update the kept weights,
    in place (``space.construct()`` then builds the slim copy); returns the ids of the groups removed.

    ``calibration`` is an iterable of batches, each what ``model(...)`` takes (a Tensor, a tuple of
    positional arguments or a dict of keyword arguments); 128-1024 samples is typical. ``target`` is
    the share to remove of the groups (``by="groups"``, the default), of the MACs (``"macs"``) or of
    the parameters (``"params"``), or a :class:`Target`; ``round_to`` N keeps every family's width a
    multiple of N (each input of a concatenation too) and ``cost_power`` divides scores by cost^p for
    MACs/params targets (see ``Target``); ``limits`` (``zigprune.core.limits.Limits``) leave families
    alone, cap the share any family loses, keep a minimum of heads, give every layer the same width
    (``uniform``); by default every family keeps a tenth of its width unless the target needs it
    (``min_keep``).
    Groups already all zero count as removed. Returns the ids of every zero group, sorted.
    ``policy`` (a :class:`~zigprune.Policy`, from ``zp.search``) sets every family's width in place of
    ``target``: inside each family the lowest-scored groups go (one step only).

    ``method``:

    - ``"obs"`` (default): for every layer that reads a group's channels (Linear, Conv1d/2d,
      GPT-2's Conv1D: its *consumers*), ``H = XᵀX`` of its inputs on the calibration data (conv
      inputs unfolded; float64) damped by ``score_damp`` (default 0.1) x its mean diagonal. On each
      consumer its groups are removed cheapest first by structured OBS, so a group's error is what
      it adds once the cheaper ones are gone and can no longer compensate; every output channel is
      weighted by how much it moves the model's outputs (the mean squared gradient of a random
      projection of them, one backward pass per batch), so the errors of different layers are in one
      unit. A group's score sums its errors over its consumers. Every consumer of removed columns is
      then refit by least squares with ``damp`` (its bias too, which takes the removed channels' mean).
    - ``"wanda"``: Wanda-sp score, sum of ``|W| x ‖X‖`` over the group's columns; no update.
    - ``"flap"``: FLAP's fluctuation ``Var(X) x ‖W‖²``; the removed columns' mean contribution is
      folded into the consumers' biases (where a layer has one).
    - ``"magnitude"``: group L2 norm of the weights; needs no calibration (``None``), no update.
      With ``weights`` (``zp.Checkpoint(path)``) the norms are read from a checkpoint one tensor at
      a time, so a model built on the meta device (too large to hold) can be pruned: the chosen
      groups are recorded, and ``zp.load_pruned`` then loads only the kept slices.

    What is sequential: scores come from the dense model, in one calibration pass (several when the
    statistics would exceed ``block_bytes``; memory is bounded by the larger of that and the largest
    ``H``). The OBS refit is sequential: consumers are refit in the order the model calls them, each
    on statistics gathered after those before it were refit, so each also absorbs the change
    upstream; layers that read the same tensor (q, k, v) are refit from one pass. Each pass stops once
    its layers have run. Groups are zeroed after the refit. With ``steps`` N > 1 the target is
    reached in N rounds, each scored anew on the model the round before left (refit and zeroed), at
    N times the cost: later choices see the earlier removals. Afterwards BatchNorm statistics are
    re-estimated on the calibration data (``recalibrate_bn``). Groups whose channels no known layer
    reads are scored as most important (they go last), with a warning.

    Raises ``CalibrationError`` (empty calibration, batches the model does not run on, NaN/Inf
    activations), ``TargetError`` (a target beyond what can be removed, saying how much can go) or
    ``ValueError`` (an unknown method); the model is then left unchanged.
    """
    chosen = _method(method)
    if chosen.statistics is not None and on_meta(space.model):
        raise MetaDeviceError(
            f"method {method!r} runs the model on calibration data, and this model is on the meta device; "
            "use method='magnitude' with weights=zp.Checkpoint(path), or load the weights first"
        )
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
        raise ValueError(f"steps must be a whole number of at least 1, not {steps!r}")
    goal = Target.of(target, by=by, round_to=round_to, cost_power=cost_power, limits=limits)
    if policy is None:
        check_reachable(space, goal)
    elif steps != 1:
        raise ValueError("a policy sets the widths in one step: pass steps=1 with policy")
    else:
        policy.check(space)
    model = space.model
    calib = _calibration(chosen, calibration, model)
    removed = space.zero_groups()
    plan = CallPlan([], {}, {})
    if chosen.statistics is not None:
        plan = call_plan(model, calib, consumers(space))
    before = {k: v.detach().clone() for k, v in model.state_dict(keep_vars=True).items()}
    try:
        for step in range(1, steps + 1):
            scores, moments = space.group_norms(weights), {}
            if chosen.statistics is not None:
                scores, moments = _scores(
                    space, chosen, calib, plan, score_damp, progress, block_bytes, step == 1
                )
            if policy is not None:  # already-zero groups count toward the policy's widths
                new = policy.removed(space, scores, taken=removed)
            else:
                new = select(space, scores, removed, goal, step / steps) & ~removed
            removed |= new
            _update(space, chosen, calib, plan, removed, new, damp, progress, block_bytes, moments)
            space.zero_(removed)
        if recalibrate_bn and calib is not None:
            recalibrate(model, calib, progress)
            space.zero_(removed)
        _check_finite(model)
    except BaseException:
        model.load_state_dict(before)
        raise
    return torch.nonzero(removed).reshape(-1).tolist()


def apply_removal(
    space: GroupSpace,
    calibration: Iterable[Any] | None,
    removed: torch.Tensor,
    *,
    method: str = "obs",
    damp: float = 0.01,
    recalibrate_bn: bool = True,
    block_bytes: int = BLOCK_BYTES,
) -> None:
    """Zero the groups in ``removed`` (a bool mask) and update the kept weights by ``method`` as
    ``prune`` does once it has chosen them (refit, bias shift, or none), BatchNorm statistics
    re-estimated: how a search measures a candidate. In place; the caller restores the model."""
    chosen = _method(method)
    calib = _calibration(chosen, calibration, space.model)
    plan = CallPlan([], {}, {})
    moments: dict[str, Moments] = {}
    if chosen.statistics is not None:
        plan = call_plan(space.model, calib, consumers(space))
    if chosen.update == "bias":
        moments = _scores(space, chosen, calib, plan, None, False, block_bytes, False)[1]
    _update(space, chosen, calib, plan, removed, removed, damp, False, block_bytes, moments)
    space.zero_(removed)
    if recalibrate_bn and calib is not None:
        recalibrate(space.model, calib, False)
        space.zero_(removed)


def _method(name: str) -> Method:
    return METHODS[name]


def _calibration(method: Method, calibration: Iterable[Any] | None, model: nn.Module) -> Calibration | None:
    if calibration is None:
        if method.statistics is not None:
            raise CalibrationError(
                f"method {method.name!r} needs calibration data (an iterable of model inputs); "
                "method='magnitude' works without"
            )
        return None
    return Calibration.of(calibration, model)


def group_scores(
    space: GroupSpace,
    calibration: Iterable[Any] | None,
    method: str = "obs",
    *,
    score_damp: float | None = None,
    progress: bool = True,
    block_bytes: int = BLOCK_BYTES,
) -> torch.Tensor:
    """Every group's score by ``method`` on ``calibration`` (lowest goes first), the model unchanged:
    what ``prune`` ranks by, and what a policy search builds its error database from."""
    chosen = _method(method)
    if chosen.statistics is None:
        return space.group_norms()
    calib = _calibration(chosen, calibration, space.model)
    plan = call_plan(space.model, calib, consumers(space))
    return _scores(space, chosen, calib, plan, score_damp, progress, block_bytes)[0]


def _blocks(layers: list[Consumer], block_bytes: int) -> list[list[Consumer]]:
    """Consecutive layers whose statistics fit in ``block_bytes`` together (at least one each)."""
    blocks: list[list[Consumer]] = []
    size = 0
    for layer in layers:
        need = 8 * (layer.width + 1) ** 2
        if blocks and size + need <= block_bytes:
            blocks[-1].append(layer)
            size += need
        else:
            blocks.append([layer])
            size = need
    return blocks


def _scores(
    space: GroupSpace,
    method: Method,
    calib: Calibration,
    plan: CallPlan,
    damp: float | None,
    progress: bool,
    block_bytes: int,
    warn: bool = True,
) -> tuple[torch.Tensor, dict[str, Moments]]:
    """Every group's score summed over its consumers (inf for groups no consumer measures)."""
    scores = torch.zeros(space.num_groups, dtype=torch.float64)
    measured = torch.zeros(space.num_groups, dtype=torch.bool)
    kept: dict[str, Moments] = {}
    blocks = _blocks(plan.order, block_bytes) if method.statistics is Gram else [plan.order]
    if method.sensitivity:
        output_sensitivity(space.model, calib, plan.order)
    with progress_bar(len(blocks) * len(calib.batches), f"{method.name}: statistics", progress) as bar:
        for block in blocks:
            stats = Collector(block, method.statistics, plan.calls).collect(space.model, calib, bar)
            for layer in block:
                if stats[layer.name].count:
                    scores += method.score(layer, stats[layer.name], space.num_groups, damp)
                    measured[layer.column_group[layer.column_group >= 0]] = True
            if method.statistics is Moments:
                kept.update(stats)
    if warn:
        _warn_unmeasured(space, ~measured)
    scores[~measured] = float("inf")
    return scores, kept


def _warn_unmeasured(space: GroupSpace, unmeasured: torch.Tensor) -> None:
    if not bool(unmeasured.any()):
        return
    families = sorted({int(f) for f in space.group_family[unmeasured].tolist()})
    names = ", ".join(space.families[f].name for f in families[:5]) + (" ..." if len(families) > 5 else "")
    warnings.warn(
        f"zigprune: {int(unmeasured.sum())} groups ({names}) feed no layer that post-training pruning can "
        "measure (Linear, Conv1d/2d); they are scored as most important and go last",
        stacklevel=3,
    )


def _update(
    space: GroupSpace,
    method: Method,
    calib: Calibration | None,
    plan: CallPlan,
    removed: torch.Tensor,
    new: torch.Tensor,
    damp: float,
    progress: bool,
    block_bytes: int,
    moments: dict[str, Moments],
) -> None:
    """Apply the method's update to every consumer of ``new`` removed columns (bias shift, or sequential
    refit with every ``removed`` column at zero)."""
    touched = [c for c in plan.order if not c.shared and bool(_removed_columns(c, new).any())]
    if method.update == "bias":
        for layer in touched:
            compensate_bias(layer, moments[layer.name], _removed_columns(layer, new))
    elif method.update == "refit" and touched:
        stages = _stages(touched, plan.inputs, block_bytes)
        with progress_bar(len(stages) * len(calib.batches), "obs: refit", progress) as bar:
            for stage in stages:
                stats = Collector(stage, Gram, plan.calls).collect(space.model, calib, bar)
                for layer in stage:
                    _refit(layer, stats[layer.name], _removed_columns(layer, removed), damp)


def _removed_columns(layer: Consumer, removed: torch.Tensor) -> torch.Tensor:
    groups = layer.column_group
    return (groups >= 0) & removed[groups.clamp(min=0)]


def _stages(layers: list[Consumer], inputs: dict[str, tuple], block_bytes: int) -> list[list[Consumer]]:
    """Layers refit from one pass: consecutive ones that read the same input (q, k, v), within budget."""
    stages: list[list[Consumer]] = []
    for layer in layers:
        last = stages[-1] if stages else None
        fits = last is not None and sum(8 * (c.width + 1) ** 2 for c in [*last, layer]) <= block_bytes
        if fits and inputs[layer.name] == inputs[last[-1].name]:
            last.append(layer)
        else:
            stages.append([layer])
    return stages


@torch.no_grad()
def _refit(layer: Consumer, stats: Gram, removed: torch.Tensor, damp: float) -> None:
    """Least-squares refit of ``layer``'s kept columns (and bias) against its current outputs."""
    if not stats.count:
        return
    module, bias = layer.module, layer.has_bias
    w = layer.adapter.matrix(module).double()
    if bias:
        w = torch.cat([w, module.bias.detach().double().reshape(-1, 1)], 1)
        removed = torch.cat([removed, removed.new_zeros(1)])
    new = obs.refit(w, obs.damped(stats.for_layer(bias), damp).to(w.device), removed.to(w.device))
    if bias:
        module.bias.data.copy_(new[:, -1].to(module.bias.dtype))
        new = new[:, :-1]
    layer.adapter.assign(module, new)


def _check_finite(model: nn.Module) -> None:
    bad = [
        name for name, p in model.named_parameters() if not p.is_meta and not bool(torch.isfinite(p).all())
    ]
    if bad:
        raise CalibrationError(
            f"the update left non-finite weights in {', '.join(bad[:3])}; the model was restored. Try a "
            "larger damp= or more calibration samples"
        )
