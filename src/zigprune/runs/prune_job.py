"""``zigprune prune``: prune a trained model now from calibration data (``zp.prune``), measure, save.

The run folder is a compress run's (``model.safetensors`` + ``plan.json``, ``model.onnx``,
``metrics.json``, ``report.md``), so ``zp.load`` and ``zigprune eval/export/report`` read it. Image
data: calibration is random training images, quality is test accuracy before and after. Text data
(``text:FILE``, ``text:python-docs``) with a Hugging Face model: calibration is the first lines,
quality is how closely the pruned model's outputs follow the dense model's on held-out lines.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import Dataset as TorchDataset

from .. import data
from ..core.analysis import analyze
from ..core.policy import Policy
from ..core.selection import Target
from ..core.space import GroupSpace
from ..data.text import is_text
from ..errors import ConfigError, Interrupted
from ..io.saved import save
from ..io.weights import load_weights, weights_metadata
from ..models.spec import ModelSpec, check_known
from ..optim.base import VARIANTS
from ..posttrain import METHODS, prune
from ..search.files import load_policy
from ..training import steps_per_epoch
from . import report as run_report
from .config import check_number, check_text_model, default_out, limits_of
from .distill_slim import DEFAULT_LR, DistillPlan, distill_slim
from .fit import check_fits
from .hf_output import save_hf_folder
from .measurement import measure_models
from .optimizers import cost_power
from .options import Measurement, Selection, Source, option, redefault
from .run_data import RunData, load_run_data
from .rundir import CONFIG, HISTORY, METRICS, check_dir, start_dir, write_json
from .state import Run, Stage


@dataclass
class PruneConfig(Measurement, Selection, Source):
    """Everything that determines a prune run (saved as ``run.json``). ``batch_size`` is the calibration
    batch and the distillation batch (default 16 for text, 128 for images); ``variant`` and ``lr``
    (default AdamW at 5e-5 for a hf: model, SGD at 0.01 otherwise) only matter with ``distill_epochs``.
    It starts from a trained model, so it names one by default (ResNet-20 on Fashion-MNIST, the
    published post-training figures) and removes less (0.3 of the MACs) than a run that trains."""

    model: str = redefault(Source, "model", "resnet20")
    data: str = redefault(Source, "data", "fashion-mnist")
    target: str = redefault(Selection, "target", "macs=0.3")
    eval_data: str | None = option(
        None,
        metavar="text:FILE",
        group="what",
        help="text runs: measure fidelity on every line of this file, text of your own domain (default: the "
        "held-out lines of --data; a model calibrated on one kind of text can lose much more on another)",
    )
    policy: str | None = option(
        None,
        metavar="FILE",
        help="apply the widths of a policy saved by zigprune search (policy.json) in place of --target",
    )
    method: str = option("obs", choices=list(METHODS), help="default {default}: " + "; ".join(
        f"{m.name}: {m.summary}" for m in METHODS.values()))  # fmt: skip
    calibration: int = option(512, metavar="N", type=int, help="calibration samples (default {default})")
    batch_size: int | None = option(
        None, metavar="N", type=int, help="calibration and distillation batch (text 16, images 128)"
    )
    distill_epochs: int = option(
        0,
        metavar="N",
        type=int,
        help="after pruning, train the slim model N epochs to follow the dense one (default 0: none)",
    )
    variant: str | None = option(
        None, choices=VARIANTS, help="distillation's update (adamw for hf:, else sgd)"
    )
    lr: float | None = option(
        None, type=float, help="distillation's peak learning rate (adamw 5e-5, sgd 0.01)"
    )

    def __post_init__(self) -> None:
        if self.batch_size is None:
            self.batch_size = 16 if is_text(self.data) else 128
        if self.variant is None:
            self.variant = "adamw" if ModelSpec(self.model).kind == "hf" else "sgd"
        if self.variant not in VARIANTS:
            raise ConfigError(f"--variant is {self.variant!r}; use one of {', '.join(VARIANTS)}")
        if self.lr is None:
            self.lr = DEFAULT_LR[self.variant]
        check_number("lr", self.lr, 0.0, strict=True)
        check_number("distill_epochs", self.distill_epochs, 0, integer=True)
        for name in ("calibration", "batch_size", "max_length", "round_to"):
            check_number(name, getattr(self, name), 1, integer=True)
        check_number("latency_seconds", self.latency_seconds, 0.0, strict=True)
        if self.cost_power is not None and not (0 <= self.cost_power <= 1):
            raise ConfigError(f"--cost-power is {self.cost_power!r}; give a number in [0, 1]")
        check_text_model(self.model, self.data)
        if self.eval_data is not None and not (is_text(self.eval_data) and is_text(self.data)):
            raise ConfigError(
                f"--eval-data {self.eval_data} is for text runs: give text:FILE, with --data text:... and a "
                "hf: model (image runs are evaluated on their dataset's test split)"
            )
        limits_of(self)
        if self.method not in METHODS:
            raise ConfigError(f"--method is {self.method!r}; use one of {', '.join(METHODS)}")
        self.model = ModelSpec(self.model).absolute().text
        if self.weights is not None:
            self.weights = str(Path(self.weights).expanduser().resolve())
        if self.policy is not None:
            self.policy = str(Path(self.policy).expanduser().resolve())


@dataclass
class _Inputs:
    """What one run feeds the model: example inputs, calibration batches, and how quality is measured
    (``samples`` calibration samples used; ``evaluated``: on what, in words)."""

    example: Any
    single: Any
    calibration: list[Any]
    sample: Any
    quality: Callable[[torch.nn.Module], dict[str, float]]
    train: TorchDataset
    labelled: bool
    samples: int
    evaluated: str
    augment: Any = None
    chance: float | None = None


def prune_run(
    config: PruneConfig,
    out: str | Path | None = None,
    *,
    force: bool = False,
    progress: bool = True,
    command: str | None = None,
    log: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Prune ``config.model`` into ``out`` (default ``runs/<model>-<data>-<method>``); return its metrics."""
    start = time.perf_counter()
    stage = Stage.of(log, progress)
    out = Path(out) if out is not None else default_out(config, config.method)
    check_dir(out, resume=False, force=force, resumable=False)
    target = Target.parse(config.target, round_to=config.round_to, limits=limits_of(config))
    target = replace(target, cost_power=cost_power(config, target))
    policy = load_policy(config.policy) if config.policy else None
    torch.manual_seed(config.seed)
    try:
        spec, model, feed = prepare(stage, config)
        say = "analysing the model: tracing it and checking that pruned models construct exactly"
        space = stage.timed("analyze", lambda: analyze(model, feed.example), say)
        return _run(stage, config, out, spec, space, feed, (target, policy), progress, command, start)
    except KeyboardInterrupt as err:
        again = (
            "run the command again with --force"
            if (out / CONFIG).is_file()
            else f"nothing was written to {out}; run the command again"
        )
        why = f"{str(err) or 'Ctrl-C'}: stopped {stage.current}; {again}"
        raise Interrupted(why, signal="SIGTERM" if str(err) == "SIGTERM" else "SIGINT") from None


def prepare(stage: Stage, config: Any) -> tuple[ModelSpec, torch.nn.Module, _Inputs]:
    """The model with its weights, and its inputs, checked against each other before anything is written
    (``config``: a ``PruneConfig``, or a ``SearchConfig``, which names the same sources)."""
    check_known(config.model)
    found = stage.timed("data", lambda: load_run_data(
        config.model, config.data, data_dir=config.data_dir, max_length=config.max_length,
        model_kwargs=config.model_kwargs, eval_data=config.eval_data,
    ))  # fmt: skip
    spec = found.spec
    if found.labelled:
        check_fits(spec, found.dataset)
        if config.weights is None and spec.kind != "hf":
            raise ConfigError(
                "--weights FILE is needed: post-training pruning keeps what a trained model knows (train one "
                "with zigprune compress --save-dense, or give your own state dict as .safetensors)"
            )
    model = stage.timed("load", spec.build)
    if found.labelled and config.weights is not None:
        load_weights(model, config.weights)
        _check_trained_on(stage, config, found.dataset)
    return spec, model, _inputs(config, found, model)


def _check_trained_on(stage: Stage, config: PruneConfig, dataset: data.Dataset) -> None:
    """Warn when the weights file says it was trained on other data than ``--data`` gives."""
    recorded = weights_metadata(config.weights)
    shape = ",".join(map(str, dataset.input_shape))
    if recorded.get("input_shape", shape) != shape or recorded.get("data", config.data) != config.data:
        stage.log(
            f"warning: {Path(config.weights).name} was trained on {recorded.get('data', 'other data')} "
            f"({recorded.get('input_shape', '?').replace(',', 'x')} inputs), and --data {config.data} gives "
            f"{shape.replace(',', 'x')}: the dense model will not know this data; pass the --data it was "
            "trained on"
        )


def _inputs(config: PruneConfig, found: RunData, model: torch.nn.Module) -> _Inputs:
    """What the run feeds ``model`` (still dense): the examples, calibration and the quality measure."""
    calibration = found.calibration(config.calibration, seed=config.seed, batch_size=config.batch_size)
    samples = min(config.calibration, len(found.dataset.train))
    dataset = found.dataset
    if found.labelled:
        shape = None if found.spec.kind == "hf" else dataset.input_shape
        example, single = found.spec.example_inputs(2, shape), found.spec.example_inputs(1, shape)
        sample, chance = found.example(64), 1 / dataset.num_classes
    else:
        sample, chance = found.example(config.batch_size), None
        example, single = ({k: v[:n] for k, v in sample.items()} for n in (2, 1))
    return _Inputs(
        example, single, calibration, sample, found.quality(model, config.batch_size), dataset.train,
        labelled=found.labelled, samples=samples, evaluated=found.evaluated, augment=dataset.augment,
        chance=chance,
    )  # fmt: skip


def _run(
    stage: Stage,
    config: PruneConfig,
    out: Path,
    spec: ModelSpec,
    space: GroupSpace,
    feed: _Inputs,
    goal: tuple[Target, Policy | None],
    progress: bool,
    command: str | None,
    start: float,
) -> dict[str, Any]:
    """Prune to ``goal`` (a target, or the widths of a policy when one is given), then save and measure."""
    model = space.model.eval()
    dense = copy.deepcopy(model)
    target, policy = goal
    say = f"pruning with {config.method} from {feed.samples} calibration samples"
    ids = stage.timed(
        "prune",
        lambda: prune(
            space, feed.calibration, target, method=config.method, policy=policy, progress=progress
        ),
        say,
    )
    start_dir(out, config)  # the target was reachable (or the policy fits): pruning checked it first
    stage.log(f"pruned {len(ids)} of {space.num_groups} groups with {config.method}")
    dense_quality = stage.timed("evaluate", lambda: feed.quality(dense), "evaluating the dense model")
    if feed.chance is not None and dense_quality.get("accuracy", 1.0) <= 1.5 * feed.chance:
        stage.log(
            f"warning: the dense model scores {dense_quality['accuracy']:.1%} on {config.data}, near chance "
            f"({feed.chance:.0%}): are --weights trained on this --data? Pruning keeps what a model knows"
        )
    slim = stage.timed("construct", space.construct)
    recovered = _distill(stage, config, slim, dense, feed, progress) if config.distill_epochs else {}
    history = recovered.pop("history", {"steps": [], "epochs": []})
    recorded = {"data": config.data, "data_dir": config.data_dir, "weights": config.weights}
    recorded |= {"max_length": config.max_length} if is_text(config.data) else {}
    stage.timed("save", lambda: save(slim, space, spec, out, metadata=recorded))
    hf_folder = save_hf_folder(stage, spec, slim, out)
    run = Run(model, dense, feed.example, feed.single, space, None, 0)
    slim_quality = {**feed.quality(slim), **recovered}
    metrics = measure_models(stage, config, out, run, slim, feed.sample, dense_quality, slim_quality)
    metrics.update(kind="prune", command=command, spec=spec.to_json(), out=str(out), hf_folder=hf_folder)
    metrics["calibration"] = {"data": config.data, "samples": feed.samples, "evaluated": feed.evaluated}
    if policy is not None:
        metrics["policy"] = {"file": config.policy, "strategy": policy.strategy, "budget": policy.budget}
        metrics["policy"]["fp32"] = policy.fp32_layers
    write_json(out / HISTORY, {"train": history})
    metrics["seconds"]["total"] = time.perf_counter() - start
    run_report.render(out, metrics, history)
    write_json(out / METRICS, metrics)
    return metrics


def _distill(
    stage: Stage,
    config: PruneConfig,
    slim: torch.nn.Module,
    dense: torch.nn.Module,
    feed: _Inputs,
    progress: bool,
) -> dict[str, Any]:
    """Distil ``slim`` from ``dense`` for ``config.distill_epochs``; the quality it had just after
    pruning (``pruned_*`` keys) and the training history (``history``)."""
    before = {f"pruned_{k}": v for k, v in feed.quality(slim).items() if k != "held_out"}
    plan = DistillPlan(config.distill_epochs, config.batch_size, config.variant, config.lr, config.seed)
    history = stage.timed("distill", lambda: distill_slim(slim, dense, feed.train, plan,
                          labelled=feed.labelled, augment=feed.augment, progress=progress))  # fmt: skip
    steps = steps_per_epoch(len(feed.train), config.batch_size) * config.distill_epochs
    stage.log(f"distilled the slim model: {steps} steps ({config.distill_epochs} epoch(s))")
    return {**before, "history": history.to_dict()}
