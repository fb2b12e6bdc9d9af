"""Latency budgets (``zp.search(..., budget="latency=0.5@runtime")``): the layer table, its calibration
on whole-model measurements, the disk cache of timings, the ONNX Runtime layer timers, and the bad
inputs. A fake runtime whose times are a known function of the MACs keeps the search deterministic;
how close the prediction comes on a real runtime is a benchmark (benchmarks/search.py), not a test."""

from __future__ import annotations

import json
import math
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import nn

import zigprune as zp
from zigprune.deploy.runtimes import RUNTIMES, Runtime
from zigprune.errors import TargetError
from zigprune.measure.latency import LatencyError
from zigprune.measure.layer_latency import LayerLatency
from zigprune.measure.layer_ops import LayerOp
from zigprune.measure.timing_cache import TimingCache
from zigprune.search.latency import LatencyMeter


class Net(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.a, self.b = nn.Conv2d(1, 16, 3, padding=1), nn.Conv2d(16, 32, 3, padding=1)
        self.head = nn.Linear(32, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.b(self.a(x).relu()).relu().mean((2, 3)))


def layer_ms(op: LayerOp, cin: int, cout: int, threads: int, repeats: int) -> float:
    """A layer's "time": its MACs at the timing batch, 1 ms per 10^6."""
    spatial = math.prod(op.input_shape[2:]) if op.kind != "linear" else 1
    return op.input_shape[0] * spatial * cin * cout * math.prod(op.kernel) * 1e-6


@dataclass(frozen=True)
class Fake(Runtime):
    """Whole models take ``factor`` times their MACs per sample (1 ms per 10^6) plus ``fixed`` ms."""

    fixed: float = 0.0
    factor: float = 3.0

    def time(self, targets: list[Any], example: Any, batch: int, threads: int, seconds: float) -> list[float]:
        return [self.factor * zp.count(m, example)["macs"] * batch * 1e-6 + self.fixed for m in targets]


def fake_runtime(fixed: float, factor: float = 3.0) -> Runtime:
    return Fake(
        "fake", layer_ms, lambda model, example, path, keep=(): model, "torch", fixed=fixed, factor=factor
    )


@pytest.fixture()
def space() -> zp.GroupSpace:
    torch.manual_seed(0)
    return zp.analyze(Net().eval(), torch.randn(2, 1, 8, 8))


CALIBRATION = [torch.randn(16, 1, 8, 8) for _ in range(2)]


@pytest.mark.parametrize("strategy", ["dp", "global", "uniform"])
def test_a_latency_search_calibrates_its_table_and_meets_the_measured_budget(
    space, strategy: str, monkeypatch
) -> None:
    # the table (the layers' MACs) misses a fixed cost and a factor 3: the first prediction is off
    monkeypatch.setitem(RUNTIMES, "fake", fake_runtime(fixed=2.0))
    policy = zp.search(space, CALIBRATION, "latency=0.5@fake", strategy=strategy, batch=8, progress=False)
    measured = policy.measured
    assert measured["calibrations"] >= 1 and abs(measured["off"]) <= 0.03
    assert measured["share"] <= 0.5 * 1.03 and policy.predicted["share"] <= 0.5
    assert measured["share"] == pytest.approx(measured["ms"] / measured["dense_ms"])
    removed = torch.zeros(space.num_groups, dtype=torch.bool)
    removed[zp.prune(space, CALIBRATION, policy=policy, progress=False)] = True
    assert zp.Policy.of(space, removed).families == policy.families


def test_a_latency_budget_below_the_runtime_fixed_cost_says_what_can_be_reached(space, monkeypatch) -> None:
    monkeypatch.setitem(RUNTIMES, "fake", fake_runtime(fixed=200.0, factor=1.0))
    with pytest.raises(
        TargetError, match=r"ask for latency=0\.\d+@fake or more\. Measured: the first widths"
    ):
        zp.search(space, CALIBRATION, "latency=0.3@fake", batch=8, progress=False)


def test_layer_timings_are_cached_on_disk_and_a_damaged_cache_is_ignored(space, tmp_path: Path) -> None:
    calls = []

    def counted(*args: Any) -> float:
        calls.append(args)
        return layer_ms(*args)

    path = tmp_path / "timings.json"
    first = LayerLatency(space, batch=8, timer=counted, runtime="fake", cache=TimingCache(path))
    dense_ms = first.estimate_ms()
    first.cache.save()
    assert len(calls) == 3 and len(json.loads(path.read_text())) == 3
    again = LayerLatency(space, batch=8, timer=counted, runtime="fake", cache=TimingCache(path))
    assert again.estimate_ms() == dense_ms and len(calls) == 3, "every layer came from the cache"
    path.write_text("{not json")
    with pytest.warns(UserWarning, match="damaged timing cache"):
        assert TimingCache(path).entries == {}


OPS = [
    LayerOp("conv2d", (4, 8, 6, 7), (3, 2), (1, 1), "same", (2, 1)),
    LayerOp("conv1d", (4, 8, 10), (3,), (2,), (1,), (1,)),
    LayerOp("linear", (4, 8)),
    LayerOp("linear", (4, 5, 8)),
]


def test_relative_timing_keeps_a_table_consistent_while_the_machine_speed_drifts(space) -> None:
    """A machine twice as slow every other call (a busy neighbour): each narrower width is timed next
    to its layer's full width and kept as that ratio of the full width's entry, so the table keeps
    the true proportions that absolute timings lose."""
    calls = []

    def drifting(op: LayerOp, cin: int, cout: int, threads: int, repeats: int) -> float:
        calls.append(1)
        slow = 2.0 if len(calls) % 4 >= 2 else 1.0  # two calls fast, two slow, in turn
        return layer_ms(op, cin, cout, threads, repeats) * slow

    def table(relative: bool) -> LayerLatency:
        calls.clear()
        return LayerLatency(space, batch=8, timer=drifting, runtime="fake", relative=relative)

    conv = space.model.b
    layer = next(lay for lay in table(True).layers if lay.module is conv)
    widths = [(16, 32), (8, 32), (16, 16), (4, 8), (12, 24)]
    truth = [layer_ms(layer.op, *w, 1, 1) for w in widths]
    for relative, holds in ((True, True), (False, False)):
        timed = table(relative)
        got = [timed._time(layer, *w) for w in widths]
        ratios = [g / got[0] for g in got]
        same = all(r == pytest.approx(t / truth[0]) for r, t in zip(ratios, truth))
        assert same == holds, (relative, ratios)


@pytest.mark.parametrize("runtime", ["onnxruntime", "onnxruntime-int8"])
def test_onnx_runtime_times_convolutions_and_linears_alone(runtime: str) -> None:
    pytest.importorskip("onnxruntime")
    for op in OPS:
        ms = RUNTIMES[runtime].time_layer(op, 6, 4, 1, 2)
        assert math.isfinite(ms) and ms > 0


def test_a_layer_timed_in_onnx_runtime_computes_what_torch_does() -> None:
    """The one-node file is the layer itself: same output as torch's op on the same weights (pads for
    ``same`` with an even kernel and a dilation included), so the time is that of the right shape."""
    ort = pytest.importorskip("onnxruntime")
    from onnx import numpy_helper

    from zigprune.deploy.runtimes import _layer_model

    for op in OPS:
        model = _layer_model(op, 6, 4)
        weight = torch.from_numpy(numpy_helper.to_array(model.graph.initializer[0]).copy())
        x = torch.randn(op.shape(6))
        if op.kind == "linear":
            expected = x @ (weight.T if len(op.input_shape) == 2 else weight)
        else:
            conv = getattr(torch.nn.functional, op.kind)
            expected = conv(x, weight, None, op.stride, op.padding, op.dilation)
        session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
        got = torch.from_numpy(session.run(None, {"input": x.numpy()})[0])
        torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-4)


def test_a_runtime_not_installed_says_how_to_install_it(space, monkeypatch) -> None:
    monkeypatch.setitem(sys.modules, "onnxruntime", None)
    with pytest.raises(LatencyError, match=r"pip install 'zigprune\[onnx\]'"):
        zp.search(space, CALIBRATION, "latency=0.5@onnxruntime", progress=False)


def test_a_search_leaves_a_shared_tables_calibration_as_it_found_it(space, monkeypatch) -> None:
    """Strategies share one table: the calibration a search fits is not handed to the next one."""
    monkeypatch.setitem(RUNTIMES, "fake", fake_runtime(fixed=2.0))
    meter = LatencyMeter.build(space, "fake", batch=8)
    given = (meter.scale, meter.fixed)
    policy = zp.search(space, CALIBRATION, "latency=0.5@fake", meter=meter, batch=8, progress=False)
    assert policy.measured["calibrations"] >= 1 and (meter.scale, meter.fixed) == given
