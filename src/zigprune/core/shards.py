"""Parameters sharded by FSDP2 (``fully_shard``): DTensors whose rank holds a block of dim-0 rows.

Per-group work stays local: each rank reduces the rows it holds (a dim-0 slice's group index is
cut to the rank's block; a slice along another dim has every position of the rows it holds), then
one all-reduce per group vector makes every rank agree. Element-wise updates touch only the local
block and need no communication. Only a 1-D mesh with ``Shard(0)`` (FSDP2's layout) is handled.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.distributed as dist

try:
    from torch.distributed.tensor import DTensor, Shard
except ImportError:  # a torch built without distributed support has no sharded parameters
    DTensor, Shard = (), None

REDUCE_OPS = {"sum": "SUM", "amax": "MAX", "amin": "MIN", "prod": "PRODUCT"}


def local(tensor: torch.Tensor) -> torch.Tensor:
    """The rank's own block of a DTensor (a view: in-place ops on it update the parameter), else itself."""
    return tensor.to_local() if isinstance(tensor, DTensor) else tensor


def local_rows(tensor: torch.Tensor, dim: int, group: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, Any]:
    """``(local block, group index of its positions along dim, process group or None)``."""
    if not isinstance(tensor, DTensor):
        return tensor, group, None
    mesh = tensor.device_mesh
    if mesh.ndim != 1 or tuple(tensor.placements) != (Shard(0),):
        raise NotImplementedError(
            f"zigprune handles parameters sharded on dim 0 over a 1-D mesh (FSDP2's fully_shard); got "
            f"placements {tuple(tensor.placements)} on a {mesh.ndim}-D mesh"
        )
    block = tensor.to_local()
    if dim == 0:
        per_rank = -(-tensor.shape[0] // mesh.size())  # torch.chunk's rule, which fully_shard follows
        start = min(mesh.get_local_rank() * per_rank, tensor.shape[0])
        group = group[start : start + block.shape[0]]
    return block, group, mesh.get_group()


def all_reduce_(values: torch.Tensor, reduce: str, process_group: Any) -> None:
    """Combine each rank's partial per-group values in place (nothing to do without a process group)."""
    if process_group is not None:
        dist.all_reduce(values, op=getattr(dist.ReduceOp, REDUCE_OPS[reduce]), group=process_group)


def any_rank(flag: bool, tensors: list[torch.Tensor]) -> bool:
    """``flag`` or-ed over the ranks that share the DTensors among ``tensors`` (itself when none is one)."""
    sharded = [t for t in tensors if isinstance(t, DTensor)]
    if not sharded:
        return flag
    value = torch.tensor([float(flag)])
    dist.all_reduce(value, op=dist.ReduceOp.MAX, group=sharded[0].device_mesh.get_group())
    return bool(value)
