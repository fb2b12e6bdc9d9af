"""``zigprune prune`` end to end: a dense model saved by ``compress --save-dense`` pruned from calibration
images, a tiny Hugging Face encoder pruned from text lines, the run folder read back, and bad input."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from cli_errors import error_of
from conftest import FAST, bert

import zigprune as zp
from zigprune.cli import main
from zigprune.data.text import batches, load_text
from zigprune.io.weights import load_weights, save_weights
from zigprune.measure.fidelity import embeddings, fidelity
from zigprune.models import create

DIGITS = ["prune", "--model", "digits_cnn", "--data", "digits"]


def test_save_dense_writes_the_trained_baseline(dense_run: Path) -> None:
    model = create("digits_cnn", in_channels=1, num_classes=10)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    load_weights(model, dense_run / "dense.safetensors")
    changed = [k for k, v in model.state_dict().items() if not torch.equal(v, before[k])]
    assert changed, "the file holds the trained weights, not the factory's"
    metrics = json.loads((dense_run / "metrics.json").read_text())
    dense_accuracy = metrics["dense"]["accuracy"]
    from zigprune import data
    from zigprune.training import evaluate

    test = data.load("digits").test
    assert evaluate(model, test).accuracy == pytest.approx(dense_accuracy)


def test_compress_starts_from_weights(dense_run: Path, tmp_path: Path) -> None:
    out = tmp_path / "warm"
    argv = [
        "compress",
        "--subset",
        "300",
        "--epochs",
        "1",
        "--batch-size",
        "50",
        "--no-baseline",
        "--out",
        str(out),
    ]
    assert (
        main([*argv, "--weights", str(dense_run / "dense.safetensors"), "--target", "macs=1.2x", *FAST]) == 0
    )
    cold = tmp_path / "cold"
    assert main([*argv[:-1], str(cold), "--target", "macs=1.2x", *FAST]) == 0
    warm_acc = json.loads((out / "metrics.json").read_text())["slim"]["accuracy"]
    cold_acc = json.loads((cold / "metrics.json").read_text())["slim"]["accuracy"]
    assert json.loads((out / "run.json").read_text())["weights"].endswith("dense.safetensors")
    assert warm_acc > cold_acc


def test_prune_cli_on_saved_dense_weights(dense_run: Path, tmp_path: Path, capsys) -> None:
    out = tmp_path / "pruned"
    argv = [*DIGITS, "--weights", str(dense_run / "dense.safetensors")]
    assert main([*argv, "--target", "macs=1.5x", "--calibration", "128", "--out", str(out), *FAST]) == 0
    printed = capsys.readouterr().out
    assert "| MACs" in printed and "fewer" in printed
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["kind"] == "prune" and metrics["reduction"]["macs"] >= 1.5
    dense = json.loads((dense_run / "metrics.json").read_text())["dense"]["accuracy"]
    assert metrics["dense"]["accuracy"] == pytest.approx(dense)
    assert metrics["slim"]["accuracy"] > dense - 0.05, "OBS keeps most of what the dense model knew"
    slim = zp.load(out)
    x = torch.randn(4, 1, 8, 8)
    assert slim(x).shape == (4, 10)
    assert main(["eval", str(out)]) == 0
    assert f"accuracy {metrics['slim']['accuracy']:.2%}" in capsys.readouterr().out
    assert main(["report", str(out)]) == 0
    report = (out / "report.md").read_text()
    assert "post-training" in report.lower() and "obs" in report


def test_prune_cli_errors_change_nothing(dense_run: Path, tmp_path: Path, capsys) -> None:
    out = tmp_path / "never"
    base = [*DIGITS, "--calibration", "32", "--out", str(out), *FAST]
    assert "--weights FILE is needed" in error_of(capsys, base)
    assert not out.exists()
    junk = tmp_path / "junk.safetensors"
    junk.write_bytes(b"not a safetensors file")
    assert "not a readable .safetensors" in error_of(capsys, [*base, "--weights", str(junk)])
    wrong = tmp_path / "wrong.safetensors"
    save_weights(torch.nn.Linear(3, 2), wrong)
    assert "do not fit the model" in error_of(capsys, [*base, "--weights", str(wrong)])
    err = error_of(capsys, [*base, "--weights", str(dense_run / "dense.safetensors"), "--round-to", "256"])
    assert "at most" in err
    assert "text data" in error_of(capsys, [*base, "--data", "text:python-docs"])
    assert not out.exists()


def test_prune_cli_bad_numbers(capsys) -> None:
    for flag, value in (("--calibration", "0"), ("--round-to", "-1"), ("--cost-power", "2")):
        err = error_of(capsys, ["prune", flag, value, *FAST])
        assert flag in err


# --- text -------------------------------------------------------------------------------------------


def test_text_data_split_and_errors(text_file: Path, tmp_path: Path) -> None:
    text = load_text(f"text:{text_file}")
    assert len(text.train) == 64 and len(text.test) == 16
    docs = load_text("text:python-docs")
    assert len(docs.train) > 1000 and len(docs.test) > 200
    assert all(len(line.split()) >= 8 for line in docs.train[:50])
    with pytest.raises(zp.errors.DataError, match="does not exist"):
        load_text(f"text:{tmp_path / 'missing.txt'}")
    short = tmp_path / "short.txt"
    short.write_text("too short\n")
    with pytest.raises(zp.errors.DataError, match="two or more"):
        load_text(f"text:{short}")
    with pytest.raises(zp.errors.DataError, match="give a text source"):
        load_text("text:")


def test_fidelity_is_one_for_the_same_model_and_lower_for_another(tiny_bert: Path, text_file: Path) -> None:
    transformers = pytest.importorskip("transformers")
    tok = transformers.AutoTokenizer.from_pretrained(tiny_bert)
    model = transformers.BertModel.from_pretrained(tiny_bert).eval()
    held_out = batches(tok, load_text(f"text:{text_file}").test, batch_size=5, max_length=16)
    assert [b["input_ids"].shape[0] for b in held_out] == [5, 5, 5, 1]
    reference = embeddings(model, held_out)
    assert reference.shape == (16, 32)
    assert torch.allclose(reference.norm(dim=-1), torch.ones(16))
    same = fidelity(reference, model, held_out)
    assert same.cosine == pytest.approx(1.0, abs=1e-5) and same.retrieval == 1.0 and same.samples == 16
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p))
    other = fidelity(reference, model, held_out)
    assert other.cosine < 0.9


def test_prune_cli_on_text(tiny_bert: Path, text_file: Path, tmp_path: Path, capsys) -> None:
    argv = ["prune", "--model", f"hf:{tiny_bert}", "--data", f"text:{text_file}", "--calibration", "32"]
    argv += ["--batch-size", "8", "--round-to", "1", "--target", "macs=1.3x", *FAST]
    cosine = {}
    for method in ("obs", "magnitude"):
        assert main([*argv, "--method", method, "--out", str(tmp_path / method)]) == 0
        metrics = json.loads((tmp_path / method / "metrics.json").read_text())
        assert metrics["reduction"]["macs"] >= 1.3
        assert metrics["dense"]["cosine"] == pytest.approx(1.0, abs=1e-5)
        cosine[method] = metrics["slim"]["cosine"]
    assert 0.9 < cosine["obs"] < 1.0 and cosine["magnitude"] < cosine["obs"] - 0.1, cosine
    out = tmp_path / "obs"
    capsys.readouterr()
    assert main(["eval", str(out)]) == 0
    assert f"cosine {cosine['obs']:.4f} to the dense model" in capsys.readouterr().out
    slim = zp.load(out)
    ids = torch.tensor([[2, 7, 8, 9, 3]])
    assert slim(input_ids=ids).last_hidden_state.shape == (1, 5, 32)


def test_text_data_needs_a_tokenizer(tmp_path: Path, text_file: Path, capsys) -> None:
    pytest.importorskip("transformers")
    folder = tmp_path / "no-tokenizer"
    sizes = {"hidden_size": 16, "num_hidden_layers": 1, "num_attention_heads": 2, "intermediate_size": 32}
    bert(vocab_size=30, **sizes).save_pretrained(folder)
    capsys.readouterr()
    out = tmp_path / "never"
    argv = ["prune", "--model", f"hf:{folder}", "--data", f"text:{text_file}", "--out", str(out), *FAST]
    assert "has no tokenizer" in error_of(capsys, argv)
    assert not out.exists()
