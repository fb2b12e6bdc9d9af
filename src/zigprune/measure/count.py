"""Parameters and MACs of a module, attention matmuls included (``torch.utils.flop_counter``)."""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from ..core.trace import as_inputs, batch_size, eval_mode, export
from ..errors import TraceError


def count(module: nn.Module, example_inputs: Any, per_sample: bool = True) -> dict[str, int]:
    """``{"params": int, "macs": int}``: unique parameters, and multiply-accumulates per sample.

    MACs cover convolutions, matmuls and scaled-dot-product attention (half of PyTorch's FLOP
    count). They are counted on the ``torch.export`` graph, so fused eager fast paths (such as
    ``nn.TransformerEncoder``'s in eval mode) are counted like the ops they replace. ``per_sample``
    (the default, the unit of ``zigprune compress`` and of ``space.total_macs`` / ``space.macs()``)
    divides one forward's MACs by the batch size (``zigprune.core.trace.batch_size``);
    ``per_sample=False`` gives the MACs of the whole call.
    """
    inputs = as_inputs(example_inputs, module)
    params = sum(p.numel() for p in {id(p): p for p in module.parameters()}.values())
    try:
        runnable = export(module, inputs).module()
    except TraceError:
        runnable = module
    counter = FlopCounterMode(display=False, custom_mapping=_CPU_ATTENTION)
    with torch.no_grad(), eval_mode(module), counter:
        inputs.call(runnable)
    macs = counter.get_total_flops() // 2
    return {"params": int(params), "macs": round(macs / batch_size(inputs)) if per_sample else int(macs)}


def _sdpa_flops(query: tuple, key: tuple, value: tuple, *args: Any, **kwargs: Any) -> int:
    """FLOPs of attention: ``Q Kᵀ`` and ``P V`` (the CPU kernel has no formula in PyTorch's table)."""
    *batch, length, dim = query
    source, value_dim = key[-2], value[-1]
    return 2 * math.prod(batch) * length * source * (dim + value_dim)


_CPU_ATTENTION = {torch.ops.aten._scaled_dot_product_flash_attention_for_cpu: _sdpa_flops}
