"""Re-estimate BatchNorm running statistics on calibration data after weights have changed."""

from __future__ import annotations

from torch import nn

from .calibration import Calibration, progress_bar

BATCH_NORMS = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d, nn.SyncBatchNorm)


def recalibrate(model: nn.Module, calibration: Calibration, progress: bool = False) -> int:
    """Reset every tracking BatchNorm's statistics and average them over one calibration pass.

    Only the BatchNorms run in training mode (dropout stays off); their momenta are restored after.
    Returns how many BatchNorm layers were re-estimated.
    """
    norms = [m for m in model.modules() if isinstance(m, BATCH_NORMS) and m.track_running_stats]
    if not norms:
        return 0
    momenta = [m.momentum for m in norms]
    for m in norms:
        m.reset_running_stats()
        m.momentum = None
    try:
        with progress_bar(len(calibration.batches), "batchnorm statistics", progress) as bar:
            calibration.run(model, bar, train=norms)
    finally:
        for m, momentum in zip(norms, momenta):
            m.momentum = momentum
    return len(norms)
