"""What a training step minimises: cross-entropy on labels, or distillation from a frozen teacher.

An objective takes the model, one batch's inputs (a Tensor, a tuple of positional arguments or a
dict of keyword arguments) and its labels, and returns the loss and, where there are classes, how
many predictions were right (for the progress bar and the history).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

import torch
import torch.nn.functional as F
from torch import nn

from ..core.construct import output_tensors
from ..core.trace import as_inputs
from ..measure.fidelity import mean_pool
from .evaluate import logits


@dataclass(frozen=True)
class StepLoss:
    """One batch's loss, and its number of right predictions (None where outputs are not classes)."""

    loss: torch.Tensor
    correct: float | None


class Objective(Protocol):
    """``objective(model, x, y)``: the loss of ``model`` on inputs ``x`` with labels ``y``."""

    def __call__(self, model: nn.Module, x: Any, y: torch.Tensor) -> StepLoss: ...


class Classification:
    """Cross-entropy of the model's class scores against the labels."""

    def __call__(self, model: nn.Module, x: Any, y: torch.Tensor) -> StepLoss:
        out = logits(as_inputs(x).call(model))
        return StepLoss(F.cross_entropy(out, y), float((out.detach().argmax(1) == y).sum()))


@dataclass
class Distillation:
    """Follow a frozen ``teacher`` (the starting model) on the same inputs.

    With labels (``labelled``) or a ``.logits`` output: KL divergence of the softened class
    distributions (``temperature``, scaled by its square as Hinton et al. do; per token for
    ``[batch, tokens, classes]`` logits, over the tokens the ``attention_mask`` keeps), plus
    ``task_weight`` times the cross-entropy on the labels when ``labelled``. Otherwise (an encoder
    returning hidden states, no labels): one minus the cosine similarity of the mean-pooled outputs
    (sentence embeddings), tokens weighted by the ``attention_mask``.
    """

    teacher: nn.Module
    temperature: float = 2.0
    task_weight: float = 0.5
    labelled: bool = True

    def __post_init__(self) -> None:
        self.teacher.eval().requires_grad_(False)

    def __call__(self, model: nn.Module, x: Any, y: torch.Tensor) -> StepLoss:
        inputs = as_inputs(x)
        with torch.no_grad():
            goal = inputs.call(self.teacher)
        out = inputs.call(model)
        mask = inputs.kwargs.get("attention_mask")
        if self.labelled or hasattr(goal, "logits"):
            return self._logits(_tokens(logits(out), mask), _tokens(logits(goal), mask).detach(), y)
        student, teacher = (mean_pool(output_tensors(o)[0], mask).flatten(1) for o in (out, goal))
        return StepLoss(1 - F.cosine_similarity(student, teacher.detach(), dim=-1).mean(), None)

    def _logits(self, out: torch.Tensor, goal: torch.Tensor, y: torch.Tensor) -> StepLoss:
        t = self.temperature
        loss = F.kl_div(F.log_softmax(out / t, -1), F.log_softmax(goal / t, -1), log_target=True,
                        reduction="batchmean") * t * t  # fmt: skip
        if not self.labelled:
            return StepLoss(loss, None)
        loss = (1 - self.task_weight) * loss + self.task_weight * F.cross_entropy(out, y)
        return StepLoss(loss, float((out.detach().argmax(1) == y).sum()))


def _tokens(scores: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    """``[batch, classes]`` scores as they are; ``[batch, tokens, classes]`` as one row per kept token."""
    if scores.dim() != 3:
        return scores
    keep = mask.bool() if mask is not None and mask.shape == scores.shape[:2] else None
    return scores[keep] if keep is not None else scores.flatten(0, 1)
