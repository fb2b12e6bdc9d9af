"""Connected components of an integer graph, vectorised in torch (linear work per round, few rounds)."""

import torch


def components(n: int, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Return ``root`` with ``root[i]`` the smallest node id connected to ``i`` by edges ``a[k]—b[k]``."""
    parent = torch.arange(n, dtype=torch.long)
    if a.numel() == 0:
        return parent
    while True:
        pa, pb = parent[a], parent[b]
        low, high = torch.minimum(pa, pb), torch.maximum(pa, pb)
        moved = parent.clone()
        moved.scatter_reduce_(0, high, low, reduce="amin")
        while True:
            jumped = moved[moved]
            if torch.equal(jumped, moved):
                break
            moved = jumped
        if torch.equal(moved, parent):
            return parent
        parent = moved
