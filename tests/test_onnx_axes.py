"""ONNX export leaves dynamic what varies in use: the batch, and the sequence of token inputs."""

from __future__ import annotations

import logging
from pathlib import Path

import onnxruntime
import pytest
import torch
from torch import nn

import zigprune as zp
from hf_zoo import SEQ, VOCAB, bert_qa
from zigprune.errors import ExportError


def session(path: Path) -> onnxruntime.InferenceSession:
    return onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])


def text_batch(batch: int, sequence: int) -> dict[str, torch.Tensor]:
    """BERT inputs of another shape than the example's, the last sequence padded."""
    g = torch.Generator().manual_seed(1)
    mask = torch.ones(batch, sequence, dtype=torch.long)
    mask[-1, -3:] = 0
    types = torch.zeros(batch, sequence, dtype=torch.long)
    types[:, sequence // 2 :] = 1
    ids = torch.randint(3, VOCAB, (batch, sequence), generator=g)
    return {"input_ids": ids, "attention_mask": mask, "token_type_ids": types}


def assert_runs_like_torch(path: Path, model: nn.Module, inputs: dict[str, torch.Tensor]) -> None:
    got = session(path).run(None, {k: v.numpy() for k, v in inputs.items()})
    with torch.no_grad():
        out = model(**inputs)
    reference = [out.start_logits, out.end_logits]
    assert [g.shape for g in got] == [tuple(r.shape) for r in reference]
    for g, r in zip(got, reference):
        assert (torch.from_numpy(g) - r).abs().max().item() <= 1e-4


def test_a_bert_exported_at_sequence_8_runs_at_other_batches_and_lengths(tmp_path: Path) -> None:
    model, example = bert_qa()
    assert tuple(example["input_ids"].shape) == (2, SEQ)
    path = zp.export_onnx(model, example, tmp_path / "dense.onnx")
    shapes = {i.name: i.shape for i in session(path).get_inputs()}
    assert shapes == {name: ["batch", "sequence"] for name in example}
    assert_runs_like_torch(path, model, text_batch(3, 13))

    space = zp.analyze(model, example)
    space.zero_(range(0, space.num_groups, 3))
    slim = space.construct()
    assert sum(p.numel() for p in slim.parameters()) < sum(p.numel() for p in model.parameters())
    slim_path = zp.export_onnx(slim, example, tmp_path / "slim.onnx")
    assert_runs_like_torch(slim_path, slim, text_batch(3, 13))
    assert_runs_like_torch(slim_path, model, text_batch(1, 5))


def conv_net() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(1), nn.Linear(4, 2)
    ).eval()


def test_images_keep_their_size_unless_dynamic_axes_free_it(tmp_path: Path) -> None:
    model, x = conv_net(), torch.randn(2, 3, 8, 8)
    fixed = zp.export_onnx(model, x, tmp_path / "fixed.onnx")
    assert session(fixed).get_inputs()[0].shape == ["batch", 3, 8, 8]
    free = zp.export_onnx(
        model, x, tmp_path / "free.onnx", dynamic_axes={"input": {0: "batch", 2: "height", 3: "width"}}
    )
    assert session(free).get_inputs()[0].shape == ["batch", 3, "height", "width"]
    y = torch.randn(3, 3, 10, 12)
    (got,) = session(free).run(None, {"input": y.numpy()})
    with torch.no_grad():
        assert (torch.from_numpy(got) - model(y)).abs().max().item() <= 1e-4


class Categorical(nn.Module):
    """Three categorical features as integer columns, embedded and flattened: the width is fixed."""

    def __init__(self) -> None:
        super().__init__()
        self.embed, self.head = nn.Embedding(10, 4), nn.Linear(12, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.embed(x).flatten(1))


def test_an_integer_input_whose_width_the_model_needs_stays_fixed(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    torch.manual_seed(0)
    model, x = Categorical().eval(), torch.randint(10, (2, 3))
    with caplog.at_level(logging.INFO, logger="zigprune.io"):
        path = zp.export_onnx(model, x, tmp_path / "tabular.onnx")
    assert session(path).get_inputs()[0].shape == ["batch", 3]
    assert "axis 1 (sequence) of input 'input' stays fixed at 3" in caplog.text
    fixed = zp.export_onnx(model, x, tmp_path / "batch.onnx", dynamic_axes={"input": {0: "batch"}})
    assert session(fixed).get_inputs()[0].shape == ["batch", 3]


def test_bad_dynamic_axes_say_what_to_give(tmp_path: Path) -> None:
    model, x = conv_net(), torch.randn(2, 3, 8, 8)
    with pytest.raises(
        ExportError, match=r"names 'pixels', which is not a tensor input; the inputs are input"
    ):
        zp.export_onnx(model, x, tmp_path / "a.onnx", dynamic_axes={"pixels": {0: "batch"}})
    with pytest.raises(ExportError, match=r"has axis 4, but input has 4 axes; give axes from 0 to 3"):
        zp.export_onnx(model, x, tmp_path / "a.onnx", dynamic_axes={"input": {4: "depth"}})
    with pytest.raises(ExportError, match=r"is 'my height'; name each dimension with a Python identifier"):
        zp.export_onnx(model, x, tmp_path / "a.onnx", dynamic_axes={"input": {2: "my height"}})
    assert not list(tmp_path.iterdir())
