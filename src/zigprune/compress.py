"""``zigprune compress``: train once with a group-sparse optimizer, build the slim model, measure, save a run.

A run directory holds ``run.json`` (the settings), ``checkpoint.safetensors`` while training,
``model.safetensors`` + ``plan.json`` (``zp.save``), ``model.onnx``, ``history.json``, ``report.md``
with plots, and ``metrics.json``, written last: a run is complete exactly when it has ``metrics.json``.
"""

from __future__ import annotations

import contextlib
import copy
import json
import logging
import math
import platform
import re
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any

import torch

from . import checkpoint, data, latency, run_report
from .atomic import atomic_write
from .errors import ZigpruneError
from .io import export_onnx, save
from .layer_latency import LayerLatency
from .measure import count
from .models.spec import ModelSpec, resolve
from .optim import DHSPG, HESSO, HSPG, Target
from .training import History, Hook, evaluate, fetch, train

CONFIG, CHECKPOINT, BASELINE = "run.json", "checkpoint.safetensors", "baseline.safetensors"
HISTORY, METRICS, ONNX = "history.json", "metrics.json", "model.onnx"
OUTPUTS = (METRICS, HISTORY, ONNX, "plan.json", "model.safetensors", CHECKPOINT, BASELINE, CONFIG)
LATENCY_BATCHES = (1, 64)
MACS_COST_POWER = 0.5
TINY_MACS = 100_000_000
TARGET_HELP = "0.5 (share of groups), macs=0.4 or params=0.3 (share removed), macs=2.5x (reduction factor)"


class TargetError(ZigpruneError, ValueError):
    """A ``--target`` that is not a share in (0, 1) or a reduction factor above 1."""


class RunDirError(ZigpruneError):
    """The run directory holds a run that would be overwritten, or no run to resume."""


class Interrupted(ZigpruneError):
    """Training stopped on Ctrl-C or SIGTERM; the message says how to resume."""


@dataclass
class Config:
    """Everything that determines a run (saved as ``run.json`` so ``--resume`` continues the same run)."""

    model: str = "digits_cnn"
    data: str = "digits"
    data_dir: str | None = None
    subset: int | None = None
    optimizer: str = "hesso"
    target: str = "macs=0.5"
    epochs: int = 20
    lr: float = 0.05
    momentum: float = 0.9
    weight_decay: float = 5e-4
    batch_size: int = 64
    seed: int = 0
    round_to: int = 8
    cost_power: float | None = None
    latency_aware: bool = False
    model_kwargs: dict[str, Any] = field(default_factory=dict)
    baseline: bool = True
    onnx: bool = True
    latency: bool = True
    latency_seconds: float = 0.5

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> Config:
        """A Config from ``run.json``, ignoring keys this version does not know."""
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in values.items() if k in known})


def parse_target(text: str) -> Target:
    """``0.5``: half the groups; ``macs=0.4``/``params=0.3``: that share removed; ``macs=2.5x``: 2.5x less."""
    kind, _, value = str(text).strip().rpartition("=")
    kind = kind.strip().lower() or "groups"
    if kind not in ("groups", "macs", "params"):
        raise TargetError(f"target kind {kind!r} is not groups, macs or params; use {TARGET_HELP}")
    value = value.strip().lower()
    factor = value.endswith("x")
    try:
        number = float(value.removesuffix("x"))
    except ValueError:
        raise TargetError(f"target {text!r} is not a number; use {TARGET_HELP}") from None
    if factor:
        if not number > 1 or not math.isfinite(number):
            raise TargetError(f"target factor {value} must be above 1x (e.g. macs=2.5x)")
        number = 1 - 1 / number
    if not 0 < number < 1:
        raise TargetError(f"target {text!r} is outside (0, 1): give the share to remove, e.g. {TARGET_HELP}")
    return Target(number, kind)


def _targeted(cls: type[HESSO] | type[DHSPG]) -> Callable[[Any, Config, Target, int], torch.optim.Optimizer]:
    """Builds HESSO or DHSPG (explicit target) with the run's base update and selection options."""

    def build(space: Any, config: Config, target: Target, steps: int) -> torch.optim.Optimizer:
        return cls(
            space,
            **_base(config),
            target=target.fraction,
            by=target.by,
            total_steps=steps,
            **_selection(space, config, target),
        )

    return build


def _hspg(space: Any, config: Config, target: Target, steps: int) -> torch.optim.Optimizer:
    return HSPG(space, **_base(config), total_steps=steps)


def _base(config: Config) -> dict[str, float]:
    return {"lr": config.lr, "momentum": config.momentum, "weight_decay": config.weight_decay}


def _selection(space: Any, config: Config, target: Target) -> dict[str, Any]:
    """The selection options HESSO and DHSPG share: width rounding, the ranking's cost and its weight.

    With ``latency_aware`` the cost is the measured time a removal saves at the timing batch size
    (one thread, as the run's latency is timed) instead of MACs.
    """
    rounding = {"round_to": config.round_to} if config.round_to > 1 else {}
    cost: dict[str, LayerLatency] = {}
    if config.latency_aware:
        cost["cost"] = LayerLatency(space, batch=max(LATENCY_BATCHES), round_to=config.round_to)
    return {**rounding, "cost_power": cost_power(config, target), **cost}


def cost_power(config: Config, target: Target) -> float:
    """The ranking's cost exponent: as given; else 1 when latency-aware, 0.5 for a MACs target with
    rounded widths, 0 otherwise.

    Ranking by importance alone thins many layers to narrow, slow widths: on ResNet-20 /
    Fashion-MNIST at 2.5x fewer MACs its slim model ran at 0.70 of the MACs ratio and P = 0.5's at
    0.93, and with widths rounded to 8 both kept the same accuracy (80.44 +- 0.24 and 80.32 +- 1.00 %,
    3 seeds of the bench). Unrounded, P = 0.5 lost 6 pt, so it is not the default there.
    """
    if config.cost_power is not None:
        return config.cost_power
    if config.latency_aware:
        return 1.0
    return MACS_COST_POWER if target.by == "macs" and config.round_to > 1 else 0.0


OPTIMIZERS: dict[str, Callable[[Any, Config, Target, int], torch.optim.Optimizer]] = {
    "hesso": _targeted(HESSO),
    "dhspg": _targeted(DHSPG),
    "hspg": _hspg,
}


def default_out(config: Config) -> Path:
    """``runs/<model>-<data>``, named from the specs' last parts (a factory's name, a folder's name)."""

    def slug(text: str) -> str:
        tail = re.split(r"[:/\\]", text.rstrip("/\\"))[-1].removesuffix(".py")
        head = text.split(":")[0] if ":" in text and not text.startswith("hf:") else ""
        name = f"{head}-{tail}" if head in data.names() or head == "imagefolder" else tail
        return re.sub(r"[^A-Za-z0-9_.-]+", "-", name).strip("-") or "model"

    return Path("runs") / f"{slug(config.model)}-{slug(config.data)}"


def check_dir(out: Path, *, resume: bool, force: bool) -> Config | None:
    """Check ``out`` against ``resume``/``force``; on resume return the saved config. Changes nothing."""
    complete, partial = (out / METRICS).is_file(), (out / CHECKPOINT).is_file()
    if resume and force:
        raise RunDirError("--resume continues a run and --force starts it over; pass one of them")
    if resume:
        if complete:
            raise RunDirError(f"{out} holds a complete run; nothing to resume (pass --force to run it again)")
        if not partial or not (out / CONFIG).is_file():
            raise RunDirError(f"{out} has no checkpoint to resume from; run without --resume")
        try:
            return Config.from_dict(json.loads((out / CONFIG).read_text(encoding="utf-8")))
        except (ValueError, TypeError) as err:
            raise RunDirError(f"{out / CONFIG} is corrupt ({err}); start over with --force") from None
    if (complete or partial) and not force:
        state = "a complete run" if complete else "an unfinished run (pass --resume to continue it)"
        raise RunDirError(
            f"{out} holds {state}; pass --force to overwrite it or --out to pick another folder"
        )
    return None


def start_dir(out: Path, config: Config) -> None:
    """Remove a previous run's files from ``out`` (nothing else) and record ``config`` as ``run.json``."""
    for name in OUTPUTS:
        (out / name).unlink(missing_ok=True)
    run_report.clear(out)
    out.mkdir(parents=True, exist_ok=True)
    _write_json(out / CONFIG, asdict(config))


def _write_json(path: Path, value: Any) -> None:
    text = json.dumps(value, indent=1, allow_nan=False)
    atomic_write(path, lambda temp: temp.write_text(text + "\n", encoding="utf-8"))


@dataclass
class _Stage:
    """Wall time of each stage, and where stage messages go."""

    log: Callable[[str], None]
    seconds: dict[str, float] = field(default_factory=dict)

    def timed(self, name: str, fn: Callable[[], Any]) -> Any:
        start = time.perf_counter()
        value = fn()
        self.seconds[name] = self.seconds.get(name, 0.0) + time.perf_counter() - start
        return value


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
) -> dict[str, Any]:
    """Run ``config`` end to end into ``out`` (default ``default_out``) and return its metrics.

    Raises ``Interrupted`` on Ctrl-C/SIGTERM after saving a checkpoint, ``RunDirError`` when ``out``
    holds a run that ``resume``/``force`` do not allow touching, and data and model errors as they come.
    ``threads`` sets torch's threads while training (default: 1 for tiny models, which run faster so);
    ``hooks`` are extra training hooks for the pruning run (see ``zigprune.training.Hook``).
    """
    start = time.perf_counter()
    out = Path(out) if out is not None else default_out(config)
    stage = _Stage(log or (lambda text: print(text, file=sys.stderr)))
    config = check_dir(out, resume=resume, force=force) or config
    target = parse_target(config.target)
    if config.optimizer not in OPTIMIZERS:
        raise TargetError(f"unknown optimizer {config.optimizer!r}; valid names: {', '.join(OPTIMIZERS)}")
    if config.optimizer == "hspg" and (config.latency_aware or config.cost_power is not None):
        raise TargetError(
            "--cost-power and --latency-aware rank groups towards a target, and hspg has none; "
            "use --optimizer hesso or dhspg"
        )
    if config.optimizer != "hspg":
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
            dense_opt = torch.optim.SGD(run.initial.parameters(), **_base(config))
            _train(
                stage, "baseline", run.initial, dense_opt, dataset, config, out / BASELINE, resume, progress
            )
            baseline = evaluate(run.initial, dataset.test)
    finally:
        torch.set_num_threads(before)
    recorded = {"data": config.data, "data_dir": config.data_dir, "subset": config.subset}
    stage.timed("save", lambda: save(out, slim, run.space, spec, metadata=recorded))
    metrics = _measure(stage, config, out, run, slim, dataset, baseline)
    metrics.update(command=command, spec=spec.to_json(), optimizer_report=report)
    _write_json(out / HISTORY, {"train": history.to_dict()})
    metrics["seconds"]["total"] = time.perf_counter() - start
    stage.timed("report", lambda: run_report.render(out, metrics, history.to_dict()))
    metrics["seconds"]["total"] = time.perf_counter() - start
    _write_json(out / METRICS, metrics)
    for name in (CHECKPOINT, BASELINE):
        (out / name).unlink(missing_ok=True)
    return metrics


@dataclass
class _Run:
    """The analysed model, a copy of its initial weights for the baseline, and the pruning optimizer."""

    model: torch.nn.Module
    initial: torch.nn.Module
    example: Any
    single: Any
    space: Any
    optimizer: torch.optim.Optimizer
    steps: int


def _setup(stage: _Stage, config: Config, spec: ModelSpec, dataset: data.Dataset, target: Target) -> _Run:
    """Build the model from ``config.seed``, analyse it and make the optimizer."""
    from . import analyze

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
    steps = max(1, math.ceil(len(dataset.train) / config.batch_size)) * config.epochs
    optimizer = OPTIMIZERS[config.optimizer](space, config, target, steps)
    if config.optimizer == "hspg":
        stage.log("note: hspg has no explicit target; it removes the groups its penalty drives to zero")
    return _Run(model, initial, example, single, space, optimizer, steps)


def _threads(run: _Run, config: Config) -> int:
    """One thread for a tiny model (a training batch under ``TINY_MACS``), else torch's default."""
    return 1 if run.space.total_macs * config.batch_size < TINY_MACS else torch.get_num_threads()


def _measure(
    stage: _Stage,
    config: Config,
    out: Path,
    run: _Run,
    slim: torch.nn.Module,
    dataset: data.Dataset,
    baseline: Any,
) -> dict[str, Any]:
    """Accuracy, params and MACs (per sample), ONNX export and latency of the dense and slim models."""
    full, after = evaluate(run.model, dataset.test), evaluate(slim, dataset.test)
    dense_counts, slim_counts = count(run.model, run.single), count(slim, run.single)
    sample = fetch(dataset.test, torch.arange(min(len(dataset.test), max(LATENCY_BATCHES))))[0]
    onnx_path = _export(stage, config, out, slim, run.example)
    timings = stage.timed("latency", lambda: _latency(config, run, slim, sample, onnx_path))
    return {
        "format": "zigprune-run",
        "version": 1,
        "config": asdict(config),
        "groups": {"total": run.space.num_groups, "zero": int(run.space.zero_groups().sum())},
        "steps": run.steps,
        "dense": {
            "accuracy": baseline.accuracy if baseline else None,
            "loss": baseline.loss if baseline else None,
            **dense_counts,
            "latency": {k: v["dense"] for k, v in timings.items()},
        },
        "slim": {
            "accuracy": after.accuracy,
            "loss": after.loss,
            "full_model_accuracy": full.accuracy,
            **slim_counts,
            "latency": {k: v["slim"] for k, v in timings.items()},
        },
        "reduction": {k: dense_counts[k] / max(slim_counts[k], 1) for k in ("params", "macs")},
        "speedup": {k: v["speedup"] for k, v in timings.items()},
        "speedup_over_macs_ratio": {
            k: {b: s * slim_counts["macs"] / max(dense_counts["macs"], 1) for b, s in v["speedup"].items()}
            for k, v in timings.items()
        },
        "onnx": ONNX if onnx_path else None,
        "versions": _versions(),
        "seconds": dict(stage.seconds),
    }


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
    stage: _Stage,
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
    steps = max(1, math.ceil(len(dataset.train) / config.batch_size)) * config.epochs
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


def _export(stage: _Stage, config: Config, out: Path, slim: torch.nn.Module, example: Any) -> Path | None:
    """``model.onnx`` of the slim model, checked in ONNX Runtime (when onnx and onnxruntime are installed)."""
    if not config.onnx:
        return None
    if not _has_onnx():
        stage.log("ONNX export skipped: pip install 'zigprune[onnx]' to get model.onnx")
        return None
    with quiet_onnx():
        return stage.timed("export", lambda: export_onnx(slim, example, out / ONNX))


@contextlib.contextmanager
def quiet_onnx() -> Iterator[None]:
    """Hide the ONNX exporter's informational warnings (e.g. about torchvision ops it skips)."""
    logger = logging.getLogger("torch.onnx")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        logger.setLevel(level)


def _has_onnx() -> bool:
    try:
        import onnx  # noqa: F401
        import onnxruntime  # noqa: F401
    except ImportError:
        return False
    return True


def _latency(
    config: Config, run: _Run, slim: torch.nn.Module, sample: torch.Tensor, onnx_path: Path | None
) -> dict[str, dict[str, Any]]:
    """Interleaved dense vs slim latency in eager torch and ONNX Runtime, with speedups per batch size."""
    if not config.latency:
        return {}
    timing = {"batch_sizes": LATENCY_BATCHES, "min_seconds": config.latency_seconds}
    runs = {"torch": latency.compare(run.model, slim, sample, **timing)}
    if onnx_path is not None:
        with tempfile.TemporaryDirectory(prefix="zigprune-") as folder, quiet_onnx():
            dense_path = export_onnx(run.model, run.example, Path(folder) / "dense.onnx", check=False)
            runs["onnxruntime"] = latency.compare(dense_path, onnx_path, sample, backend="onnx", **timing)
    return {
        name: {
            "dense": [asdict(x) for x in result.dense],
            "slim": [asdict(x) for x in result.slim],
            "speedup": {str(b): s for b, s in result.speedup.items()},
        }
        for name, result in runs.items()
    }


def _versions() -> dict[str, str]:
    from . import __version__

    found = {"zigprune": __version__, "torch": torch.__version__, "python": platform.python_version()}
    for name in ("onnxruntime", "onnx"):
        with contextlib.suppress(ImportError):
            found[name] = __import__(name).__version__
    found["machine"] = f"{platform.machine()}, {torch.get_num_threads()} torch threads"
    return found
