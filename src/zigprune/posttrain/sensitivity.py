"""How much an error in each output channel of a consumer moves the model's outputs: a cheap Fisher.

Layer-wise errors are in the units of each layer's own outputs, so a layer whose outputs are small,
or whose errors the next layers shrink, looks free to cut; summed across layers they pick a
one-channel bottleneck. Weighting each output channel ``i`` by ``E[(∂L/∂y_i)²]`` for the loss
``L = Σ r·o / std(o)`` over the model's outputs ``o`` (``r`` standard normal, a fresh draw per
batch) puts every layer's error in one unit: ``E_r`` of that square is the diagonal of ``JᵀJ`` (the
Gauss-Newton matrix of the outputs' relative squared error), so ``Σ_i F_i ΔY_i²`` estimates how far
the outputs move. The first output is compared as the project's fidelity measure compares it: token
outputs by the unit vector of their mean over the kept tokens (on all-MiniLM-L6-v2 at 1.5x fewer
MACs: cosine 0.929 to the dense sentence embeddings, against 0.924 with every token's output and
every output), a causal language model's logits token by token. One forward and backward pass per
calibration batch, gradients of the activations only (no parameter gradient is formed).
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from ..core.construct import output_tensors
from ..core.trace import eval_mode
from ..errors import first_line
from ..measure.fidelity import is_causal_lm, mean_pool
from .calibration import Calibration
from .consumers import Consumer


def output_sensitivity(
    model: nn.Module, calibration: Calibration, members: Sequence[Consumer], seed: int = 0
) -> bool:
    """Set every member's ``row_scale`` to its output channels' mean squared gradient; False (and
    ``row_scale`` left as it was) when the model's outputs cannot be differentiated."""
    sums: dict[str, list] = {c.name: [None, 0] for c in members}
    by_module = {id(c.module): c for c in members}
    captured: list[tuple[Consumer, torch.Tensor]] = []

    def capture(module: nn.Module, args: tuple, out: object) -> object:
        if not isinstance(out, torch.Tensor) or not out.is_floating_point():
            return None
        if not out.requires_grad:
            out = out.detach().requires_grad_()
        captured.append((by_module[id(module)], out))
        return out

    generator = torch.Generator().manual_seed(seed)
    per_token = is_causal_lm(model)
    handles = [c.module.register_forward_hook(capture) for c in members]
    try:
        with torch.enable_grad(), eval_mode(model):
            for inputs in calibration.batches:
                captured.clear()
                mask = inputs.kwargs.get("attention_mask")
                loss = _projection(output_tensors(inputs.call(model)), generator, mask, per_token)
                if loss is None or not captured:
                    return False
                grads = torch.autograd.grad(loss, [t for _, t in captured], allow_unused=True)
                for (consumer, _), grad in zip(captured, grads):
                    if grad is not None:
                        _accumulate(sums[consumer.name], consumer, grad)
    except RuntimeError as err:
        warnings.warn(
            f"zigprune: the model's outputs could not be differentiated ({first_line(err)}); "
            "errors are compared in each layer's own units",
            stacklevel=3,
        )
        return False
    finally:
        for h in handles:
            h.remove()
        captured.clear()
    for c in members:
        total, rows = sums[c.name]
        if total is not None:
            c.row_scale = (total / max(rows, 1)).cpu()
        else:
            c.row_scale = torch.zeros(c.adapter.outputs(c.module), dtype=torch.float64)
    return True


def _projection(
    outputs: list[torch.Tensor], generator: torch.Generator, mask: torch.Tensor | None, per_token: bool
) -> torch.Tensor | None:
    """``r·o / std(o)`` for the model's first floating output that its layers compute, compared as the
    project's fidelity measure compares outputs: a ``[batch, tokens, features]`` output with an
    ``attention_mask`` as the unit vector of its mean over the kept tokens (a sentence embedding; a
    causal language model's logits stay token by token, ``per_token``), other outputs as they are."""
    found = [o for o in outputs if o.is_floating_point() and o.requires_grad and o.numel() > 1]
    if not found:
        return None
    o = found[0]
    if not per_token and o.dim() == 3 and mask is not None:
        o = F.normalize(mean_pool(o, mask), dim=-1)
    scale = float(o.detach().float().std())
    if not scale > 0:
        return None
    r = torch.randn(o.shape, generator=generator).to(o.device, o.dtype)
    return (o * r).sum() / scale


def _accumulate(total: list, consumer: Consumer, grad: torch.Tensor) -> None:
    """Add the squared gradient per output channel and the rows it was summed over."""
    dim = consumer.adapter.output_dim(consumer.module, grad)
    g = grad.detach().movedim(dim, -1).reshape(-1, grad.shape[dim]).double()
    squares = g.square().sum(0)
    total[0] = squares if total[0] is None else total[0] + squares
    total[1] += g.shape[0]
