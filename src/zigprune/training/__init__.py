"""The training loop of compress and the benchmarks: exactly resumable, hooks, pickle-free checkpoints."""

from .evaluate import Metrics, OutputError, evaluate, fetch, logits, sample_inputs
from .loop import Augment, History, Hook, Loop, steps_per_epoch, train
from .rng import epoch_order, rng_state, set_rng_state

__all__ = [
    "Augment", "History", "Hook", "Loop", "Metrics", "OutputError", "epoch_order", "evaluate", "fetch",
    "logits", "rng_state", "sample_inputs", "set_rng_state", "steps_per_epoch", "train",
]  # fmt: skip
