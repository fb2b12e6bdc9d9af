"""Latency measurement: sensible numbers, interleaved comparisons, ONNX Runtime, and clear errors."""

import sys
import time
from pathlib import Path

import pytest
import torch
from torch import nn

from zigprune.errors import ZigpruneError
from zigprune.measure.latency import (
    Latency,
    LatencyError,
    compare,
    fastest_ms,
    make_batch,
    measure,
    measure_onnx,
    speedup,
)

FAST = {"warmup": 1, "repeats": 5, "min_seconds": 0.0}


def mlp(width: int) -> nn.Sequential:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(256, width), nn.ReLU(), nn.Linear(width, 10))


def test_measure_returns_sensible_numbers() -> None:
    results = measure(mlp(64), torch.randn(3, 256), batch_sizes=(1, 7), **FAST)
    assert [(r.backend, r.batch) for r in results] == [("torch", 1), ("torch", 7)]
    for r in results:
        assert 0 < r.p10_ms <= r.median_ms <= r.p90_ms < 1000 and r.repeats >= 5


class Sleeper(nn.Module):
    """Sleeps a fixed time per call and records batch size, inference mode, train flag and threads."""

    def __init__(self, seconds: float, log: list, tag: str = "") -> None:
        super().__init__()
        self.seconds, self.log, self.tag = seconds, log, tag

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        mode = (x.shape[0], torch.is_inference_mode_enabled(), self.training, torch.get_num_threads())
        self.log.append((self.tag, *mode))
        time.sleep(self.seconds)
        return x


def test_min_seconds_extends_repeats_and_state_is_restored() -> None:
    log: list = []
    model, before = Sleeper(0.01, log).train(), torch.get_num_threads()
    (result,) = measure(
        model, torch.randn(2, 3), batch_sizes=(5,), warmup=2, repeats=1, min_seconds=0.06, threads=before + 1
    )
    assert 2 <= result.repeats <= 6 and len(log) == result.repeats + 2
    assert 10 <= result.p10_ms <= result.median_ms
    assert {entry[1:] for entry in log} == {(5, True, False, before + 1)}
    assert model.training and torch.get_num_threads() == before


def test_compare_interleaves_dense_and_slim_calls() -> None:
    log: list = []
    result = compare(
        Sleeper(0, log, "d"), Sleeper(0, log, "s"), torch.randn(2, 3), batch_sizes=(1, 4), **FAST
    )
    tags = "".join(tag for tag, *_ in log)
    assert tags == "ds" * (len(log) // 2) and len(log) == 2 * (1 + 5) * 2
    assert [r.batch for r in result.dense] == [1, 4] and [r.batch for r in result.slim] == [1, 4]
    assert set(result.speedup) == {1, 4}


def test_four_times_wider_model_is_slower_at_batch_64() -> None:
    result = compare(mlp(1024), mlp(256), torch.randn(8, 256), batch_sizes=(64,), repeats=20, min_seconds=0.1)
    assert result.speedup[64] > 1.3


def test_speedup_is_dense_over_slim_median_per_shared_batch() -> None:
    dense = [Latency("torch", 1, 4.0, 3.0, 5.0, 10), Latency("torch", 64, 9.0, 8.0, 10.0, 10)]
    slim = [Latency("torch", 64, 3.0, 2.0, 4.0, 10), Latency("torch", 8, 1.0, 1.0, 1.0, 10)]
    assert speedup(dense, slim) == {64: 3.0}


def test_make_batch_slices_or_repeats_the_example() -> None:
    example = torch.arange(6.0).reshape(3, 2)
    assert torch.equal(make_batch(example, 2), example[:2])
    assert make_batch(example, 7)[:, 0].tolist() == [0, 2, 4, 0, 2, 4, 0]


def test_bad_arguments_raise_latency_errors() -> None:
    model, x = mlp(8), torch.randn(2, 256)
    assert issubclass(LatencyError, ZigpruneError)
    with pytest.raises(LatencyError, match=r"batch_sizes must be positive integers, got \(1, 0\)"):
        measure(model, x, batch_sizes=(1, 0))
    with pytest.raises(LatencyError, match="one non-empty batch"):
        measure(model, torch.randn(0, 256))
    with pytest.raises(LatencyError, match="repeats >= 1"):
        measure(model, x, repeats=0)
    with pytest.raises(LatencyError, match="threads must be a positive integer"):
        measure(model, x, threads=0)
    with pytest.raises(LatencyError, match="unknown backend 'tvm'; valid names: onnx, torch"):
        compare(model, model, x, backend="tvm")
    with pytest.raises(LatencyError, match=r"the torch backend times nn\.Modules, got str"):
        compare("a.onnx", model, x)


def write_onnx_mlp(path: Path, width: int, batch: int | str = "batch") -> Path:
    """A 16 -> width -> 4 ReLU MLP as an ONNX file (built with onnx.helper: fast and exporter-free)."""
    onnx = pytest.importorskip("onnx")
    from onnx import TensorProto, helper, numpy_helper

    torch.manual_seed(0)
    weights = {
        "w1": torch.randn(16, width),
        "b1": torch.randn(width),
        "w2": torch.randn(width, 4),
        "b2": torch.randn(4),
    }
    nodes = [
        helper.make_node("Gemm", ["x", "w1", "b1"], ["h"]),
        helper.make_node("Relu", ["h"], ["r"]),
        helper.make_node("Gemm", ["r", "w2", "b2"], ["y"]),
    ]
    graph = helper.make_graph(
        nodes,
        "mlp",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [batch, 16])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [batch, 4])],
        [numpy_helper.from_array(w.numpy(), name) for name, w in weights.items()],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, str(path))
    return path


def test_measure_onnx_times_each_batch_size(tmp_path: Path) -> None:
    pytest.importorskip("onnxruntime")
    path = write_onnx_mlp(tmp_path / "mlp.onnx", 32)
    results = measure_onnx(path, torch.randn(2, 16), batch_sizes=(1, 5), **FAST)
    assert [(r.backend, r.batch) for r in results] == [("onnxruntime", 1), ("onnxruntime", 5)]
    assert all(0 < r.p10_ms <= r.median_ms <= r.p90_ms < 1000 for r in results)
    wide = write_onnx_mlp(tmp_path / "wide.onnx", 2048)
    result = compare(
        wide, path, torch.randn(4, 16), backend="onnx", batch_sizes=(64,), repeats=20, min_seconds=0.1
    )
    assert result.speedup[64] > 1.3


def test_onnx_errors_say_what_to_do(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("onnxruntime")
    fixed = write_onnx_mlp(tmp_path / "fixed.onnx", 8, batch=2)
    assert measure_onnx(fixed, torch.randn(2, 16), batch_sizes=(2,), **FAST)[0].batch == 2
    with pytest.raises(
        LatencyError, match=r"fixed batch size of 2, so batch 1 cannot run.*batch_sizes=\(2,\)"
    ):
        measure_onnx(fixed, torch.randn(2, 16))
    with pytest.raises(LatencyError, match="no ONNX model at"):
        measure_onnx(tmp_path / "missing.onnx", torch.randn(2, 16))
    monkeypatch.setitem(sys.modules, "onnxruntime", None)
    with pytest.raises(LatencyError, match=r"pip install 'zigprune\[onnx\]'"):
        measure_onnx(fixed, torch.randn(2, 16))


def test_fastest_ms_takes_the_fastest_call_and_restores_threads() -> None:
    durations = iter([0.05, 0.03, 0.002, 0.02])
    calls = []

    def call() -> None:
        calls.append(torch.is_inference_mode_enabled())
        time.sleep(next(durations))

    before = torch.get_num_threads()
    ms = fastest_ms(call, repeats=3, threads=1)
    assert len(calls) == 4 and all(calls), "one warm-up, then three timed calls, without autograd"
    assert 2 <= ms < 20, "the 2 ms call: not the 50 ms warm-up, nor the 30 and 20 ms ones"
    assert torch.get_num_threads() == before


def test_make_batch_builds_every_batched_input_with_the_same_rows() -> None:
    ids, mask = torch.tensor([[5, 6, 7], [8, 9, 10]]), torch.tensor([[1, 1, 1], [1, 1, 0]])
    scale = torch.tensor([0.5, 2.0, 3.0])
    batch = make_batch({"input_ids": ids, "attention_mask": mask, "scale": scale, "flag": True}, 5)
    assert batch["input_ids"][:, 0].tolist() == [5, 8, 5, 8, 5] and batch["input_ids"].dtype == torch.int64
    assert torch.equal(batch["attention_mask"], mask[[0, 1, 0, 1, 0]])
    assert batch["scale"] is scale and batch["flag"] is True, "inputs without the batch dim are kept"
    first, second = make_batch((torch.arange(4.0).reshape(2, 2), ids), 1)
    assert first.tolist() == [[0.0, 1.0]] and second.tolist() == [[5, 6, 7]]


class Recorder(nn.Module):
    """Records the (input_ids, attention_mask) rows the wrapped Hugging Face model is called with."""

    def __init__(self, model: nn.Module, log: list) -> None:
        super().__init__()
        self.model, self.log = model, log

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, **kwargs: object) -> object:
        self.log.append((input_ids, attention_mask))
        return self.model(input_ids=input_ids, attention_mask=attention_mask, **kwargs)


def test_hugging_face_models_are_timed_on_keyword_inputs() -> None:
    from hf_zoo import bert_qa

    model, example = bert_qa()
    example.pop("token_type_ids")
    log: list = []
    result = compare(Recorder(model, log), model, example, batch_sizes=(1, 64), **FAST)
    assert set(result.speedup) == {1, 64}
    assert {ids.shape for ids, _ in log} == {(1, 8), (64, 8)}
    pairs = {(tuple(i.tolist()), tuple(m.tolist())) for ids, mask in log for i, m in zip(ids, mask)}
    expected = {(tuple(i.tolist()), tuple(m.tolist())) for i, m in zip(*example.values())}
    assert pairs == expected, "every timed row is an example row, ids still paired with their mask"


def test_onnx_latency_feeds_every_named_input(tmp_path: Path) -> None:
    pytest.importorskip("onnxruntime")
    import zigprune as zp
    from hf_zoo import bert_qa

    model, example = bert_qa()
    path = zp.export_onnx(model, example, tmp_path / "bert.onnx", check=False)
    results = measure_onnx(path, example, batch_sizes=(1, 64), **FAST)
    assert [(r.backend, r.batch) for r in results] == [("onnxruntime", 1), ("onnxruntime", 64)]
    longer = {k: v.repeat(1, 2) for k, v in example.items()}
    assert compare(path, path, longer, backend="onnx", batch_sizes=(3,), **FAST).speedup[3] > 0


def test_onnx_latency_says_which_input_does_not_fit(tmp_path: Path) -> None:
    pytest.importorskip("onnxruntime")
    path = write_onnx_mlp(tmp_path / "mlp.onnx", 8)
    with pytest.raises(
        LatencyError, match=r"input 'x' of .* has a fixed size of 16 on axis 1, but the example's is 15"
    ):
        measure_onnx(path, torch.randn(2, 15))
    with pytest.raises(
        LatencyError, match=r"takes the inputs x, but the example gives a, b; pass the example"
    ):
        measure_onnx(path, {"a": torch.randn(2, 16), "b": torch.randn(2, 16)})
    with pytest.raises(LatencyError, match=r"example must be a Tensor, a tuple of positional .* not str"):
        measure(mlp(8), "a sentence")
