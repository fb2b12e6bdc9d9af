"""Random state for exact resume: the global RNGs as tensors and scalars, and each epoch's sample order."""

from __future__ import annotations

import random
from typing import Any

import numpy as np
import torch

SEED_STRIDE = 1_000_003


def rng_state() -> dict[str, Any]:
    """The global RNG states of torch, Python and NumPy, as tensors and JSON-able scalars."""
    version, keys, pos, has_gauss, cached = np.random.get_state()
    return {
        "torch": torch.get_rng_state(),
        "python": [list(item) if isinstance(item, tuple) else item for item in random.getstate()],
        "numpy": {
            "keys": torch.from_numpy(keys.astype(np.int64)),
            "pos": int(pos),
            "gauss": [has_gauss, cached],
        },
        "numpy_kind": version,
    }


def set_rng_state(state: dict[str, Any]) -> None:
    """Inverse of ``rng_state``."""
    torch.set_rng_state(state["torch"])
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    numpy = state["numpy"]
    keys = numpy["keys"].numpy().astype(np.uint32)
    np.random.set_state((state["numpy_kind"], keys, numpy["pos"], int(numpy["gauss"][0]), numpy["gauss"][1]))


def epoch_order(n: int, seed: int, epoch: int) -> torch.Tensor:
    """The sample order of ``epoch``: a permutation drawn from ``seed + epoch`` alone."""
    return torch.randperm(n, generator=torch.Generator().manual_seed(seed * SEED_STRIDE + epoch + 1))
