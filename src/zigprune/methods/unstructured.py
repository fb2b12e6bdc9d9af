"""Unstructured (weight-level) pruning: global magnitude masks and their *theoretical* MACs and params.

Only conv and linear weights are masked. A zero weight saves its MACs only with sparse kernels, so
these costs are labelled theoretical: MACs of each layer scaled by the share of its weights kept.
"""

from __future__ import annotations

import torch
from torch import nn

from ..errors import ZigpruneError

LAYERS = (nn.modules.conv._ConvNd, nn.Linear)
BISECTIONS = 50


def layer_macs(model: nn.Module, example: torch.Tensor) -> dict[str, int]:
    """MACs per sample of every conv/linear layer on ``example``, keyed by its weight's name."""
    macs: dict[str, int] = {}

    def record(key: str, module: nn.Module, args: tuple, out: torch.Tensor) -> None:
        source = args[0] if isinstance(module, nn.modules.conv._ConvTransposeNd) else out
        macs[key] = macs.get(key, 0) + source.numel() // example.shape[0] * module.weight[0].numel()

    handles = [
        module.register_forward_hook(lambda m, a, o, key=key: record(key, m, a, o))
        for key, module in _layers(model).items()
    ]
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            model(example)
    finally:
        model.train(was_training)
        for handle in handles:
            handle.remove()
    return macs


def _layers(model: nn.Module) -> dict[str, nn.Module]:
    return {
        f"{name}.weight" if name else "weight": m
        for name, m in model.named_modules()
        if isinstance(m, LAYERS)
    }


def weights(model: nn.Module) -> dict[str, nn.Parameter]:
    """The prunable weights: every conv and linear layer's ``weight``."""
    return {key: module.weight for key, module in _layers(model).items()}


def theoretical(model: nn.Module, macs: dict[str, int]) -> dict[str, int]:
    """``{"macs", "params"}`` counting only nonzero conv/linear weights (other params count in full)."""
    prunable = weights(model)
    dense = sum(p.numel() for name, p in model.named_parameters() if name not in prunable)
    nonzero = {name: int(torch.count_nonzero(p)) for name, p in prunable.items()}
    kept_macs = sum(macs.get(n, 0) * nonzero[n] / max(p.numel(), 1) for n, p in prunable.items())
    return {"macs": round(kept_macs), "params": dense + sum(nonzero.values())}


def magnitude_masks(model: nn.Module, macs: dict[str, int], fraction: float) -> dict[str, torch.Tensor]:
    """Global magnitude masks (one |w| threshold) that remove ``fraction`` of the conv/linear MACs.

    Zero weights already present stay masked; the threshold is bisected on theoretical MACs.
    """
    if not 0 < fraction < 1:
        raise ZigpruneError(f"the MACs fraction to remove must lie strictly between 0 and 1, not {fraction}")
    prunable = weights(model)
    total = sum(macs.get(n, 0) for n in prunable)
    goal = total * (1 - fraction)

    def masks_at(threshold: float) -> dict[str, torch.Tensor]:
        return {n: p.detach().abs() > threshold for n, p in prunable.items()}

    def kept(masks: dict[str, torch.Tensor]) -> float:
        return sum(macs.get(n, 0) * float(m.float().mean()) for n, m in masks.items())

    lo, hi = 0.0, max(float(p.detach().abs().max()) for p in prunable.values())
    for _ in range(BISECTIONS):
        mid = (lo + hi) / 2
        if kept(masks_at(mid)) <= goal:
            hi = mid
        else:
            lo = mid
    return masks_at(hi)
