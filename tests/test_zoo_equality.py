"""Every zoo model: zero 30/50/90% of its groups, construct, same outputs with fewer params and MACs."""

import functools

import pytest
import torch

import zigprune as zp
from equality import zero_and_check
from zigprune import models

FRACTIONS = (0.3, 0.5, 0.9)
DEEPER_TWINS = {"resnet110"}  # resnet56's structure, twice as deep: one fraction keeps the suite fast
CASES = [(n, f) for n in models.names() for f in FRACTIONS if n not in DEEPER_TWINS or f == 0.5]


@pytest.mark.parametrize(("name", "fraction"), CASES)
def test_zoo_model_prunes_exactly(name: str, fraction: float) -> None:
    space, weights, full = _analysed(name)
    space.model.load_state_dict(weights)  # the dense weights again: each fraction starts from them
    inputs = models.example_input(name)
    other = models.example_input(name, batch=3)
    space, _ = zero_and_check(space, inputs, fraction, other_inputs=other, full=full)
    assert space.macs(space.zero_groups()) < space.total_macs


@functools.cache
def _analysed(name: str) -> tuple[zp.GroupSpace, dict[str, torch.Tensor], dict[str, int]]:
    """Model ``name`` with random norms, analysed once (construction check on) for all its fractions,
    its dense weights and its ``zp.count``."""
    torch.manual_seed(0)
    model = models.create(name)
    _randomize_norms(model)
    model.eval()
    weights = {k: v.clone() for k, v in model.state_dict().items()}
    inputs = models.example_input(name)
    return zp.analyze(model, inputs), weights, zp.count(model, inputs)


def _randomize_norms(model: torch.nn.Module) -> None:
    """Give BatchNorm non-trivial statistics so that a wrongly kept BN channel would show."""
    for m in model.modules():
        if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
            m.running_mean.uniform_(-0.5, 0.5)
            m.running_var.uniform_(0.5, 1.5)
            m.weight.data.uniform_(0.5, 1.5)
            m.bias.data.uniform_(-0.5, 0.5)
