"""Calibration batches for post-training pruning: checked once, then run many times under hooks.

A pass runs every batch through the model in eval mode without gradients. Hooks may end a batch
early by raising :class:`StopForward` once the layers they need have run, so a pass over the first
layers of a deep model costs only those layers.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn
from tqdm import tqdm

from ..core.batches import checked_batch, empty_calibration
from ..core.trace import Inputs, batch_size, eval_mode
from ..errors import CalibrationError, first_line
from ..io.inputs import matching


class StopForward(BaseException):
    """Raised by a hook to end the current batch's forward pass: what the pass needs has been seen."""


@dataclass
class Calibration:
    """Model inputs for statistics: every batch as :class:`Inputs` on the model's device and dtype."""

    batches: list[Inputs]
    samples: int

    @classmethod
    def of(cls, calibration: Iterable[Any], model: nn.Module) -> Calibration:
        """Check and pack ``calibration``: an iterable of batches, each a Tensor, a tuple or a dict."""
        if isinstance(calibration, torch.Tensor | dict) or not isinstance(calibration, Iterable):
            raise CalibrationError(
                f"calibration must be an iterable of batches (e.g. [x for x, _ in loader]), not a single "
                f"{type(calibration).__name__}; wrap one batch in a list: [batch]"
            )
        batches = [
            matching(checked_batch(batch, i, CalibrationError, model), model)
            for i, batch in enumerate(calibration)
        ]
        if not batches:
            raise empty_calibration(CalibrationError)
        return cls(batches, sum(batch_size(b) for b in batches))

    def run(self, model: nn.Module, bar: tqdm | None = None, train: Sequence[nn.Module] = ()) -> None:
        """Run every batch once (eval mode but for ``train``, no gradients); a failing batch raises
        ``CalibrationError``."""
        with torch.no_grad(), eval_mode(model):
            for module in train:
                module.train()
            for i, inputs in enumerate(self.batches):
                try:
                    inputs.call(model)
                except StopForward:
                    pass
                except CalibrationError:
                    raise
                except Exception as err:
                    raise CalibrationError(
                        f"{type(model).__name__} does not run on calibration batch {i} "
                        f"({type(err).__name__}: {first_line(err)}); give batches its forward() accepts: "
                        "a Tensor, a tuple of positional arguments or a dict of keyword arguments"
                    ) from None
                if bar is not None:
                    bar.update(1)


def progress_bar(total: int, desc: str, enabled: bool) -> tqdm:
    """One bar for a sequence of calibration passes (``total`` batches in all)."""
    return tqdm(total=total, desc=desc, unit="batch", disable=not enabled, leave=False)
