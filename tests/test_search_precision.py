"""Mixed precision on an int8 runtime: a policy keeps some layers fp32 (chosen by gain against the time
they cost), int8 simulated in torch for the search, the quantized file keeping exactly those layers in
float, and the policy's precision saved with it."""

from __future__ import annotations

import math
from dataclasses import replace

import pytest
import torch
from test_search_latency import CALIBRATION, Net, fake_runtime, layer_ms

import zigprune as zp
from zigprune.deploy.runtimes import RUNTIMES
from zigprune.errors import PolicyError, QuantizeError
from zigprune.measure.layer_ops import LayerOp
from zigprune.search.fake_int8 import fake_int8, int8_weights


def test_fake_int8_rounds_weights_and_inputs_only_inside_the_block() -> None:
    torch.manual_seed(0)
    model, x = Net().eval(), torch.randn(2, 1, 8, 8)
    weight, reference = model.b.weight.detach().clone(), model(x)
    step = weight.reshape(32, -1).abs().amax(1) / 127
    rounded = int8_weights(weight)
    assert ((rounded - weight).abs().reshape(32, -1).amax(1) <= step / 2 + 1e-7).all()
    assert (
        rounded.reshape(32, -1)
        .div(step[:, None])
        .sub(rounded.reshape(32, -1).div(step[:, None]).round())
        .abs()
        .max()
        < 1e-3
    )
    with fake_int8(model, ["b", "head"]):
        inside = model(x)
    assert not torch.equal(inside, reference) and torch.allclose(inside, reference, atol=0.05)
    assert torch.equal(model.b.weight, weight) and torch.equal(model(x), reference)
    assert not model.b._forward_pre_hooks and not model.head._forward_pre_hooks


def test_an_int8_file_keeps_exactly_the_policys_fp32_layers_in_float(tmp_path) -> None:
    pytest.importorskip("onnxruntime")
    import onnx

    from zigprune.deploy.quantize import Scheme, quantize_onnx

    torch.manual_seed(0)
    model, x = Net().eval(), torch.randn(4, 1, 8, 8)
    path = zp.export_onnx(model, x, tmp_path / "net.onnx", check=False)
    out = quantize_onnx(path, [x], tmp_path / "net.int8.onnx", scheme=Scheme(keep_layers=("b",)))
    graph = onnx.load(str(out)).graph
    produced = {o: node.op_type for node in graph.node for o in node.output}
    inputs = {node.op_type: [] for node in graph.node}
    for node in graph.node:
        inputs[node.op_type].append([produced.get(i, "initializer") for i in node.input])
    convs = inputs["Conv"]
    assert len(convs) == 2
    assert sorted(c[1] for c in convs) == ["DequantizeLinear", "initializer"], convs
    with pytest.raises(QuantizeError, match="no node of the ONNX file takes the weight of nowhere"):
        quantize_onnx(path, [x], tmp_path / "other.onnx", scheme=Scheme(keep_layers=("nowhere",)))


def test_a_policys_precision_round_trips_and_a_wrong_precision_is_refused(tmp_path) -> None:
    space = zp.analyze(Net().eval(), torch.randn(2, 1, 8, 8))
    removed = torch.zeros(space.num_groups, dtype=torch.bool)
    policy = zp.Policy.of(space, removed, precision={"a": "int8", "b": "fp32", "head": "int8"})
    zp.save_policy(policy, tmp_path / "p.json")
    loaded = zp.load_policy(tmp_path / "p.json")
    assert loaded.precision == policy.precision and loaded.fp32_layers == ["b"]
    with pytest.raises(PolicyError, match="layer b has precision 'fp16'; use one of int8, fp32"):
        replace(policy, precision={"b": "fp16"})


def fp32_ms(op: LayerOp, cin: int, cout: int, threads: int, repeats: int) -> float:
    """fp32 layers take twice their int8 time, but the head, whose int8 kernel is the slower."""
    ms = layer_ms(op, cin, cout, threads, repeats)
    return ms * (0.5 if op.kind == "linear" else 2.0)


def test_an_int8_search_keeps_fp32_where_it_is_free_and_meets_the_budget(monkeypatch) -> None:
    torch.manual_seed(0)
    space = zp.analyze(Net().eval(), torch.randn(2, 1, 8, 8))
    int8 = replace(fake_runtime(fixed=0.0, factor=1.0), float_runtime="fake-fp32")
    monkeypatch.setitem(RUNTIMES, "fake", int8)
    monkeypatch.setitem(RUNTIMES, "fake-fp32", replace(int8, name="fake-fp32", time_layer=fp32_ms))
    policy = zp.search(space, CALIBRATION, "latency=0.6@fake", batch=8, progress=False, evaluations=2)
    assert set(policy.precision) == {"a", "b", "head"}
    assert policy.precision["head"] == "fp32", "int8 is the slower there: fp32 costs nothing"
    assert policy.predicted["share"] <= 0.6 and math.isfinite(policy.measured["share"])
    same = zp.search(space, CALIBRATION, "latency=0.6@fake", batch=8, progress=False, mixed=False)
    assert set(same.precision.values()) == {"int8"}


def test_galen_chooses_precisions_with_the_widths_and_meets_the_budget(monkeypatch) -> None:
    """Galen's joint agent on an int8 runtime: every layer gets a precision, the layer whose int8
    kernel is the slower stays fp32 (free, and it measures better), the budget holds with the fp32
    layers' time counted; seeded, a second search gives the same policy; with ``mixed=False`` it only
    prunes."""
    torch.manual_seed(0)
    space = zp.analyze(Net().eval(), torch.randn(2, 1, 8, 8))
    int8 = replace(fake_runtime(fixed=0.0, factor=1.0), float_runtime="fake-fp32")
    monkeypatch.setitem(RUNTIMES, "fake", int8)
    monkeypatch.setitem(RUNTIMES, "fake-fp32", replace(int8, name="fake-fp32", time_layer=fp32_ms))
    options = {"strategy": "galen", "batch": 8, "progress": False, "evaluations": 4}
    policy = zp.search(space, CALIBRATION, "latency=0.6@fake", **options)
    assert set(policy.precision) == {"a", "b", "head"} and policy.precision["head"] == "fp32"
    assert policy.predicted["share"] <= 0.6 and math.isfinite(policy.measured["share"])
    again = zp.search(space, CALIBRATION, "latency=0.6@fake", **options)
    assert again.precision == policy.precision and again.families == policy.families
    plain = zp.search(space, CALIBRATION, "latency=0.6@fake", **options, mixed=False)
    assert set(plain.precision.values()) == {"int8"} and plain.predicted["share"] <= 0.6
