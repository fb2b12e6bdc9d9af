"""Shared check: zero a random share of groups, construct, and compare with the zero-group full model."""

from __future__ import annotations

import copy
from typing import Any

import torch
from torch import nn

import zigprune as zp
from zigprune.core.construct import output_tensors


def outputs(model: nn.Module, inputs: Any) -> list[torch.Tensor]:
    with torch.no_grad():
        if isinstance(inputs, dict):
            out = model(**inputs)
        elif isinstance(inputs, tuple):
            out = model(*inputs)
        else:
            out = model(inputs)
    return output_tensors(out)


def assert_close(reference: list[torch.Tensor], got: list[torch.Tensor], rel: float = 1e-4) -> None:
    assert len(reference) == len(got)
    for r, g in zip(reference, got, strict=True):
        assert r.shape == g.shape
        if r.is_floating_point():
            scale = max(r.abs().max().item(), 1e-3)
            assert (r - g).abs().max().item() <= rel * scale + 1e-6, (r - g).abs().max().item()
        else:
            assert torch.equal(r, g)


def prune_and_check(
    model: nn.Module, inputs: Any, fraction: float, seed: int = 0, other_inputs: Any = None
) -> tuple[zp.GroupSpace, nn.Module]:
    """Zero ``fraction`` of the groups of a copy of ``model``; the slim model must match it exactly."""
    model = copy.deepcopy(model).eval()
    return zero_and_check(zp.analyze(model, inputs), inputs, fraction, seed, other_inputs)


def zero_and_check(
    space: zp.GroupSpace,
    inputs: Any,
    fraction: float,
    seed: int = 0,
    other_inputs: Any = None,
    full: dict[str, int] | None = None,
) -> tuple[zp.GroupSpace, nn.Module]:
    """Zero ``fraction`` of the groups of ``space``'s model (in eval mode); the slim model must match it
    exactly, with fewer params and MACs, as the space counted them. ``full``: ``zp.count`` of the
    model, when the caller has it (zeroing changes neither count)."""
    model = space.model
    assert space.num_groups > 0
    chosen = torch.randperm(space.num_groups, generator=torch.Generator().manual_seed(seed))
    chosen = chosen[: max(1, int(fraction * space.num_groups))]
    space.zero_(chosen)
    assert bool(space.zero_groups()[chosen].all())
    before_state = {k: v.clone() for k, v in model.state_dict().items()}
    slim = space.construct().eval()
    for key, value in model.state_dict().items():
        assert torch.equal(value, before_state[key]), f"construct() changed the original model ({key})"
    assert_close(outputs(model, inputs), outputs(slim, inputs))
    if other_inputs is not None:
        assert_close(outputs(model, other_inputs), outputs(slim, other_inputs))
    full, small = full or zp.count(model, inputs), zp.count(slim, inputs)
    assert small["params"] < full["params"]
    assert small["macs"] < full["macs"]
    assert full["macs"] == space.total_macs
    assert small["macs"] == space.macs(space.zero_groups())
    return space, slim
