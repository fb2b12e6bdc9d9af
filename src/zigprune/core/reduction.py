"""The one per-group reduction: a statistic of every row of some sliced tensors, gathered per group.

A group's vector is spread over rows of several tensors (weight rows, biases, norm scales …), each
row tagged with its group. Group norms, zero tests, criteria scores and the optimizers' per-step
sums are all this reduction with a different row statistic.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

import torch

from .shards import all_reduce_, local_rows

Slices = Iterable[tuple[torch.Tensor, int, torch.Tensor]]


@torch.no_grad()
def per_group(
    slices: Slices,
    num_groups: int,
    row_stat: Callable[[torch.Tensor], torch.Tensor],
    reduce: str = "sum",
    dtype: torch.dtype = torch.float64,
) -> torch.Tensor:
    """One value per group (on the CPU): ``row_stat`` of each slice's rows, combined with ``reduce``.

    ``slices`` yields ``(tensor, dim, group)``: ``group[i]`` is the group of row ``i`` along ``dim``
    (``num_groups`` for a row of no group). ``row_stat`` maps the rows ``(n, rest)`` to ``n`` values;
    they are combined per group in ``dtype`` on the tensors' device (``"sum"``, ``"amax"``, …).
    Sharded tensors (FSDP2) are reduced over the local rows, then across ranks (``core.shards``).
    """
    out, process_group = None, None
    for tensor, dim, group in slices:
        tensor, group, shared = local_rows(tensor, dim, group)
        process_group = process_group or shared
        if out is None:
            out = torch.zeros(num_groups + 1, dtype=dtype, device=tensor.device)
        if tensor.numel() == 0:  # a rank may hold no rows of a small parameter
            continue
        rows = row_stat(tensor.movedim(dim, 0).reshape(tensor.shape[dim], -1)).to(dtype)
        out.scatter_reduce_(0, group.to(rows.device), rows, reduce=reduce)
    if out is None:
        return torch.zeros(num_groups, dtype=dtype)
    all_reduce_(out, reduce, process_group)
    return out[:num_groups].cpu()
