"""``zigprune compress``: train once with a group-sparse optimizer, build the slim model, measure, save."""

from __future__ import annotations

import copy
import json
import shlex
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import torch

from .. import data
from ..core.analysis import analyze
from ..core.selection import Target
from ..errors import (
    ConfigError,
    DivergedError,
    Interrupted,
    ResumeError,
    RunDirError,
    TargetError,
    first_line,
)
from ..io.saved import save
from ..io.weights import load_weights, save_weights
from ..models.spec import ModelSpec, kind_of, resolve
from ..optim import targeted
from ..training import History, Hook, Metrics, checkpoint, evaluate, steps_per_epoch, train
from ..training.objective import Distillation, Objective
from . import report as run_report
from .config import Config, check_onnx_installed, default_out
from .fit import check_fits
from .hf_output import save_hf_folder
from .measurement import measure_run
from .optimizers import base_options, build_optimizer, cost_power
from .run_data import load_run_data
from .rundir import (
    BASELINE,
    CHECKPOINT,
    DENSE,
    HISTORY,
    METRICS,
    check_dir,
    check_named,
    start_dir,
    write_json,
)
from .state import Run, Stage

TINY_MACS = 100_000_000
STAGE_FILES = {"train": CHECKPOINT, "baseline": BASELINE}
STAGE_LABELS = {"train": "training", "baseline": "the dense baseline's training"}


@dataclass
class _Job:
    """One compress call once its settings are checked: what runs, where, and how it reports."""

    config: Config
    out: Path
    target: Target
    stage: Stage
    progress: bool
    hooks: Sequence[Hook]
    threads: int | None
    command: str | None
    start: float


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

    Raises ``Interrupted`` on Ctrl-C/SIGTERM (in any stage; a checkpoint is saved during training),
    ``DivergedError`` when the loss becomes NaN (the folder stays an unfinished run), ``RunDirError``
    when ``out`` holds a run that ``resume``/``force`` do not allow touching or a checkpoint of another
    run, and data and model errors as they come.
    ``threads`` sets torch's threads while training (default: 1 for tiny models, which run faster so);
    ``hooks`` are extra training hooks for the pruning run (see ``zigprune.training.Hook``).
    On ``resume`` the run's saved factory runs only if ``config.model`` names it or ``trust_factory``.
    """
    start = time.perf_counter()
    if threads is not None and (isinstance(threads, bool) or not isinstance(threads, int) or threads < 1):
        raise ConfigError(f"--threads is {threads!r}; give a whole number of at least 1")
    out = Path(out) if out is not None else default_out(config)
    stage = Stage.of(log, progress)
    config, target = _settings(config, out, resume, force, trust_factory)
    job = _Job(config, out, target, stage, progress, hooks, threads, command, start)
    started = resume
    try:
        dataset, spec = stage.timed("data", lambda: _data_and_spec(config))
        check_fits(spec, dataset)
        states = _saved_states(out, config) if resume else {}
        if not resume:
            start_dir(out, config)
            started = True
        stage.log(f"{'resuming' if resume else 'writing'} run {out}")
        return _stages(job, spec, dataset, states)
    except KeyboardInterrupt as err:
        raise _interrupted(err, stage.current, config, out if started else None) from None


def _settings(
    config: Config, out: Path, resume: bool, force: bool, trust_factory: bool
) -> tuple[Config, Target]:
    """The run's settings (the saved ones on ``resume``) with the cost power in force, and its target;
    checks the folder, the target and the model's name before anything is loaded or written."""
    saved = check_dir(out, resume=resume, force=force)
    if saved is not None and saved.model != config.model and not trust_factory:
        check_named(saved.model, out)
    config = saved or config
    check_onnx_installed(config.int8)
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
    return config, target


def _stages(job: _Job, spec: ModelSpec, dataset: data.Dataset, states: dict[str, Any]) -> dict[str, Any]:
    """Analyse, train, construct, train the baseline, save, measure and report: the run after its setup."""
    config, out, stage = job.config, job.out, job.stage
    run = _setup(stage, config, spec, dataset, job.target)
    before = torch.get_num_threads()
    torch.set_num_threads(job.threads or _threads(run, config))
    try:
        objective = Distillation(run.initial, labelled=dataset.num_classes > 0) if config.distill else None
        history = _train(
            job, "train", run.model, run.optimizer, dataset, states.get("train"), job.hooks, objective
        )
        report = run.optimizer.report()
        stage.log(
            f"trained: {report['group_sparsity']:.0%} of groups zero, {report['macs_left']:.0%} of MACs left"
        )
        run.model.eval()
        slim = stage.timed("construct", run.space.construct)
        baseline, dense = _baseline(job, run, dataset, states.get("baseline"))
    finally:
        torch.set_num_threads(before)
    recorded = {"data": config.data, "data_dir": config.data_dir, "subset": config.subset}
    stage.timed("save", lambda: save(slim, run.space, spec, out, metadata=recorded))
    if config.save_dense:
        trained_on = {"data": config.data, "input_shape": ",".join(map(str, dataset.input_shape))}
        stage.timed("save", lambda: save_weights(run.initial, out / DENSE, trained_on))
    hf_folder = save_hf_folder(stage, spec, slim, out)
    metrics = measure_run(stage, config, out, run, slim, dataset, baseline, job.progress)
    metrics.update(command=job.command, spec=spec.to_json(), optimizer_report=report, hf_folder=hf_folder)
    histories = {"train": history.to_dict(), **({"baseline": dense.to_dict()} if dense is not None else {})}
    write_json(out / HISTORY, histories)
    metrics["seconds"]["total"] = time.perf_counter() - job.start
    run_report.render(out, metrics, histories["train"], histories.get("baseline"))
    write_json(out / METRICS, metrics)
    for name in STAGE_FILES.values():
        (out / name).unlink(missing_ok=True)
    return metrics


def _setup(stage: Stage, config: Config, spec: ModelSpec, dataset: data.Dataset, target: Target) -> Run:
    """Build the model from ``config.seed``, analyse it and make the optimizer."""
    torch.manual_seed(config.seed)
    model = spec.build()
    if config.weights is not None:
        load_weights(model, config.weights)
    shape = None if spec.kind == "hf" else dataset.input_shape
    example, single = spec.example_inputs(2, shape), spec.example_inputs(1, shape)
    initial = copy.deepcopy(model)
    space = stage.timed("analyze", lambda: analyze(model, example))
    prunable = sum(f.prunable for f in space.families)
    stage.log(
        f"analysed {config.model}: {space.num_groups} groups in {prunable} of {len(space.families)} families"
    )
    steps = steps_per_epoch(len(dataset.train), config.batch_size) * config.epochs
    optimizer = build_optimizer(config.optimizer, space, config, target, steps)
    if config.optimizer == "hspg":
        stage.log("note: hspg has no explicit target; it removes the groups its penalty drives to zero")
    return Run(model, initial, example, single, space, optimizer, steps)


def _data_and_spec(config: Config) -> tuple[data.Dataset, ModelSpec]:
    """The run's data and its model spec fitted to it (:func:`load_run_data`)."""
    found = load_run_data(
        config.model, config.data, data_dir=config.data_dir, subset=config.subset,
        max_length=config.max_length, model_kwargs=config.model_kwargs,
    )  # fmt: skip
    return found.dataset, found.spec


def _threads(run: Run, config: Config) -> int:
    """One thread for a tiny model (a training batch under ``TINY_MACS``), else torch's default."""
    return 1 if run.space.total_macs * config.batch_size < TINY_MACS else torch.get_num_threads()


def _baseline(
    job: _Job, run: Run, dataset: data.Dataset, state: dict[str, Any] | None
) -> tuple[Metrics, History]:
    """Train the dense copy with plain SGD and the same schedule: its accuracy (to compare) and history.
    Without a baseline: the starting model's accuracy when it is a trained teacher (``distill`` on
    labelled data), else nothing."""
    if not job.config.baseline:
        labelled = job.config.distill and dataset.num_classes > 0
        return (evaluate(run.initial, dataset.test) if labelled else None), None
    dense_opt = torch.optim.SGD(run.initial.parameters(), **base_options(job.config))
    history = _train(job, "baseline", run.initial, dense_opt, dataset, state)
    return evaluate(run.initial, dataset.test), history


def _train(
    job: _Job,
    name: str,
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    dataset: data.Dataset,
    state: dict[str, Any] | None,
    hooks: Sequence[Hook] = (),
    objective: Objective | None = None,
) -> History:
    """Train stage ``name`` with a per-step cosine schedule, checkpointing at every epoch end and on
    interrupt; an interrupt or a divergence becomes an error saying how to go on."""
    config = job.config
    steps = steps_per_epoch(len(dataset.train), config.batch_size) * config.epochs
    path = job.out / STAGE_FILES[name]
    saver = checkpoint.Checkpointer(path, tag=_tag(name, config))
    try:
        return job.stage.timed(
            name,
            lambda: train(
                model, optimizer, dataset.train, epochs=config.epochs, batch_size=config.batch_size,
                scheduler="cosine", augment=dataset.augment, hooks=(*hooks, saver), seed=config.seed,
                progress=job.progress, test_set=dataset.test if dataset.num_classes else None,
                postfix=getattr(optimizer, "report", None), resume=state, desc=name, objective=objective,
            ),
        )  # fmt: skip
    except KeyboardInterrupt as err:
        where = (
            f"at step {saver.saved_step} of {steps}"
            if saver.saved_step is not None
            else "from its last checkpoint"
        )
        raise _interrupted(err, name, config, job.out, where) from None
    except ResumeError as err:
        raise _not_this_run(path, job.out, first_line(err)) from None
    except DivergedError as err:
        raise DivergedError(
            f"{STAGE_LABELS[name]} diverged at step {err.step} of {steps} (loss is {err.loss}); lower "
            f"--lr (it is {config.lr:g}) and start over with --force: {job.out} keeps the unfinished run, "
            "and --resume would repeat it with the same --lr",
            step=err.step,
            loss=err.loss,
        ) from None


def _tag(name: str, config: Config) -> dict[str, Any]:
    """What a stage's checkpoint records as its owner: the stage and the run's settings (JSON values)."""
    return {"stage": name, "run": json.loads(json.dumps(asdict(config)))}


def _saved_states(out: Path, config: Config) -> dict[str, Any]:
    """The saved training state of each stage of the run being resumed, each checked to be this run's
    (before anything trains, so a foreign checkpoint changes nothing in the folder)."""
    states = {}
    for name, file in STAGE_FILES.items():
        if (out / file).is_file():
            states[name] = checkpoint.load(out / file)
            _check_owner(states[name], _tag(name, config), out / file, out)
    return states


def _check_owner(state: Any, tag: dict[str, Any], path: Path, out: Path) -> None:
    """A ``RunDirError`` saying whose checkpoint ``path`` is, unless its tag names this stage and these
    settings (an untagged, older checkpoint is left to the training loop's checks as it loads)."""
    saved = state.get("tag") if isinstance(state, dict) else None
    if not isinstance(saved, dict):
        return
    if saved.get("stage") != tag["stage"]:
        why = f"it is the {saved.get('stage')} stage's checkpoint, not the {tag['stage']} stage's"
        raise _not_this_run(path, out, why)
    theirs = saved.get("run") if isinstance(saved.get("run"), dict) else {}
    differ = [f"{k} {theirs.get(k)!r} (this run: {v!r})" for k, v in tag["run"].items() if theirs.get(k) != v]
    if differ:
        raise _not_this_run(path, out, f"it is from a run with {', '.join(differ)}")


def _not_this_run(path: Path, out: Path, why: str) -> RunDirError:
    """The error of a checkpoint that belongs to another run (the folder keeps every file)."""
    return RunDirError(
        f"{path} does not belong to the run in {out} ({why}); start over with --force, or pass --out "
        "another folder for this run"
    )


def _interrupted(
    err: KeyboardInterrupt, stage: str, config: Config, out: Path | None, where: str = ""
) -> Interrupted:
    """The error of a Ctrl-C/SIGTERM in ``stage``: the command that continues the run in ``out`` (None:
    stopped before the run folder was written, so the same command starts it again). The training
    loop and the CLI's SIGTERM handler name the signal in ``err``; a bare Ctrl-C names none."""
    reason = str(err) or "Ctrl-C"
    signal = "SIGTERM" if reason == "SIGTERM" else "SIGINT"
    if out is None:
        return Interrupted(
            f"{reason}: stopped {stage} before the run folder was written; run the command again",
            signal=signal,
        )
    named = f" --model {shlex.quote(config.model)}" if kind_of(config.model) in ("file", "module") else ""
    return Interrupted(
        f"{reason}: stopped {stage}; continue{' ' + where if where else ''} with: "
        f"zigprune compress --out {shlex.quote(str(out))}{named} --resume",
        signal=signal,
    )
