"""The post-training methods: how each scores a group on one consumer, and how it updates weights.

A group's score is the sum of its scores over the layers that consume it; the lowest go first.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

from ..registry import Registry
from . import obs
from .consumers import Consumer
from .statistics import Gram, Moments

Scorer = Callable[[Consumer, "Gram | Moments", int, "float | None"], torch.Tensor]
SCORE_DAMP = 0.1


def _per_group(consumer: Consumer, column_score: torch.Tensor, num_groups: int) -> torch.Tensor:
    """Column scores summed per group (columns of no group are left out)."""
    groups = consumer.column_group
    keep = groups >= 0
    return torch.zeros(num_groups, dtype=torch.float64).index_add_(
        0, groups[keep], column_score.double().cpu()[keep]
    )


def _weight(consumer: Consumer) -> torch.Tensor:
    return consumer.adapter.matrix(consumer.module).double()


def obs_score(consumer: Consumer, stats: Gram, num_groups: int, damp: float | None) -> torch.Tensor:
    """Structured OBS: the output error each group adds when the layer's groups are removed cheapest
    first with an optimal refit (:func:`obs.group_errors`), each output channel weighted by how much
    it moves the model's outputs (``consumer.row_scale``), so that errors of different layers compare.

    ``damp`` None: ``SCORE_DAMP``, 0.1. (Before the greedy order, scores of groups taken one at a time
    needed 1.0 for convolutions to stop layers from losing nearly every channel; now 0.1 keeps 90.0%
    against 88.8% with 1.0 on ResNet-20 / Fashion-MNIST at 1.5x fewer MACs, dense 90.1%.)
    """
    h = obs.damped(stats.for_layer(consumer.has_bias), SCORE_DAMP if damp is None else damp)
    w = _weight(consumer)
    if consumer.has_bias:
        w = torch.cat([w, consumer.module.bias.detach().double().reshape(-1, 1)], 1)
    if consumer.row_scale is not None and consumer.row_scale.numel() == w.shape[0]:
        w = w * consumer.row_scale.to(w.device).sqrt().reshape(-1, 1)
    groups = torch.cat([consumer.column_group, torch.full((int(consumer.has_bias),), -1)])
    return obs.group_errors(w, obs.inverse(h), groups, num_groups)


def wanda_score(consumer: Consumer, stats: Moments, num_groups: int, damp: float) -> torch.Tensor:
    """Wanda-sp: ``Σ_i |W_ij| · ‖X_j‖₂`` over the group's columns (weights times input norms)."""
    return _per_group(consumer, _weight(consumer).abs().sum(0) * stats.squares.sqrt(), num_groups)


def flap_score(consumer: Consumer, stats: Moments, num_groups: int, damp: float) -> torch.Tensor:
    """FLAP's fluctuation: ``Var(X_j) · ‖W_:,j‖²``, how much the column's output varies around its mean."""
    return _per_group(consumer, _weight(consumer).square().sum(0) * stats.variance, num_groups)


@torch.no_grad()
def compensate_bias(consumer: Consumer, stats: Moments, removed: torch.Tensor) -> None:
    """FLAP's bias compensation: add the removed columns' mean contribution ``W_:,Q · mean(X_Q)``."""
    if not consumer.has_bias or not bool(removed.any()):
        return
    shift = _weight(consumer)[:, removed] @ stats.mean[removed].to(consumer.module.bias.device)
    consumer.module.bias.data.add_(shift.to(consumer.module.bias.dtype))


@dataclass(frozen=True)
class Method:
    """A post-training method: its statistics, its per-consumer score, and its weight update.

    ``update``: ``"none"``, ``"bias"`` (mean compensation from the dense statistics) or ``"refit"``
    (sequential least-squares refit of each consumer, see ``prune``). ``sensitivity``: weigh each
    consumer's output channels by how much they move the model's outputs (``sensitivity.py``).
    """

    name: str
    summary: str
    statistics: type | None
    score: Scorer | None
    update: str
    sensitivity: bool = False


METHODS: Registry[Method] = Registry("method", ((m.name, m) for m in (
        Method("obs", "structured OBS error in the units of the model's outputs; kept columns refit by "
               "least squares, bias included", Gram, obs_score, "refit", sensitivity=True),
        Method("wanda", "Wanda-sp: |weight| x input norm per column; no update", Moments, wanda_score,
               "none"),
        Method("flap", "FLAP: input variance x squared column norm; removed means folded into biases",
               Moments, flap_score, "bias"),
        Method("magnitude", "group L2 norm of the weights; no calibration, no update", None, None, "none"),
    )), ValueError)  # fmt: skip
