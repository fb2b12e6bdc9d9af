"""The bench harness: every method on the same model, data, MACs target, epoch budget and seeds.

For each seed, every method starts from the same initial weights (``torch.manual_seed(seed)``
before building) and gets ``Settings.epochs`` epochs in total. A run's record holds the last-epoch
test accuracy of its final model, MACs and params from ``zp.count`` on the real (constructed) model
(theoretical counts for unstructured methods), the latency speedup of that model over the dense
one, and the wall time of the recipe (training, analysis, pruning, construction; evaluation excluded).
"""

from __future__ import annotations

import time
import traceback
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch

from .. import data, models
from ..core.selection import Target
from ..errors import ZigpruneError
from ..measure import latency
from ..measure.count import count
from ..methods import recipes
from ..methods.options import ScratchOptions, read_options
from ..methods.run import Setup, Training
from ..training import evaluate, fetch, sample_inputs
from .cache import RunCache, fingerprint
from .int8 import int8_figures

DEFAULT_METHODS = (
    "dense", "hesso", "dhspg", "hspg", "l1-filter", "slimming", "sfp", "taylor", "random", "one-cycle",
    "scratch", "magnitude", "lth", "tp-l2", "tp-group-sl",
)  # fmt: skip
ZIGPRUNE_OPTIMIZERS = ("hspg", "dhspg", "hesso")
EXAMPLES = 2
LATENCY_BATCH = 64


@dataclass
class Settings(Training):
    """One bench: model, data, MACs reduction (dense/slim, e.g. 2.5), epoch budget, seeds and methods.

    ``subset`` cuts the training set (None: all of it); the whole test set is used unless
    ``test_subset`` is given. How every method trains (epochs, batch, SGD) is the ``Training`` part it
    shares with each run's ``Setup``. The defaults fit every default method, 3 seeds, ResNet-20 on
    Fashion-MNIST in about 70 minutes on 2 CPU cores.
    """

    model: str = "resnet20"
    data: str = "fashion-mnist"
    data_dir: str | None = None
    macs: float = 2.5
    seeds: int = 3
    methods: list[str] = field(default_factory=lambda: list(DEFAULT_METHODS))
    subset: int | None = 6000
    test_subset: int | None = None
    options: dict[str, dict[str, Any]] = field(default_factory=dict)
    latency: bool = True
    latency_seconds: float = 0.5
    quick: bool = False
    int8: bool = False

    def __post_init__(self) -> None:
        if self.macs <= 1:
            raise ZigpruneError(f"--macs is dense/slim MACs and must exceed 1 (e.g. 2.5x), not {self.macs}")
        if self.epochs < 1 or self.seeds < 1:
            raise ZigpruneError("--epochs and --seeds must be at least 1")
        unknown = [m for m in self.methods if m not in recipes.RECIPES]
        if unknown:
            raise ZigpruneError(
                f"unknown method(s) {', '.join(unknown)}; valid names: {', '.join(recipes.RECIPES)}"
            )

    @property
    def target(self) -> Target:
        """The MACs fraction every method removes, 1 − 1/macs, with ``Target``'s defaults otherwise.

        Recipes read ``round_to`` and ``cost_power`` from it (HESSO's and DHSPG's options may replace them).
        """
        return Target(1 - 1 / self.macs, "macs")

    def run_key(self, method: str) -> str:
        """Fingerprint of everything that changes the result of ``method`` (and of a scratch source)."""
        skip = ("seeds", "methods", "options", "progress") + (() if self.int8 else ("int8",))
        shared = {k: v for k, v in asdict(self).items() if k not in skip}
        given = self.options.get(method, {})
        source = read_options(ScratchOptions, given).source if method.startswith("scratch") else None
        extra = {"source_options": self.options.get(source, {})} if source else {}
        return fingerprint({**shared, "method": method, "options": self.options.get(method, {}), **extra})


@dataclass
class RunRecord:
    """The result of one (method, seed) run, as cached and reported."""

    method: str
    seed: int
    fingerprint: str
    accuracy: float | None = None
    macs: int | None = None
    params: int | None = None
    dense_macs: int | None = None
    dense_params: int | None = None
    theoretical: bool = False
    speedup: dict[str, float] | None = None
    int8_accuracy: float | None = None
    int8_speedup: dict[str, float] | None = None
    wall_s: float | None = None
    epochs: int | None = None
    pruned: list[int] = field(default_factory=list)
    history: list[dict[str, Any]] = field(default_factory=list)
    notes: str = ""
    error: str | None = None


class Bench:
    """Runs the settings' (method, seed) pairs, reusing cached runs from ``out / "runs"``.

    The example inputs (analysis, construction check, counts) are the first training images, so
    construction is checked on real data rather than on zeros.
    """

    def __init__(self, settings: Settings, out: Path, log: Callable[[str], None] = print) -> None:
        self.settings = settings
        self.cache = RunCache(Path(out) / "runs")
        self.log = log
        full = data.load(settings.data, settings.data_dir)
        test = settings.test_subset or len(full.test)
        self.data = data.take_subset(full, settings.subset, 0, test)
        self.example = fetch(self.data.train, torch.arange(min(EXAMPLES, len(self.data.train))))[0]
        self.ran: list[str] = []
        self._dense: dict[str, int] | None = None

    def build(self, seed: int) -> Callable[[], torch.nn.Module]:
        """A factory of the seed's initial model (same weights every call)."""
        channels, classes = self.data.input_shape[0], self.data.num_classes

        def make() -> torch.nn.Module:
            torch.manual_seed(seed)
            return models.create(self.settings.model, in_channels=channels, num_classes=classes)

        return make

    def record(self, method: str, seed: int, stack: tuple[str, ...] = ()) -> RunRecord:
        """The (method, seed) record: from the cache, or run now (and cached if it succeeded)."""
        key = self.settings.run_key(method)
        cached = self.cache.get(method, seed, key)
        if cached is not None:
            self.log(f"{method} seed {seed}: cached")
            return RunRecord(**cached)
        if method in stack:
            raise ZigpruneError(
                f"{method} needs its own architecture ({' -> '.join(stack)}); pick another source"
            )
        record = self.run(method, seed, key, stack + (method,))
        if record.error is None:
            self.cache.put(asdict(record))
        return record

    def run(self, method: str, seed: int, key: str, stack: tuple[str, ...]) -> RunRecord:
        """Run ``method`` for ``seed`` now; errors are kept in the record, not raised."""
        s = self.settings
        self.log(f"{method} seed {seed}: running")
        setup = Setup(
            build=self.build(seed),
            data=self.data,
            example=self.example,
            target=s.target,
            seed=seed,
            options=dict(s.options.get(method, {})),
            **s.training(),
            architecture=lambda source: self._architecture(source, seed, stack),
        )
        record = RunRecord(method, seed, key)
        try:
            start = time.perf_counter()
            outcome = recipes.get(method)(setup)
            record.wall_s = time.perf_counter() - start
            self._measure(record, outcome, setup)
        except Exception:
            record.error = traceback.format_exc()
            self.log(f"{method} seed {seed} failed:\n{record.error}")
        self.ran.append(f"{method}:{seed}")
        return record

    def _architecture(self, source: str, seed: int, stack: tuple[str, ...]) -> list[int]:
        record = self.record(source, seed, stack)
        if record.error is not None:
            raise ZigpruneError(f"the architecture source {source!r} failed for seed {seed}; see its error")
        return record.pruned

    def _measure(self, record: RunRecord, outcome: Any, setup: Setup) -> None:
        model = outcome.model.eval()
        one = self.example[:1]
        dense_model = setup.build().eval()
        self._dense = self._dense or count(dense_model, one)
        dense = self._dense
        final = outcome.theoretical or count(model, one)
        record.accuracy = evaluate(model, self.data.test).accuracy
        record.macs, record.params = int(final["macs"]), int(final["params"])
        record.dense_macs, record.dense_params = dense["macs"], dense["params"]
        record.theoretical = outcome.theoretical is not None
        record.epochs, record.pruned, record.notes = outcome.epochs, outcome.pruned, outcome.notes
        record.history = outcome.history
        if self.settings.latency and not record.theoretical:
            batch = fetch(self.data.test, torch.arange(LATENCY_BATCH) % len(self.data.test))[0]
            measured = latency.compare(
                dense_model, model, batch, min_seconds=self.settings.latency_seconds, repeats=5
            )
            record.speedup = {str(b): float(v) for b, v in measured.speedup.items()}
        if self.settings.int8 and not record.theoretical:
            calibration = sample_inputs(self.data.train, 256, seed=record.seed)
            batch = fetch(self.data.test, torch.arange(LATENCY_BATCH) % len(self.data.test))[0]
            record.int8_accuracy, record.int8_speedup = int8_figures(
                dense_model, model, batch, calibration, self.data.test, self.settings.latency_seconds
            )
        self.log(
            f"{record.method} seed {record.seed}: accuracy {record.accuracy:.4f}, MACs {record.macs:,}, "
            f"params {record.params:,}, {record.wall_s:.1f} s"
        )

    def records(self) -> list[RunRecord]:
        """Every (method, seed) record of the settings, seed by seed."""
        return [self.record(m, seed) for seed in range(self.settings.seeds) for m in self.settings.methods]
