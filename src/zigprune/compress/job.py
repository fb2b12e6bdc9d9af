"""``zigprune compress``: train once with a group-sparse optimizer, build the slim model, measure, save."""

from __future__ import annotations

import copy
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch

from .. import data
from ..core.analysis import analyze
from ..core.selection import Target
from ..errors import ConfigError, Interrupted, TargetError
from ..io.saved import save
from ..models.spec import ModelSpec, resolve
from ..optim import targeted
from ..training import History, Hook, checkpoint, evaluate, steps_per_epoch, train
from . import report as run_report
from .config import Config, default_out
from .measurement import measure
from .optimizers import OPTIMIZERS, base_options, cost_power
from .rundir import BASELINE, CHECKPOINT, HISTORY, METRICS, check_dir, check_named, start_dir, write_json
from .state import Run, Stage

TINY_MACS = 100_000_000


def compress(
    config: Config,
    out: str | Path | None = None,
    *,
    resume: bool = False,
    force: bool = False,
    progress: bool = True,
    threads: int | None = None,
    hooks: Sequence[Hook] = (),
    log: Callable[[str], None] | None = None,
    command: str | None = None,
    trust_factory: bool = False,
) -> dict[str, Any]:
    """Run ``config`` end to end into ``out`` (default ``default_out``) and return its metrics.

    Raises ``Interrupted`` on Ctrl-C/SIGTERM after saving a checkpoint, ``RunDirError`` when ``out``
    holds a run that ``resume``/``force`` do not allow touching, and data and model errors as they come.
    ``threads`` sets torch's threads while training (default: 1 for tiny models, which run faster so);
    ``hooks`` are extra training hooks for the pruning run (see ``zigprune.training.Hook``).
    On ``resume`` the run's saved factory runs only if ``config.model`` names it or ``trust_factory``.
    """
    start = time.perf_counter()
    if threads is not None and (isinstance(threads, bool) or not isinstance(threads, int) or threads < 1):
        raise ConfigError(f"--threads is {threads!r}; give a whole number of at least 1")
    out = Path(out) if out is not None else default_out(config)
    stage = Stage(log or (lambda text: print(text, file=sys.stderr)))
    saved = check_dir(out, resume=resume, force=force)
    if saved is not None and saved.model != config.model and not trust_factory:
        check_named(saved.model, out)
    config = saved or config
    target = Target.parse(config.target)
    aims = targeted(config.optimizer)
    if not aims and (config.latency_aware or config.cost_power is not None):
        raise TargetError(
            "--cost-power and --latency-aware rank groups towards a target, and hspg has none; "
            "use --optimizer hesso or dhspg"
        )
    if aims:
        config = replace(config, cost_power=cost_power(config, target))
        if not 0 <= config.cost_power <= 1:
            raise TargetError(
                f"cost power {config.cost_power} is outside [0, 1]: 0 ranks by importance, 1 per unit of cost"
            )
    resolve(config.model, **config.model_kwargs)
    dataset = stage.timed("data", lambda: data.load(config.data, config.data_dir, subset=config.subset))
    spec = resolve(config.model, **_model_kwargs(config, dataset))
    if not resume:
        start_dir(out, config)
    stage.log(f"{'resuming' if resume else 'writing'} run {out}")
    run = _setup(stage, config, spec, dataset, target)
    before = torch.get_num_threads()
    torch.set_num_threads(threads or _threads(run, config))
    try:
        path = out / CHECKPOINT
        history = _train(
            stage, "train", run.model, run.optimizer, dataset, config, path, resume, progress, hooks
        )
        report = run.optimizer.report()
        stage.log(
            f"trained: {report['group_sparsity']:.0%} of groups zero, {report['macs_left']:.0%} of MACs left"
        )
        run.model.eval()
        slim = stage.timed("construct", run.space.construct)
        baseline = None
        if config.baseline:
            dense_opt = torch.optim.SGD(run.initial.parameters(), **base_options(config))
            _train(
                stage, "baseline", run.initial, dense_opt, dataset, config, out / BASELINE, resume, progress
            )
            baseline = evaluate(run.initial, dataset.test)
    finally:
        torch.set_num_threads(before)
    recorded = {"data": config.data, "data_dir": config.data_dir, "subset": config.subset}
    stage.timed("save", lambda: save(out, slim, run.space, spec, metadata=recorded))
    metrics = measure(stage, config, out, run, slim, dataset, baseline)
    metrics.update(command=command, spec=spec.to_json(), optimizer_report=report)
    write_json(out / HISTORY, {"train": history.to_dict()})
    metrics["seconds"]["total"] = time.perf_counter() - start
    run_report.render(out, metrics, history.to_dict())
    write_json(out / METRICS, metrics)
    for name in (CHECKPOINT, BASELINE):
        (out / name).unlink(missing_ok=True)
    return metrics


def _setup(stage: Stage, config: Config, spec: ModelSpec, dataset: data.Dataset, target: Target) -> Run:
    """Build the model from ``config.seed``, analyse it and make the optimizer."""
    torch.manual_seed(config.seed)
    model = spec.build()
    shape = None if spec.kind == "hf" else dataset.input_shape
    example, single = spec.example_inputs(2, shape), spec.example_inputs(1, shape)
    initial = copy.deepcopy(model)
    space = stage.timed("analyze", lambda: analyze(model, example))
    prunable = sum(f.prunable for f in space.families)
    stage.log(
        f"analysed {config.model}: {space.num_groups} groups in {prunable} of {len(space.families)} families"
    )
    steps = steps_per_epoch(len(dataset.train), config.batch_size) * config.epochs
    optimizer = OPTIMIZERS[config.optimizer](space, config, target, steps)
    if config.optimizer == "hspg":
        stage.log("note: hspg has no explicit target; it removes the groups its penalty drives to zero")
    return Run(model, initial, example, single, space, optimizer, steps)


def _threads(run: Run, config: Config) -> int:
    """One thread for a tiny model (a training batch under ``TINY_MACS``), else torch's default."""
    return 1 if run.space.total_macs * config.batch_size < TINY_MACS else torch.get_num_threads()


def _model_kwargs(config: Config, dataset: data.Dataset | None = None) -> dict[str, Any]:
    """The factory's keyword arguments: the user's, plus input channels and classes for zoo models."""
    kwargs = dict(config.model_kwargs)
    if dataset is not None and ModelSpec(config.model).kind == "zoo":
        kwargs.setdefault("in_channels", dataset.input_shape[0])
        kwargs.setdefault("num_classes", dataset.num_classes)
    if dataset is not None and ModelSpec(config.model).kind == "hf":
        kwargs.setdefault("num_labels", dataset.num_classes)
    return kwargs


def _train(
    stage: Stage,
    name: str,
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    dataset: data.Dataset,
    config: Config,
    path: Path,
    resume: bool,
    progress: bool,
    hooks: Sequence[Hook] = (),
) -> History:
    """Train with a per-step cosine schedule, checkpointing at every epoch end and on interrupt."""
    steps = steps_per_epoch(len(dataset.train), config.batch_size) * config.epochs
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=steps)
    saver = checkpoint.Checkpointer(path)
    state = checkpoint.load(path) if resume and path.is_file() else None
    try:
        return stage.timed(
            name,
            lambda: train(
                model, optimizer, dataset.train, epochs=config.epochs, batch_size=config.batch_size,
                scheduler=scheduler, augment=dataset.augment, hooks=(*hooks, saver), seed=config.seed,
                progress=progress, test_set=dataset.test, postfix=getattr(optimizer, "report", None),
                resume=state, desc=name,
            ),
        )  # fmt: skip
    except KeyboardInterrupt as err:
        where = (
            f"at step {saver.saved_step} of {steps}"
            if saver.saved_step is not None
            else "from its last checkpoint"
        )
        reason = str(err) or "Ctrl-C"
        raise Interrupted(
            f"{reason}: stopped {name}; continue {where} with: zigprune compress --out {path.parent} --resume"
        ) from None
