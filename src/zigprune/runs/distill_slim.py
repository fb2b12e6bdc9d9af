"""After post-training pruning, a few epochs of distilling the slim model from the dense one.

``zigprune prune --distill-epochs N`` runs it after ``zp.prune`` and ``construct``: the slim model
trains to follow the dense model it came from (KL on logits plus the labels' loss for classifiers,
cosine of mean-pooled outputs for encoders), at a cosine-decayed learning rate. On MiniLM at 1.5x
fewer MACs a fine-tune like this took OBS's 0.928 mean cosine to 0.941 in 150 steps.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import nn
from torch.utils.data import Dataset

from ..training import History, train
from ..training.objective import Distillation

DEFAULT_LR = {"sgd": 0.01, "adam": 5e-5, "adamw": 5e-5}


@dataclass(frozen=True)
class DistillPlan:
    """How to distil the slim model: epochs over ``train_set``, batch, base update and its learning rate."""

    epochs: int
    batch_size: int
    variant: str
    lr: float
    seed: int = 0


def distill_slim(
    slim: nn.Module,
    dense: nn.Module,
    train_set: Dataset,
    plan: DistillPlan,
    *,
    labelled: bool,
    augment: Any = None,
    progress: bool = True,
) -> History:
    """Train ``slim`` in place to follow ``dense`` (frozen) on ``train_set``; return the history."""
    params = [p for p in slim.parameters() if p.requires_grad]
    if plan.variant == "sgd":
        optimizer: torch.optim.Optimizer = torch.optim.SGD(params, lr=plan.lr, momentum=0.9)
    else:
        kind = torch.optim.AdamW if plan.variant == "adamw" else torch.optim.Adam
        optimizer = kind(params, lr=plan.lr)
    history = train(
        slim, optimizer, train_set, epochs=plan.epochs, batch_size=plan.batch_size,
        scheduler="cosine", augment=augment, seed=plan.seed, progress=progress, desc="distill",
        objective=Distillation(dense, labelled=labelled),
    )  # fmt: skip
    slim.eval()
    return history
