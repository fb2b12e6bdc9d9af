"""Train once from a trained model with distillation: the objectives, tokenized text batches, and
``zigprune compress --distill`` on an image checkpoint and on a Hugging Face encoder with text."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from cli_errors import error_of
from conftest import FAST

import zigprune as zp
from zigprune.cli import main
from zigprune.data.text import TokenizedLines
from zigprune.errors import ConfigError
from zigprune.runs.config import Config
from zigprune.training import train
from zigprune.training.objective import Classification, Distillation


def test_distillation_from_itself_leaves_only_the_task_loss() -> None:
    torch.manual_seed(0)
    model = torch.nn.Linear(6, 4)
    x, y = torch.randn(10, 6), torch.randint(4, (10,))
    same = Distillation(copy.deepcopy(model), task_weight=0.25)(model, x, y)
    assert same.loss.item() == pytest.approx(0.25 * F.cross_entropy(model(x), y).item(), rel=1e-5)
    assert same.correct == float((model(x).argmax(1) == y).sum())
    other = torch.nn.Linear(6, 4)
    apart = Distillation(other, labelled=False)(model, x, y)
    assert apart.loss.item() > 0 and apart.correct is None
    assert Distillation(copy.deepcopy(model), labelled=False)(model, x, y).loss.item() == pytest.approx(
        0, abs=1e-6
    )
    assert not any(p.requires_grad for p in other.parameters()), "the teacher is frozen"


def test_distillation_of_hidden_states_pools_over_the_kept_tokens() -> None:
    class Encoder(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.proj = torch.nn.Linear(3, 5)

        def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> tuple[torch.Tensor]:
            return (self.proj(F.one_hot(input_ids, 3).float()),)

    torch.manual_seed(0)
    student, teacher = Encoder(), Encoder()
    mask = torch.tensor([[1, 1, 0], [1, 1, 1]])
    batch = {"input_ids": torch.tensor([[0, 1, 2], [2, 1, 0]]), "attention_mask": mask}
    step = Distillation(teacher, labelled=False)(student, batch, torch.zeros(2, dtype=torch.long))
    pooled = [(m.proj(F.one_hot(batch["input_ids"], 3).float()) * mask[..., None]).sum(1) / mask.sum(1, True)
              for m in (student, teacher)]  # fmt: skip
    assert step.loss.item() == pytest.approx(1 - F.cosine_similarity(*pooled).mean().item(), rel=1e-5)


def test_training_with_an_unlabelled_objective_records_no_accuracy() -> None:
    torch.manual_seed(0)
    model = torch.nn.Linear(4, 3)
    data = torch.utils.data.TensorDataset(torch.randn(32, 4), torch.zeros(32, dtype=torch.long))
    objective = Distillation(torch.nn.Linear(4, 3), labelled=False)
    history = train(model, torch.optim.SGD(model.parameters(), lr=0.5), data, epochs=2, batch_size=8,
                    objective=objective, progress=False)  # fmt: skip
    assert history.steps and all("train_accuracy" not in row for row in history.steps + history.epochs)
    assert history.epochs[-1]["train_loss"] < history.epochs[0]["train_loss"]
    labelled = train(model, torch.optim.SGD(model.parameters(), lr=0.1), data, epochs=1, batch_size=8,
                     objective=Classification(), progress=False)  # fmt: skip
    assert 0 <= labelled.epochs[0]["train_accuracy"] <= 1


def test_tokenized_lines_cut_each_batch_to_its_longest_line(tiny_bert: Path) -> None:
    transformers = pytest.importorskip("transformers")
    tok = transformers.AutoTokenizer.from_pretrained(tiny_bert)
    lines = TokenizedLines(tok, ["the model", "the model of a layer with a head", "a"], max_length=32)
    batch, labels = lines.take(torch.tensor([0, 2]))
    assert batch["input_ids"].shape == (2, 4) and labels.tolist() == [0, 0]
    full, _ = lines.take(torch.tensor([1]))
    assert full["attention_mask"].all() and full["input_ids"].shape[1] == 10
    assert [b["input_ids"].shape[0] for b in lines.batches(2)] == [2, 1]
    tok.padding_side = "left"
    left = TokenizedLines(tok, ["the model", "the model of a layer"], max_length=32).take(torch.tensor([0]))[
        0
    ]
    assert left["attention_mask"].tolist() == [[1, 1, 1, 1]]


def test_compress_distill_on_text(tiny_bert: Path, text_file: Path, tmp_path: Path, capsys) -> None:
    out = tmp_path / "run"
    argv = ["compress", "--model", f"hf:{tiny_bert}", "--data", f"text:{text_file}", "--distill"]
    argv += [
        "--target",
        "macs=1.3x",
        "--round-to",
        "1",
        "--epochs",
        "3",
        "--batch-size",
        "8",
        "--out",
        str(out),
    ]
    assert main([*argv, *FAST]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    config = metrics["config"]
    assert (config["variant"], config["lr"], config["baseline"]) == ("adamw", 3e-4, False)
    assert metrics["reduction"]["macs"] >= 1.3
    assert metrics["dense"]["cosine"] == pytest.approx(1.0, abs=1e-5)
    assert 0.5 < metrics["slim"]["cosine"] < 1.0
    assert metrics["slim"]["full_model_cosine"] == pytest.approx(metrics["slim"]["cosine"], abs=1e-5)
    assert "Distilled from the starting model" in (out / "report.md").read_text()
    slim = zp.load(out)
    assert slim(input_ids=torch.tensor([[2, 7, 8, 3]])).last_hidden_state.shape == (1, 4, 32)


def test_compress_distill_from_a_checkpoint(dense_run: Path, tmp_path: Path) -> None:
    out = tmp_path / "distilled"
    argv = ["compress", "--weights", str(dense_run / "dense.safetensors"), "--distill", "--epochs", "3"]
    assert main([*argv, "--target", "macs=1.5x", "--out", str(out), *FAST]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    teacher = json.loads((dense_run / "metrics.json").read_text())["dense"]["accuracy"]
    assert metrics["dense"]["accuracy"] == pytest.approx(teacher)
    assert metrics["reduction"]["macs"] >= 1.5
    assert metrics["slim"]["accuracy"] > teacher - 0.05
    assert "Dense accuracy is the starting model's" in (out / "report.md").read_text()


def test_distill_settings_are_checked(text_file: Path, tiny_bert: Path, capsys, tmp_path: Path) -> None:
    text = f"text:{text_file}"
    cases = [
        (["--model", f"hf:{tiny_bert}", "--data", text], "add --distill"),
        (["--model", "digits_cnn", "--data", text, "--distill"], "needs a Hugging Face model"),
        (["--distill"], "give --weights FILE"),
        (["--model", f"hf:{tiny_bert}", "--data", text, "--distill", "--save-dense"], "--save-dense"),
        (["--model", f"hf:{tiny_bert}", "--data", text, "--distill", "--max-length", "0"], "--max-length"),
    ]
    for flags, message in cases:
        out = tmp_path / "never"
        assert message in error_of(capsys, ["compress", *flags, "--out", str(out), *FAST])
        assert not out.exists()
    with pytest.raises(ConfigError, match="--variant"):
        Config(variant="lion")
    assert Config(model=f"hf:{tiny_bert}", data=text, distill=True).epochs == 2


def test_prune_then_distill_on_text(tiny_bert: Path, text_file: Path, tmp_path: Path) -> None:
    out = tmp_path / "recovered"
    argv = ["prune", "--model", f"hf:{tiny_bert}", "--data", f"text:{text_file}", "--calibration", "32"]
    argv += [
        "--target",
        "macs=2x",
        "--method",
        "magnitude",
        "--round-to",
        "1",
        "--distill-epochs",
        "4",
        "--lr",
        "1e-3",
        "--out",
        str(out),
    ]
    assert main([*argv, *FAST]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    slim = metrics["slim"]
    assert slim["cosine"] > slim["pruned_cosine"] + 0.01, slim  # magnitude leaves room to recover
    history = json.loads((out / "history.json").read_text())["train"]
    assert history["epochs"][-1]["step"] == 4 * 4  # 64 lines in batches of 16, 4 epochs
    assert "epochs distilling the slim model" in (out / "report.md").read_text()
    loaded = zp.load(out)
    ids = torch.tensor([[2, 7, 8, 3]])
    assert loaded(input_ids=ids).last_hidden_state.shape == (1, 4, 32)


def test_prune_then_distill_from_a_checkpoint(dense_run: Path, tmp_path: Path, capsys) -> None:
    out = tmp_path / "recovered"
    argv = [
        "prune",
        "--model",
        "digits_cnn",
        "--data",
        "digits",
        "--weights",
        str(dense_run / "dense.safetensors"),
    ]
    argv += ["--target", "macs=4x", "--distill-epochs", "3", "--out", str(out)]
    assert main([*argv, *FAST]) == 0
    slim = json.loads((out / "metrics.json").read_text())["slim"]
    assert slim["accuracy"] >= slim["pruned_accuracy"] - 0.02, slim
    epochs = json.loads((out / "history.json").read_text())["train"]["epochs"]
    assert len(epochs) == 3 and epochs[-1]["train_loss"] < epochs[0]["train_loss"]
    assert "distilled the slim model" in capsys.readouterr().err
    for flags, message in ((["--distill-epochs", "-1"], "--distill-epochs"), (["--lr", "0"], "--lr")):
        assert message in error_of(capsys, [*argv[:-2], "--out", str(tmp_path / "never"), *flags, *FAST])
