"""Latency as a search's budget: a per-layer table timed on the runtime (cached on disk per machine)
predicts the slim model's time, and whole-model measurements check and calibrate it.

The table sums the Conv and Linear layers alone at their kept widths; what it does not see (the ops
between them: normalisations, activations, int8's quantize and dequantize steps, all as wide as the
layers) is first taken to shrink with them, so the sum is scaled to the dense model's measured time.
After a search, the result is built and timed against the dense model, interleaved; where the
prediction is off by more than ``CLOSE``, a scale and a fixed cost (the runtime's own, per call)
are fitted to both measurements and the search runs again, and past ``TOLERANCE`` at the end a
warning says so (SPDY and ZipLM correct their tables too: layer times do not simply add up).
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from ..core.construct import build
from ..core.space import GroupSpace
from ..deploy.runtimes import RUNTIMES, Runtime
from ..measure.layer_latency import LayerLatency
from ..measure.timing_cache import TimingCache

#: How far (relative) a predicted latency may be from the measured one before the table is calibrated.
TOLERANCE = 0.10
#: A search calibrates the table and solves again while its prediction is further than this from the
#: measurement (timing noise on a shared machine is a few percent), at most ``CALIBRATIONS`` times.
CLOSE = 0.03
CALIBRATIONS = 2
#: Calls per layer width, the fastest kept: more than a ranking's 5, the table is the budget's yardstick.
REPEATS = 15
SCALES = (0.25, 4.0)


@dataclass
class LatencyMeter:
    """The slim model's predicted time on ``runtime`` at ``batch`` and ``threads``: the layer table's
    sum times ``scale`` plus ``fixed`` (ms); ``total`` is the dense model's measured time. On an int8
    runtime, the layers in ``float_layers`` stay fp32: they count at their time in ``floats`` (the
    same layers timed on the runtime's fp32 side), and measured models keep them fp32."""

    space: GroupSpace
    runtime: Runtime
    table: LayerLatency
    batch: int
    threads: int
    seconds: float
    total: float = 0.0
    scale: float = 1.0
    fixed: float = 0.0
    checks: list[dict[str, float]] = field(default_factory=list)
    dense: Any = None
    folder: tempfile.TemporaryDirectory | None = None
    floats: LayerLatency | None = None
    float_layers: frozenset[str] = frozenset()

    @classmethod
    def build(
        cls,
        space: GroupSpace,
        runtime: str,
        *,
        batch: int = 64,
        threads: int = 1,
        round_to: int = 1,
        seconds: float = 0.5,
        cache: TimingCache | None = None,
    ) -> LatencyMeter:
        """Time the dense model on ``runtime`` and start the table; each model is timed at least
        ``seconds``. A LatencyError says how to install a missing runtime."""
        chosen = RUNTIMES[runtime]
        chosen.require()
        timing = {"timer": chosen.time_layer, "runtime": runtime, "cache": cache, "relative": True}
        table = LayerLatency(space, batch, threads, REPEATS, round_to, **timing)
        meter = cls(space, chosen, table, batch, threads, seconds)
        meter.folder = tempfile.TemporaryDirectory(prefix="zigprune-latency-")
        meter.dense = chosen.prepare(space.model, space.inputs, Path(meter.folder.name) / "dense")
        meter.total = chosen.time([meter.dense], space.inputs, batch, threads, seconds)[0]
        meter.scale = meter.total / max(table.estimate_ms(), 1e-9)
        return meter

    def left(self, removed: torch.Tensor) -> float:
        """Predicted ms once the groups in ``removed`` are gone."""
        return max(self.scale * self._summed(removed) + self.fixed, 0.0)

    def _summed(self, removed: torch.Tensor) -> float:
        """The table's sum once ``removed`` is gone, the layers kept fp32 at their fp32 time."""
        extra = sum(self.extra(removed, self.float_layers).values()) if self.float_layers else 0.0
        return self.table.estimate_ms(removed) + extra

    @property
    def mixed(self) -> bool:
        """Whether layers may stay fp32 on this runtime (an int8 one)."""
        return self.runtime.float_runtime is not None

    def extra(
        self, removed: torch.Tensor, names: set[str] | frozenset[str] | None = None
    ) -> dict[str, float]:
        """Per layer (those in ``names``, else all), the table's ms keeping it fp32 adds once
        ``removed`` is gone (negative where the int8 layer is the slower)."""
        if self.floats is None:
            chosen = RUNTIMES[self.runtime.float_runtime]
            timing = {"timer": chosen.time_layer, "runtime": chosen.name, "cache": self.table.cache}
            self.floats = LayerLatency(
                self.space, self.batch, self.threads, REPEATS, self.table.round_to, **timing, relative=True
            )
        wanted = set(names) if names is not None else None
        int8, fp32 = self.table.times(removed, wanted), self.floats.times(removed, wanted)
        return {name: fp32[name] - ms for name, ms in int8.items()}

    def measure(self, removed: torch.Tensor) -> dict[str, float]:
        """The slim model without ``removed`` built and timed against the dense one, interleaved:
        both in ms, the measured share, the predicted one, and how far apart they are."""
        slim = build(self.space, self.space.pruned_classes(removed))
        path = Path(self.folder.name) / f"slim{len(self.checks)}"
        keep = sorted(self.float_layers)
        targets = [self.dense, self.runtime.prepare(slim, self.space.inputs, path, keep)]
        dense, slim_ms = self.runtime.time(targets, self.space.inputs, self.batch, self.threads, self.seconds)
        share, predicted = slim_ms / dense, self.left(removed) / self.total
        check = {"dense_ms": dense, "ms": slim_ms, "share": share, "predicted_share": predicted}
        check["off"] = predicted / share - 1
        self.checks.append(check)
        return check

    def save(self) -> None:
        """Keep the layers timed so far in the disk cache (a no-op without one; both tables share it)."""
        if self.table.cache is not None:
            self.table.cache.save()

    def calibrate(self, removed: torch.Tensor, share: float) -> None:
        """Fit ``scale`` and ``fixed`` so the table predicts the dense model's time and ``share`` of it
        once ``removed`` is gone (a scale outside ``SCALES`` is clamped: a noisy timing must not turn
        the table upside down)."""
        dense_sum, slim_sum = self.table.estimate_ms(), self._summed(removed)
        if dense_sum - slim_sum > 1e-9:
            gap = self.total * (1 - share)
            self.scale = min(max(gap / (dense_sum - slim_sum), SCALES[0]), SCALES[1])
        self.fixed = self.total - self.scale * dense_sum
