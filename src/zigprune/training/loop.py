"""A small, exactly resumable training loop with hooks, for ``zigprune compress`` and the benchmarks.

The batch order of epoch ``e`` is a permutation drawn from ``seed + e`` and the augmentation of step
``s`` draws from a generator seeded with ``(seed, s)``, so a run resumed from ``Loop.state_dict()``
at any step boundary ends with exactly the parameters of an uninterrupted run. Ctrl-C and SIGTERM
are deferred to the next step boundary, then raised as ``KeyboardInterrupt`` after the hooks'
``on_interrupt`` ran (where a checkpoint hook saves the state). A loss that is NaN or infinite
stops training with ``DivergedError`` before the step: skipping such steps (as the group optimizers
do) cannot recover, since the forward pass already put the NaN into batch-norm statistics.
"""

from __future__ import annotations

import math
import signal
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from typing import Any

import torch
from torch import nn
from torch.utils.data import Dataset
from tqdm import tqdm

from ..errors import DivergedError, ResumeError, first_line
from .evaluate import evaluate, fetch
from .objective import Classification, Objective
from .rng import SEED_STRIDE, epoch_order, rng_state, set_rng_state

Augment = Callable[[torch.Tensor, torch.Generator], torch.Tensor]


def steps_per_epoch(samples: int, batch_size: int) -> int:
    """Optimizer steps in one epoch of ``samples`` at ``batch_size`` (the last batch may be smaller)."""
    return max(1, math.ceil(samples / batch_size))


class Hook:
    """Base class of training hooks: every method is a no-op; subclasses override what they need."""

    def on_train_start(self, loop: Loop) -> None:
        """Called once before the first step (also when resuming)."""

    def before_step(self, loop: Loop) -> None:
        """Called at a step boundary, before the batch is drawn."""

    def after_backward(self, loop: Loop, loss: torch.Tensor) -> None:
        """Called after ``loss.backward()``, before ``optimizer.step()``: e.g. add a penalty's gradient."""

    def after_step(self, loop: Loop) -> None:
        """Called after the optimizer and scheduler stepped and ``loop.step`` counted it (re-apply masks)."""

    def on_epoch_end(self, loop: Loop, epoch: int) -> None:
        """Called after epoch ``epoch`` (0-based) was evaluated and recorded: e.g. SFP zeroing."""

    def on_interrupt(self, loop: Loop) -> None:
        """Called on Ctrl-C or SIGTERM: at a step boundary, unless ``loop.clean`` is False."""


@dataclass
class History:
    """What happened while training: a row every ``log_every`` steps and one per epoch."""

    steps: list[dict[str, float]] = field(default_factory=list)
    epochs: list[dict[str, float]] = field(default_factory=list)
    seconds: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able form (lists of dicts of numbers)."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> History:
        """Inverse of ``to_dict``."""
        return cls(
            [dict(row) for row in data["steps"]], [dict(row) for row in data["epochs"]], data["seconds"]
        )


@dataclass
class Loop:
    """The live state hooks see; ``state_dict()`` holds everything needed to resume exactly."""

    model: nn.Module
    optimizer: torch.optim.Optimizer
    train_set: Dataset
    epochs: int
    batch_size: int
    seed: int = 0
    scheduler: Any = None
    scheduler_interval: str = "step"
    history: History = field(default_factory=History)
    step: int = 0
    epoch: int = 0
    running: dict[str, float] = field(
        default_factory=lambda: {"loss": 0.0, "correct": 0.0, "seen": 0.0, "scored": 0.0}
    )
    clean: bool = True
    stop: bool = False
    signal: str | None = None

    @property
    def steps_per_epoch(self) -> int:
        """Batches per epoch (the last one may be smaller)."""
        return steps_per_epoch(len(self.train_set), self.batch_size)

    @property
    def total_steps(self) -> int:
        """Steps of the whole run."""
        return self.steps_per_epoch * self.epochs

    def state_dict(self) -> dict[str, Any]:
        """Model, optimizer, scheduler, counters, history and RNG states (tensors and Python scalars)."""
        return {
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict() if self.scheduler is not None else None,
            "step": self.step,
            "seed": self.seed,
            "history": self.history.to_dict(),
            "running": dict(self.running),
            "rng": rng_state(),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore what ``state_dict`` saved; the next step is ``state["step"] + 1``.

        Raises ``ResumeError`` when ``state`` is another run's (another seed, model or optimizer).
        """
        seed = state.get("seed") if isinstance(state, dict) else None
        if seed != self.seed:
            raise ResumeError(f"the checkpoint was trained with seed {seed}, not {self.seed}")
        try:
            self._restore(state)
        except (KeyError, ValueError, TypeError, RuntimeError) as err:
            raise ResumeError(
                "the checkpoint does not fit this model and optimizer "
                f"({type(err).__name__}: {first_line(err)})"
            ) from err

    def _restore(self, state: dict[str, Any]) -> None:
        """``load_state_dict`` once the seed matched: every part, in the order ``state_dict`` wrote them."""
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        if self.scheduler is not None and state["scheduler"] is not None:
            self.scheduler.load_state_dict(state["scheduler"])
        self.step = int(state["step"])
        self.epoch = self.step // self.steps_per_epoch
        self.history = History.from_dict(state["history"])
        self.running = {k: float(v) for k, v in state["running"].items()}
        self.running.setdefault("scored", self.running["seen"])
        set_rng_state(state["rng"])


def train(
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    train_set: Dataset,
    *,
    epochs: int,
    batch_size: int = 128,
    scheduler: Any = None,
    scheduler_interval: str = "step",
    objective: Objective | None = None,
    augment: Augment | None = None,
    hooks: Sequence[Hook] = (),
    seed: int = 0,
    progress: bool = True,
    test_set: Dataset | None = None,
    postfix: Callable[[], dict[str, float]] | None = None,
    log_every: int | None = None,
    resume: dict[str, Any] | None = None,
    catch_signals: bool = True,
    desc: str = "train",
) -> History:
    """Train ``model`` for ``epochs`` epochs; return its history (per-epoch test metrics with ``test_set``).

    ``augment(x, generator)`` transforms a batch with randomness drawn only from ``generator``.
    ``postfix()`` returns live fields for the progress bar and the step log (e.g. ``optimizer.report()``).
    ``resume`` is a ``Loop.state_dict()`` to continue from; ``scheduler_interval`` is "step" or "epoch".
    ``scheduler="cosine"``: the learning rate decays from the optimizer's to 0 over every step of the run
    (``CosineAnnealingLR``), the schedule the jobs, the bench methods and the benchmarks all train with.
    ``objective`` is what each step minimises (default: cross-entropy on the labels; see
    ``zigprune.training.objective`` for distillation from a teacher).
    Raises ``DivergedError`` at the first loss that is not finite, ``ResumeError`` if ``resume`` is
    another run's state.
    """
    if scheduler_interval not in ("step", "epoch"):
        raise ValueError(f"scheduler_interval must be 'step' or 'epoch', not {scheduler_interval!r}")
    loop = Loop(model, optimizer, train_set, epochs, batch_size, seed, None, scheduler_interval)
    if scheduler == "cosine":
        length = loop.total_steps if scheduler_interval == "step" else epochs
        scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=max(1, length))
    loop.scheduler = scheduler
    if resume is not None:
        loop.load_state_dict(resume)
    every = log_every or max(1, loop.total_steps // 200)
    bar = tqdm(
        total=loop.total_steps,
        initial=loop.step,
        desc=desc,
        disable=not progress,
        dynamic_ncols=True,
        leave=False,
    )
    start = time.perf_counter() - loop.history.seconds
    try:
        with _deferred_signals(loop, catch_signals):
            _run(loop, objective or Classification(), augment, hooks, test_set, postfix, every, bar)
    except KeyboardInterrupt:
        loop.history.seconds = time.perf_counter() - start
        for hook in hooks:
            hook.on_interrupt(loop)
        raise
    finally:
        bar.close()
    loop.history.seconds = time.perf_counter() - start
    return loop.history


def _run(
    loop: Loop,
    objective: Objective,
    augment: Augment | None,
    hooks: Sequence[Hook],
    test_set: Dataset | None,
    postfix: Callable[[], dict[str, float]] | None,
    every: int,
    bar: tqdm,
) -> None:
    for hook in hooks:
        hook.on_train_start(loop)
    spe = loop.steps_per_epoch
    if loop.step and loop.step % spe == 0 and len(loop.history.epochs) < loop.step // spe:
        _end_epoch(loop, loop.step // spe - 1, hooks, test_set)
    while loop.step < loop.total_steps and not loop.stop:
        loop.epoch, position = divmod(loop.step, spe)
        order = epoch_order(len(loop.train_set), loop.seed, loop.epoch)
        loop.model.train()
        for index in range(position, spe):
            _boundary(loop)
            for hook in hooks:
                hook.before_step(loop)
            batch = order[index * loop.batch_size : (index + 1) * loop.batch_size]
            loss = _step(loop, batch, objective, augment, hooks)
            if loop.step % every == 0 or index == spe - 1:
                _log(loop, loss, postfix, bar)
            for hook in hooks:
                hook.after_step(loop)
            if loop.stop:
                return
        _end_epoch(loop, loop.epoch, hooks, test_set)


def _boundary(loop: Loop) -> None:
    """Raise a deferred Ctrl-C/SIGTERM here, where the state is consistent."""
    if loop.signal is not None:
        raise KeyboardInterrupt(loop.signal)


def _step(
    loop: Loop,
    batch: torch.Tensor,
    objective: Objective,
    augment: Augment | None,
    hooks: Sequence[Hook],
) -> float:
    loop.clean = False
    x, y = fetch(loop.train_set, batch)
    if augment is not None:
        generator = torch.Generator().manual_seed(loop.seed * SEED_STRIDE + loop.step)
        x = augment(x, generator)
    loop.optimizer.zero_grad(set_to_none=True)
    step = objective(loop.model, x, y)
    loss = step.loss
    value = float(loss.detach())
    if not math.isfinite(value):
        raise DivergedError(
            f"training diverged at step {loop.step + 1} (loss is {value}); lower the learning rate",
            step=loop.step + 1,
            loss=value,
        )
    loss.backward()
    for hook in hooks:
        hook.after_backward(loop, loss)
    loop.optimizer.step()
    if loop.scheduler is not None and loop.scheduler_interval == "step":
        loop.scheduler.step()
    loop.step += 1
    loop.running["loss"] += value * len(y)
    loop.running["seen"] += len(y)
    if step.correct is not None:
        loop.running["correct"] += step.correct
        loop.running["scored"] += len(y)
    loop.clean = True
    return value


def _log(loop: Loop, loss: float, postfix: Callable[[], dict[str, float]] | None, bar: tqdm) -> None:
    seen = max(loop.running["seen"], 1.0)
    row = {
        "step": loop.step,
        "epoch": loop.step / loop.steps_per_epoch,
        "loss": loss,
        **_accuracy(loop),
        "lr": float(loop.optimizer.param_groups[0]["lr"]),
    }
    if postfix is not None:
        row.update({k: float(v) for k, v in postfix().items()})
    loop.history.steps.append(row)
    shown = {"loss": f"{loop.running['loss'] / seen:.3f}"}
    shown |= {"acc": f"{row['train_accuracy']:.3f}"} if "train_accuracy" in row else {}
    shown.update(
        {k: f"{v:.3g}" for k, v in row.items() if k not in ("step", "epoch", "loss", "train_accuracy", "lr")}
    )
    bar.set_description_str(f"epoch {loop.epoch + 1}/{loop.epochs}", refresh=False)
    bar.set_postfix(shown, refresh=False)
    bar.update(loop.step - bar.n)


def _accuracy(loop: Loop) -> dict[str, float]:
    """``train_accuracy`` over the steps since the last epoch, where the objective counts right answers."""
    scored = loop.running["scored"]
    return {"train_accuracy": loop.running["correct"] / scored} if scored else {}


def _end_epoch(loop: Loop, epoch: int, hooks: Sequence[Hook], test_set: Dataset | None) -> None:
    seen = max(loop.running["seen"], 1.0)
    record: dict[str, float] = {
        "epoch": epoch + 1,
        "step": loop.step,
        "train_loss": loop.running["loss"] / seen,
        **_accuracy(loop),
    }
    if test_set is not None:
        metrics = evaluate(loop.model, test_set)
        record.update(test_loss=metrics.loss, test_accuracy=metrics.accuracy)
    if loop.scheduler is not None and loop.scheduler_interval == "epoch":
        loop.scheduler.step()
    loop.history.epochs.append(record)
    loop.running = {"loss": 0.0, "correct": 0.0, "seen": 0.0, "scored": 0.0}
    for hook in hooks:
        hook.on_epoch_end(loop, epoch)


@contextmanager
def _deferred_signals(loop: Loop, enabled: bool) -> Iterator[None]:
    """Defer the first Ctrl-C or SIGTERM to the next step boundary; a second one interrupts at once."""
    if not enabled or threading.current_thread() is not threading.main_thread():
        yield
        return
    loop.signal = None

    def handle(signum: int, frame: Any) -> None:
        if loop.signal is not None:
            raise KeyboardInterrupt(signal.Signals(signum).name)
        loop.signal = signal.Signals(signum).name

    previous = {sig: signal.signal(sig, handle) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
