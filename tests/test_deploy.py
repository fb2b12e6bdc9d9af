"""Int8 ONNX files and weight sharing (issue 15): behaviour, storage and the errors a user can hit."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from torch import nn

import zigprune as zp
from zigprune.cli import main
from zigprune.deploy import SCHEMES, CalibrationReader, OnnxModule, Scheme, finetune_centroids
from zigprune.deploy.huffman import huffman_bits
from zigprune.deploy.shared_file import pack, unpack
from zigprune.errors import LoadError, QuantizeError
from zigprune.models import create

pytest.importorskip("onnxruntime")


def _cnn() -> nn.Module:
    torch.manual_seed(0)
    return create("digits_cnn", in_channels=1, num_classes=10).eval()


def _batches(n: int, size: int = 16, seed: int = 1) -> list[torch.Tensor]:
    """Noise at a brightness and contrast of its own per image: plain noise averages out in the pooled
    features, and every input would look alike to the classifier (int8 then only has rounding to show)."""
    generator = torch.Generator().manual_seed(seed)
    return [
        torch.randn(size, 1, 8, 8, generator=generator) * 2 * torch.rand(size, 1, 1, 1, generator=generator)
        + torch.randn(size, 1, 1, 1, generator=generator)
        for _ in range(n)
    ]


@pytest.fixture(scope="module")
def slim_onnx(tmp_path_factory: pytest.TempPathFactory) -> tuple[nn.Module, Path]:
    model = _cnn()
    space = zp.analyze(model, torch.randn(2, 1, 8, 8))
    space.zero_(torch.arange(0, space.num_groups, 3))
    slim = space.construct()
    path = tmp_path_factory.mktemp("int8") / "slim.onnx"
    return slim, zp.export_onnx(slim, torch.randn(4, 1, 8, 8), path)


@pytest.mark.parametrize(
    "scheme", [Scheme(), Scheme("qoperator"), Scheme(per_channel=False), Scheme("dynamic")], ids=str
)
def test_int8_file_runs_in_onnxruntime_and_agrees_with_fp32(slim_onnx, tmp_path, scheme):
    slim, path = slim_onnx
    out = zp.quantize_onnx(path, _batches(8), tmp_path / "q.onnx", scheme=scheme)
    assert out.stat().st_size < path.stat().st_size / 2
    x = torch.cat(_batches(8, seed=7))
    with torch.no_grad():
        agree = (OnnxModule(out)(x).argmax(1) == slim(x).argmax(1)).float().mean().item()
    assert agree >= 0.9, f"int8 agrees with fp32 on {agree:.0%} of inputs"


def test_int8_of_a_text_encoder_follows_fp32_and_survives_failed_symbolic_shapes(
    tmp_path, monkeypatch, capsys
):
    pytest.importorskip("transformers")
    from onnxruntime.quantization import shape_inference

    from hf_zoo import bert_qa

    model, example = bert_qa()
    path = zp.export_onnx(model, example, tmp_path / "bert.onnx")
    real = shape_inference.quant_pre_process

    def symbolic_fails(*args, skip_symbolic_shape=False, **kwargs):
        if not skip_symbolic_shape:
            raise RuntimeError("Incomplete symbolic shape inference")
        return real(*args, skip_symbolic_shape=True, **kwargs)

    monkeypatch.setattr(shape_inference, "quant_pre_process", symbolic_fails)
    with torch.no_grad():
        want = model(**example).start_logits
    for scheme in (Scheme(), Scheme("dynamic")):
        out = zp.quantize_onnx(path, [example] * 2, tmp_path / f"{scheme.format}.onnx", scheme=scheme)
        got = OnnxModule(out)(**example)[0]
        assert got.shape == want.shape and torch.isfinite(got).all()
    cosine = torch.nn.functional.cosine_similarity(got.flatten(), want.flatten(), dim=0).item()
    assert cosine > 0.95, f"dynamic int8 start logits cosine {cosine:.3f}"
    assert capsys.readouterr().out == ""  # ORT's shape dumps do not reach the user


def test_calibration_reader_feeds_exactly_the_batches_given(slim_onnx):
    _, path = slim_onnx
    batches = _batches(3)
    reader = CalibrationReader(path, OnnxModule(path).takes, batches)
    fed = [reader.get_next() for _ in range(4)]
    assert fed[3] is None and reader.count == 3
    for feed, batch in zip(fed, batches):
        assert list(feed) == ["input"]
        assert torch.equal(torch.from_numpy(feed["input"]), batch)


def test_quantize_refuses_bad_input_and_writes_nothing(slim_onnx, tmp_path):
    _, path = slim_onnx
    out = tmp_path / "q.onnx"
    with pytest.raises(QuantizeError, match="calibration is empty"):
        zp.quantize_onnx(path, [], out)
    with pytest.raises(QuantizeError, match="NaN or Inf"):
        zp.quantize_onnx(path, [torch.full((2, 1, 8, 8), float("nan"))], out)
    with pytest.raises(QuantizeError, match="does not fit"):
        zp.quantize_onnx(path, [{"ids": torch.zeros(2, 3)}, {"a": torch.zeros(1), "b": torch.zeros(1)}], out)
    corrupt = tmp_path / "corrupt.onnx"
    corrupt.write_bytes(b"not an onnx model")
    with pytest.raises(QuantizeError, match="not an ONNX model"):
        zp.quantize_onnx(corrupt, _batches(1), out)
    with pytest.raises(QuantizeError, match="unknown int8 format"):
        Scheme("int4")
    assert not out.exists() and not list(tmp_path.glob(".q.onnx*"))


def test_weight_sharing_keeps_at_most_2_to_the_bits_values_and_exact_zeros():
    model = _cnn()
    with torch.no_grad():
        model[0].weight[:3] = 0  # a zeroed group
    sharing = zp.share_weights(model, bits=3)
    for name, module in model.named_modules():
        if isinstance(module, (nn.Conv2d, nn.Linear)):
            assert module.weight.unique().numel() <= 8, name
            assert torch.equal(module.weight, sharing.layers[name].values())
    assert (model[0].weight[:3] == 0).all()
    sizes = sharing.sizes()
    assert sizes["packed_bytes"] < sizes["fp32_bytes"] / 9  # 3-bit codes instead of 32-bit floats
    assert sizes["huffman_bytes"] <= sizes["packed_bytes"] + 8 * len(sharing.layers)


def test_weight_sharing_is_reproducible_with_a_seed():
    def shared(seed: int) -> list[torch.Tensor]:
        model = _cnn()
        zp.share_weights(model, bits=2, init="random", seed=seed)
        return [p.detach().clone() for p in model.parameters()]

    assert all(torch.equal(a, b) for a, b in zip(shared(3), shared(3)))
    assert not all(torch.equal(a, b) for a, b in zip(shared(3), shared(4)))
    with pytest.raises(QuantizeError, match="1 to 8 bits"):
        zp.share_weights(_cnn(), bits=9)


def test_kmeans_finds_the_clusters_of_separated_values():
    layer = nn.Linear(100, 1, bias=False)
    with torch.no_grad():
        layer.weight.copy_(torch.tensor([-1.0, 0.5, 2.0, 3.0]).repeat(25) + torch.randn(100) * 0.01)
    sharing = zp.share_weights(nn.Sequential(layer), bits=2)
    book = sharing.layers["0"].codebook
    assert torch.allclose(book, torch.tensor([-1.0, 0.5, 2.0, 3.0]), atol=0.01)


def test_shared_file_round_trips_smaller_and_refuses_other_files(tmp_path):
    model = _cnn()
    sharing = zp.share_weights(model, bits=4)
    path = zp.save_shared(model, sharing, tmp_path / "m.shared.safetensors")
    fp32 = tmp_path / "m.safetensors"
    from safetensors.torch import save_model

    save_model(model, str(fp32))
    assert path.stat().st_size * 6 < fp32.stat().st_size
    other = _cnn()
    loaded = zp.load_shared(other, path)
    x = torch.randn(4, 1, 8, 8)
    assert torch.equal(other(x), model(x))
    assert loaded.bits == 4 and set(loaded.layers) == set(sharing.layers)
    with pytest.raises(LoadError, match="not a weight-shared model"):
        zp.load_shared(other, fp32)
    (tmp_path / "bad").write_bytes(b"\x00" * 16)
    with pytest.raises(LoadError, match="not a readable"):
        zp.load_shared(other, tmp_path / "bad")


@pytest.mark.parametrize("bits", [1, 3, 4, 8])
def test_codes_pack_and_unpack(bits):
    codes = torch.randint(0, 2**bits, (3, 7))
    packed = pack(codes, bits)
    assert packed.numel() == (codes.numel() * bits + 7) // 8
    assert torch.equal(unpack(packed, bits, codes.numel()).reshape(3, 7), codes)


def test_huffman_bits():
    assert huffman_bits([5, 0, 0]) == 5
    assert huffman_bits([1, 1, 2, 4]) == 14  # codes of length 3, 3, 2, 1
    assert huffman_bits([1, 1]) == 2


def test_centroid_fine_tune_lowers_the_loss_and_keeps_the_sharing():
    torch.manual_seed(0)
    model = _cnn()
    x = torch.randn(64, 1, 8, 8)
    y = model(x).argmax(1).roll(1)  # labels the model gets wrong
    with torch.no_grad():
        model[0].weight[:2] = 0
    sharing = zp.share_weights(model, bits=3)
    losses = finetune_centroids(model, sharing, [(x, y)], epochs=30, lr=1e-2, progress=False)
    assert losses[-1] < losses[0] * 0.9
    for name, layer in sharing.layers.items():
        weight = dict(model.named_modules())[name].weight
        assert torch.equal(weight, layer.values()) and weight.unique().numel() <= 8
    assert (model[0].weight[:2] == 0).all()
    assert all(p.requires_grad for p in model.parameters())  # restored after the fine-tune


FAST = ["--subset", "300", "--epochs", "1", "--no-baseline", "--latency-seconds", "0.05", "--no-progress"]


def test_compress_int8_and_share_bits_write_and_report(tmp_path, capsys):
    out = tmp_path / "run"
    assert (
        main(["compress", *FAST, "--target", "macs=2x", "--int8", "--share-bits", "4", "--out", str(out)])
        == 0
    )
    printed = capsys.readouterr().out
    metrics = json.loads((out / "metrics.json").read_text())
    int8, sharing = metrics["int8"], metrics["sharing"]
    assert [a["name"] for a in int8["artefacts"]] == ["dense fp32", "slim fp32", "slim int8"]
    assert len(int8["tried"]) == len(SCHEMES) and int8["recommended"] in ("model.onnx", "model.int8.onnx")
    assert (out / "model.int8.onnx").is_file() and (out / "model.shared.safetensors").is_file()
    assert sharing["bits"] == 4 and sharing["file_bytes"] * 5 < sharing["fp32_file_bytes"]
    report = (out / "report.md").read_text()
    for text in ("## Int8 (ONNX Runtime)", "## Weight sharing, 4 bits", "recommended file"):
        assert text in report and text in printed
    slim = zp.load(out)
    shared = zp.load(out)
    zp.load_shared(shared, out / "model.shared.safetensors")
    x = torch.randn(3, 1, 8, 8)
    assert not torch.equal(slim(x), shared(x))


def test_export_int8_on_a_run_and_its_errors(tmp_path, capsys, monkeypatch):
    out = tmp_path / "run"
    assert main(["compress", *FAST, "--target", "macs=2x", "--no-latency", "--out", str(out)]) == 0
    capsys.readouterr()
    assert main(["export", str(out), "--int8", "--latency-seconds", "0.05", "--no-progress"]) == 0
    assert "slim int8" in capsys.readouterr().out
    assert "int8" in json.loads((out / "metrics.json").read_text())
    (out / "model.onnx").write_bytes(b"corrupt")
    assert main(["export", str(out), "--int8", "--no-progress"]) == 1
    assert "not an ONNX model" in capsys.readouterr().err
    monkeypatch.setattr("zigprune.runs.config.has_onnx", lambda: False)
    assert main(["export", str(out), "--int8"]) == 2
    assert "pip install 'zigprune[onnx]'" in capsys.readouterr().err


def test_compress_int8_needs_onnx_and_timing(tmp_path, capsys, monkeypatch):
    out = str(tmp_path / "run")
    for flags, message in (
        (["--int8", "--no-onnx"], "drop --no-onnx"),
        (["--int8", "--no-latency"], "drop --no-latency"),
        (["--share-bits", "9"], "1 to 8 bits"),
    ):
        assert main(["compress", *FAST, *flags, "--out", out]) == 2
        assert message in capsys.readouterr().err
    monkeypatch.setattr("zigprune.runs.config.has_onnx", lambda: False)
    assert main(["compress", *FAST, "--int8", "--out", out]) == 2
    assert "pip install 'zigprune[onnx]'" in capsys.readouterr().err
    assert not Path(out).exists()
