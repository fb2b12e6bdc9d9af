"""What a new user hit (issue 27 §2, §3): advice that is true, targets in MACs, the data a run used and
was measured on, decoders measured as language models, and warnings for weights and data that do not
belong together."""

from __future__ import annotations

import importlib
import json
from pathlib import Path

import pytest
import torch
from cli_errors import error_of
from conftest import FAST

from zigprune.cli import main
from zigprune.core.selection import Target
from zigprune.data.text import batches, load_text
from zigprune.deploy.int8 import Artefact, Tried, _verdict
from zigprune.io.weights import save_weights
from zigprune.measure.fidelity import follows, is_causal_lm
from zigprune.models import create
from zigprune.runs.measurement import _timing_note
from zigprune.runs.prune_job import PruneConfig

DIGITS = ["prune", "--model", "digits_cnn", "--data", "digits", "--calibration", "64"]


def test_ctrl_c_in_prune_gives_advice_that_works(
    dense_run: Path, tmp_path: Path, capsys, monkeypatch
) -> None:
    job = importlib.import_module("zigprune.runs.prune_job")
    out = tmp_path / "run"
    argv = [*DIGITS, "--weights", str(dense_run / "dense.safetensors"), "--out", str(out), *FAST]

    def interrupted(*args: object, **kwargs: object) -> None:
        raise KeyboardInterrupt

    with monkeypatch.context() as patch:
        patch.setattr(job, "prune", interrupted)
        assert main(argv) == 130
    said = capsys.readouterr().err.strip().splitlines()[-1]
    assert said == f"zigprune: Ctrl-C: stopped prune; nothing was written to {out}; run the command again"
    assert not out.exists()
    with monkeypatch.context() as patch:
        patch.setattr(job, "save_hf_folder", interrupted)
        assert main(argv) == 130
    said = capsys.readouterr().err.strip().splitlines()[-1]
    assert said.endswith("; run the command again with --force"), said
    again = error_of(capsys, argv)
    assert "unfinished run" in again and "--resume" not in again and "--force" in again
    assert main([*argv, "--force"]) == 0


def test_a_bare_target_counts_macs_everywhere(capsys) -> None:
    assert Target.parse("1.5x").by == "macs" and Target.parse("0.4").by == "macs"
    assert Target.parse("groups=0.4").by == "groups"
    assert PruneConfig(target="1.5x").target == "1.5x"
    err = error_of(capsys, [*DIGITS, "--target", "1.5"])
    assert "1.5x or 0.4 (MACs" in err


def test_a_text_file_without_its_prefix_is_named(tmp_path: Path, capsys) -> None:
    lines = tmp_path / "general.txt"
    lines.write_text("one line of text that is long enough to count\n" * 4)
    err = error_of(capsys, ["prune", "--model", "resnet20", "--data", str(lines), *FAST])
    assert "text:FILE" in err and f"text:{lines}" in err


def test_weights_trained_on_other_data_are_flagged(dense_run: Path, tmp_path: Path, capsys) -> None:
    """The dense run trained on digits (8x8); a file that says it was trained on 28x28 images warns, and
    so does a dense model near chance on the data given."""
    model = create("digits_cnn", in_channels=1, num_classes=10)
    weights = tmp_path / "fashion.safetensors"
    save_weights(model, weights, {"data": "fashion-mnist", "input_shape": "1,28,28"})
    argv = [*DIGITS, "--weights", str(weights), "--out", str(tmp_path / "run"), *FAST]
    assert main(argv) == 0
    err = capsys.readouterr().err
    assert "was trained on fashion-mnist (1x28x28 inputs)" in err and "--data digits gives 1x8x8" in err
    assert "near chance" in err
    recorded = json.loads((dense_run / "metrics.json").read_text())["config"]["data"]
    good = [*DIGITS, "--weights", str(dense_run / "dense.safetensors"), "--out", str(tmp_path / "ok"), *FAST]
    assert main(good) == 0 and recorded == "digits"
    assert "warning" not in capsys.readouterr().err


def test_long_stages_say_what_they_do_and_how_to_skip_them() -> None:
    note = _timing_note(PruneConfig(), onnx=True)
    assert "ONNX Runtime" in note and "--no-latency skips this" in note
    assert _timing_note(PruneConfig(latency=False), onnx=True) is None


def _artefacts(int8_cosine: float, int8_ms: float) -> list[Artefact]:
    def one(name: str, file: str | None, cosine: float, ms: float) -> Artefact:
        return Artefact(name, file, 1, {"cosine": cosine}, [{"batch": 64, "median_ms": ms}], {"64": 1.0})

    return [one("dense fp32", None, 1.0, 30), one("slim fp32", "model.onnx", 0.93, 20),
            one("slim int8", "model.int8.onnx", int8_cosine, int8_ms)]  # fmt: skip


def test_int8_verdict_says_what_each_file_is_for(capsys, tmp_path: Path) -> None:
    lost = Tried("dynamic", {"cosine": 0.924}, 7.0, 20.0, kept_quality=False)
    shipped, line = _verdict(_artefacts(0.924, 7.0), lost, 64, "cosine", 0.005)
    assert shipped == "model.onnx" and "loses 0.006" in line and "2.86x faster" in line
    assert "model.int8.onnx holds that best int8 model, for a looser --int8-tolerance" in line
    kept = Tried("dynamic", {"cosine": 0.924}, 7.0, 20.0, kept_quality=True)
    shipped, line = _verdict(_artefacts(0.924, 7.0), kept, 64, "cosine", 0.01)
    assert shipped == "model.int8.onnx" and "model.onnx is the fp32 reference" in line
    err = error_of(capsys, ["export", str(tmp_path), "--int8", "--int8-tolerance", "2"])
    assert "--int8-tolerance is 2.0" in err


def test_text_runs_report_what_they_used_and_take_an_evaluation_file(
    tiny_bert: Path, text_file: Path, tmp_path: Path, capsys
) -> None:
    everyday = tmp_path / "everyday.txt"
    everyday.write_text(
        "\n".join(f"the model is a layer of the group with a value {i} and a head" for i in range(9))
    )
    out = tmp_path / "run"
    argv = ["prune", "--model", f"hf:{tiny_bert}", "--data", f"text:{text_file}", "--calibration", "512"]
    argv += ["--eval-data", f"text:{everyday}", "--batch-size", "8", "--target", "1.3x", "--round-to", "1"]
    assert main([*argv, "--out", str(out), *FAST]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["calibration"]["samples"] == 64  # the file's 64 training lines, not the 512 asked
    assert metrics["calibration"]["evaluated"] == f"9 lines of text:{everyday}"
    assert metrics["slim"]["held_out"] == 9
    report = (out / "report.md").read_text()
    assert f"64 calibration samples of text:{text_file}, evaluated on 9 lines of text:{everyday}" in report
    assert "domain" in report
    capsys.readouterr()
    assert main(["eval", str(out), "--data", f"text:{everyday}"]) == 0
    assert f"on 9 lines of text:{everyday}" in capsys.readouterr().out
    assert main(["eval", str(out)]) == 0
    assert "on 16 held-out lines" in capsys.readouterr().out
    bad = ["prune", "--data", "digits", "--eval-data", f"text:{everyday}", "--out", str(tmp_path / "x")]
    assert "--eval-data" in error_of(capsys, bad)


def test_decoders_are_measured_by_perplexity_and_next_token_agreement(
    tiny_bert: Path, text_file: Path
) -> None:
    transformers = pytest.importorskip("transformers")
    tok = transformers.AutoTokenizer.from_pretrained(tiny_bert)
    sizes = {"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2, "num_attention_heads": 4}
    config = transformers.LlamaConfig(vocab_size=len(tok), num_key_value_heads=2, **sizes)
    torch.manual_seed(0)
    dense = transformers.LlamaForCausalLM(config).eval()
    assert is_causal_lm(dense) and not is_causal_lm(torch.nn.Linear(2, 2))
    held_out = batches(tok, load_text(f"text:{text_file}").test, batch_size=8, max_length=16)
    quality = follows(dense, held_out)
    same = quality(dense)
    assert same["next_token"] == 1.0 and 1 < same["perplexity"] < 2 * len(tok)
    with torch.no_grad():
        dense.model.layers[0].mlp.down_proj.weight.mul_(20)
    other = quality(dense)
    assert other["next_token"] < 0.9 and other["perplexity"] != same["perplexity"]


def test_widths_plot_shows_shares_with_readable_labels() -> None:
    from matplotlib.figure import Figure

    from zigprune.runs.report import RunData, _plot_widths, _short

    name = "encoder.layer.0.attention.self.query (Linear, +2)"
    assert _short(name) == "…layer.0.attention.self.query (Linear, +2)" and _short("conv1") == "conv1"
    rows = [{"family": name, "before": 12, "after": 9}, {"family": "mlp", "before": 1536, "after": 768}]
    figure = Figure()
    assert _plot_widths(figure, RunData({}, {}, None, rows))
    (ax,) = figure.axes
    assert [round(p.get_width(), 2) for p in ax.patches[2:]] == [0.75, 0.5]  # shares, not channel counts
    assert [t.get_text() for t in ax.get_yticklabels()] == [_short(name), "mlp"]
