"""Fine-tuning shared weights: only the codebooks learn, each centroid moved by the sum of the gradients
of the weights that share it (Deep Compression's centroid update). Codes, biases and norms stay."""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

import torch
from torch import nn
from tqdm.auto import tqdm

from ..errors import DivergedError
from ..training.objective import Classification, Objective
from .sharing import Sharing, restore


def finetune_centroids(
    model: nn.Module,
    sharing: Sharing,
    batches: Iterable[tuple[Any, torch.Tensor]],
    *,
    epochs: int = 1,
    lr: float = 1e-4,
    objective: Objective | None = None,
    progress: bool = True,
) -> list[float]:
    """Train the codebooks of ``sharing`` on ``batches`` of ``(inputs, labels)`` with Adam, ``epochs``
    passes, the model in eval mode (BatchNorm statistics stay), and leave the model's weights at the
    new codebook values (in place, as ``share_weights`` does). A codebook entry that is exactly 0
    (pruned weights) stays 0. Returns each step's loss; a NaN or infinite loss raises
    :class:`DivergedError` with the weights restored."""
    objective = objective or Classification()
    modules = dict(model.named_modules())
    books = {name: layer.codebook.clone().requires_grad_(True) for name, layer in sharing.layers.items()}
    fixed = {name: layer.codebook == 0 for name, layer in sharing.layers.items()}
    optimizer = torch.optim.Adam(books.values(), lr=lr)
    losses: list[float] = []
    saved = [p.requires_grad for p in model.parameters()]
    was_training = model.training
    model.eval().requires_grad_(False)
    for name in books:
        modules[name].weight.requires_grad_(True)
    data = list(batches)
    try:
        for _ in range(epochs):
            for x, y in tqdm(data, desc="centroid fine-tune", disable=not progress, leave=False):
                model.zero_grad(set_to_none=True)
                loss = objective(model, x, y).loss
                if not math.isfinite(loss.item()):
                    raise DivergedError(
                        f"the centroid fine-tune diverged at step {len(losses) + 1} (loss {loss.item()}); "
                        "lower lr",
                        step=len(losses) + 1,
                        loss=loss.item(),
                    )
                loss.backward()
                _step(optimizer, books, fixed, sharing, modules)
                losses.append(loss.item())
    except DivergedError:
        restore(model, sharing)
        raise
    finally:
        for param, flag in zip(model.parameters(), saved):
            param.requires_grad_(flag)
        model.train(was_training)
    return losses


def _step(
    optimizer: torch.optim.Optimizer,
    books: dict[str, torch.Tensor],
    fixed: dict[str, torch.Tensor],
    sharing: Sharing,
    modules: dict[str, nn.Module],
) -> None:
    """Sum each weight's gradient into its centroid, step, and write the new values into the weights."""
    for name, book in books.items():
        layer, weight = sharing.layers[name], modules[name].weight
        grad = torch.zeros_like(book).index_add_(0, layer.codes.flatten(), weight.grad.flatten().float())
        book.grad = grad.masked_fill(fixed[name], 0)
    optimizer.step()
    with torch.no_grad():
        for name, book in books.items():
            book.masked_fill_(fixed[name], 0)
            layer = sharing.layers[name]
            layer.codebook = book.detach().clone()
            modules[name].weight.copy_(layer.values().to(modules[name].weight))
