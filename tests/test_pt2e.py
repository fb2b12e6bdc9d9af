"""Int8 inside PyTorch through torchao's PT2E route (issue 15): agreement with fp32, any batch size, the
model left as it was, and the errors a user can hit."""

from __future__ import annotations

import sys

import pytest
import torch
from torch import nn

import zigprune as zp
from zigprune.errors import QuantizeError
from zigprune.models import create

pytest.importorskip("torchao")


def _slim() -> nn.Module:
    torch.manual_seed(0)
    model = create("digits_cnn", in_channels=1, num_classes=10).eval()
    space = zp.analyze(model, torch.randn(2, 1, 8, 8))
    space.zero_(torch.arange(0, space.num_groups, 3))
    return space.construct()


def _batches(n: int, size: int = 16, seed: int = 1) -> list[torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    return [torch.randn(size, 1, 8, 8, generator=generator) for _ in range(n)]


def _agreement(int8: nn.Module, slim: nn.Module, x: torch.Tensor) -> float:
    with torch.no_grad():
        return (int8(x).argmax(1) == slim(x).argmax(1)).float().mean().item()


@pytest.mark.parametrize("compile", [False, True], ids=["reference", "inductor"])
def test_pt2e_int8_agrees_with_fp32_at_any_batch_size_and_leaves_the_model(compile):
    slim = _slim()
    before = {k: v.clone() for k, v in slim.state_dict().items()}
    int8 = zp.quantize_pt2e(slim, _batches(4), compile=compile)
    x = torch.cat(_batches(8, seed=7))
    assert _agreement(int8, slim, x) >= 0.9
    if not compile:  # compiled, each new shape costs a compile: one is enough here
        assert int8(x[:5]).shape == (5, 10)  # calibrated at 16, runs at 5: the batch dim is dynamic
    assert not int8.training and int8.eval() is int8
    assert all(torch.equal(before[k], v) for k, v in slim.state_dict().items())
    with pytest.raises(QuantizeError, match="cannot train"):
        int8.train()


def test_pt2e_refuses_bad_calibration():
    slim = _slim()
    with pytest.raises(QuantizeError, match="calibration is empty"):
        zp.quantize_pt2e(slim, [])
    with pytest.raises(QuantizeError, match="NaN or Inf"):
        zp.quantize_pt2e(slim, [torch.randn(4, 1, 8, 8), torch.full((4, 1, 8, 8), float("nan"))])
    with pytest.raises(QuantizeError, match="does not fit the traced model"):
        zp.quantize_pt2e(slim, [torch.randn(4, 1, 8, 8), torch.randn(4, 3, 8, 8)])
    with pytest.raises(QuantizeError, match="does not fit"):
        zp.quantize_pt2e(slim, [(torch.randn(4, 1, 8, 8), torch.randn(4))])


def test_pt2e_without_torchao_says_how_to_install(monkeypatch):
    for name in [n for n in sys.modules if n == "torchao" or n.startswith("torchao.")] or ["torchao"]:
        monkeypatch.setitem(sys.modules, name, None)
    with pytest.raises(QuantizeError, match=r"pip install 'zigprune\[pt2e\]'"):
        zp.quantize_pt2e(_slim(), _batches(1))
