"""The public API on odd input: one clear, one-line error naming what to do, never a deep IndexError."""

from __future__ import annotations

import pytest
import torch
from test_errors import DataDependent
from torch import nn

import zigprune as zp
from zigprune.errors import ExampleInputError, ModelError


def small() -> nn.Module:
    return nn.Sequential(nn.Conv2d(1, 4, 3), nn.ReLU(), nn.Flatten(1), nn.Linear(4 * 36, 2))


def test_analyze_needs_a_module() -> None:
    with pytest.raises(ModelError, match=r"torch\.nn\.Module, not a function"):
        zp.analyze(lambda t: t * 2, torch.randn(2, 3))


def test_an_empty_batch_is_refused() -> None:
    with pytest.raises(ExampleInputError, match="at least one sample"):
        zp.analyze(small(), torch.randn(0, 1, 8, 8))


def test_nan_outputs_are_told_at_analyze() -> None:
    model = small()
    with torch.no_grad():
        model[0].weight[0] = float("nan")
    with pytest.raises(ExampleInputError, match="NaN or Inf in output 0"):
        zp.analyze(model, torch.randn(2, 1, 8, 8))


def test_trace_error_is_one_line_and_torch_prints_no_graph(capfd: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(zp.TraceError) as info:
        zp.analyze(DataDependent(), torch.randn(2, 4))
    assert "\n" not in str(info.value)
    assert "def forward" not in capfd.readouterr().err  # torch.export prints the partial graph to stderr


def test_a_wrong_dtype_prints_no_torch_log(capfd: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(ExampleInputError, match="does not run on the example inputs"):
        zp.analyze(small(), torch.randint(0, 3, (2, 1, 8, 8)))
    assert len(capfd.readouterr().err.strip().splitlines()) <= 1


@pytest.mark.parametrize("cls", [zp.HESSO, zp.DHSPG])
def test_targeted_optimizers_need_a_positive_step_count(cls: type) -> None:
    space = zp.analyze(small(), torch.randn(2, 1, 8, 8))
    for steps in (0, -5):
        with pytest.raises(ValueError, match="total_steps"):
            cls(space, lr=0.1, target=0.5, total_steps=steps)
