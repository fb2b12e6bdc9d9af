"""Reading a batch, finding the class scores in a model output, and scoring a model on a dataset."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import Dataset, TensorDataset

from ..errors import ZigpruneError


class OutputError(ZigpruneError, TypeError):
    """A model's output holds no class scores to train or evaluate on."""


@dataclass
class Metrics:
    """Mean loss and accuracy of a model over a dataset."""

    loss: float
    accuracy: float
    count: int


def logits(output: Any) -> torch.Tensor:
    """The class scores in a model output: the tensor, ``.logits`` (Hugging Face) or the first item."""
    if isinstance(output, torch.Tensor):
        return output
    if hasattr(output, "logits"):
        return output.logits
    if isinstance(output, (tuple, list)) and output:
        return logits(output[0])
    raise OutputError(
        f"cannot find class scores in a model output of type {type(output).__name__}; "
        "return a tensor of logits, an object with .logits, or a tuple starting with them"
    )


def fetch(dataset: Dataset, indices: torch.Tensor) -> tuple[Any, torch.Tensor]:
    """The batch ``(x, y)`` at ``indices``: sliced from a TensorDataset, the dataset's own ``take`` where
    it has one (tokenized text: ``x`` is a dict of keyword inputs), else stacked item by item."""
    if hasattr(dataset, "take"):
        return dataset.take(indices)
    if isinstance(dataset, TensorDataset):
        x, y = dataset.tensors[:2]
        return x[indices], y[indices]
    items = [dataset[int(i)] for i in indices]
    return torch.stack([torch.as_tensor(item[0]) for item in items]), torch.as_tensor(
        [int(item[1]) for item in items]
    )


def sample_inputs(dataset: Dataset, samples: int, *, seed: int = 0, batch_size: int = 32) -> list[Any]:
    """``samples`` inputs of ``dataset`` drawn at random (fixed by ``seed``), in batches of ``batch_size``:
    the one recipe post-training pruning, int8 and the bench calibrate with."""
    order = torch.randperm(len(dataset), generator=torch.Generator().manual_seed(seed))
    chosen = order[: min(samples, len(dataset))]
    return [fetch(dataset, idx.sort().values)[0] for idx in chosen.split(batch_size)]


@torch.no_grad()
def evaluate(model: nn.Module, dataset: Dataset, *, batch_size: int = 512) -> Metrics:
    """Mean cross-entropy loss and accuracy of ``model`` on ``dataset``, in eval mode (mode restored)."""
    was_training = model.training
    model.eval()
    loss = correct = 0.0
    n = len(dataset)
    try:
        for begin in range(0, n, batch_size):
            x, y = fetch(dataset, torch.arange(begin, min(begin + batch_size, n)))
            out = logits(model(x))
            loss += float(F.cross_entropy(out, y, reduction="sum"))
            correct += float((out.argmax(1) == y).sum())
    finally:
        model.train(was_training)
    return Metrics(loss / max(n, 1), correct / max(n, 1), n)
