"""Batches of model inputs given for calibration (post-training statistics, int8 ranges), checked by one
rule wherever they are used: a Tensor, a tuple of positional args or a dict of keyword args, holding
at least one tensor, no empty one, and no NaN or Inf."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from ..errors import ExampleInputError, first_line
from .trace import Inputs, as_inputs


def checked_batch(batch: Any, index: int, error: type[Exception], model: nn.Module | None = None) -> Inputs:
    """Batch number ``index`` packed as :class:`Inputs` (bound to ``model``'s signature when given), or
    an ``error`` (the caller's type: ``CalibrationError``, ``QuantizeError``) saying what is wrong."""
    try:
        inputs = as_inputs(batch, model)
    except ExampleInputError as err:
        raise error(f"calibration batch {index}: {first_line(err)}") from None
    tensors = inputs.tensors()
    if not tensors:
        raise error(f"calibration batch {index} holds no tensor")
    if any(t.dim() and t.shape[0] == 0 for t in tensors):
        raise error(f"calibration batch {index} is empty (a tensor with 0 rows)")
    if any(t.is_floating_point() and not torch.isfinite(t).all() for t in tensors):
        raise error(
            f"calibration batch {index} holds NaN or Inf (non-finite activations spoil every statistic); "
            "pass finite batches"
        )
    return inputs


def empty_calibration(error: type[Exception]) -> Exception:
    """The error for a calibration with no batch at all."""
    return error(
        "calibration is empty: give at least one batch of model inputs (128-1024 samples is typical)"
    )
