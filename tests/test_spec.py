"""Model specs: each form resolves and builds; each bad spec raises a one-line ModelError with advice."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch
import transformers
from torch import nn

from zigprune.errors import ModelError
from zigprune.models.spec import ModelSpec, kind_of, resolve

FACTORY = """
from torch import nn


def make(width=6, classes=3):
    return nn.Sequential(nn.Linear(4, width), nn.ReLU(), nn.Linear(width, classes))


def broken(width=6):
    raise ValueError(f"bad width {width}")


def not_a_model():
    return 42
"""


@pytest.fixture
def factory_file(tmp_path: Path) -> Path:
    path = tmp_path / "net.py"
    path.write_text(FACTORY)
    return path


def model_error(text: str, match: str, **kwargs: object) -> str:
    """Resolve and build ``text``; it must raise a one-line ModelError matching ``match``."""
    with pytest.raises(ModelError, match=match) as info:
        resolve(text, **kwargs).build()
    assert "\n" not in str(info.value)
    return str(info.value)


def test_kinds_are_told_apart_by_shape() -> None:
    assert kind_of("resnet20") == "zoo"
    assert kind_of("nets/model.py:make") == "file"
    assert kind_of(r"C:\nets\model.py:make") == "file"
    assert kind_of("model.py:make") == "file"
    assert kind_of("zigprune.models.small:mlp") == "module"
    assert kind_of("hf:/models/gpt2") == "hf"


def test_zoo_name_builds_with_kwargs_and_matching_inputs() -> None:
    spec = resolve("resnet20", in_channels=1, num_classes=3)
    assert spec == ModelSpec("resnet20", {"in_channels": 1, "num_classes": 3})
    model = spec.build().eval()
    x = spec.example_inputs(batch=2)
    assert x.shape == (2, 1, 32, 32)
    assert torch.equal(x, spec.example_inputs(batch=2))
    assert model(x).shape == (2, 3)
    assert spec.example_inputs(batch=3, input_shape=(1, 12, 12)).shape == (3, 1, 12, 12)
    tokens = resolve("transformer_classifier").example_inputs(batch=4)
    assert tokens.shape == (4, 16) and tokens.dtype == torch.long and 0 <= int(tokens.min()) < 100
    assert int(tokens.max()) < 100


def test_file_factory_builds_and_needs_an_input_shape(factory_file: Path) -> None:
    spec = resolve(f"{factory_file}:make", width=5)
    assert spec.kind == "file"
    model = spec.build()
    assert model[0].out_features == 5
    assert model(spec.example_inputs(batch=2, input_shape=(4,))).shape == (2, 3)
    with pytest.raises(ModelError, match=r"need input_shape .*\(3, 32, 32\)"):
        spec.example_inputs()


def test_file_factory_is_reimported_from_its_current_source(factory_file: Path) -> None:
    spec = resolve(f"{factory_file}:make")
    assert spec.build()[0].out_features == 6
    factory_file.write_text(FACTORY.replace("width=6, classes=3", "width=7, classes=3"))
    assert spec.build()[0].out_features == 7
    assert not (factory_file.parent / "__pycache__").exists()


def test_module_factory_builds() -> None:
    model = resolve("zigprune.models.small:mlp", hidden=[8], num_classes=2).build()
    assert [m.out_features for m in model if isinstance(m, nn.Linear)] == [8, 2]


def test_hf_folder_builds_its_architecture(tmp_path: Path) -> None:
    config = transformers.GPT2Config(vocab_size=96, n_positions=32, n_embd=32, n_layer=1, n_head=2)
    transformers.GPT2LMHeadModel(config).save_pretrained(tmp_path)
    spec = resolve(f"hf:{tmp_path}")
    model = spec.build()
    assert type(model).__name__ == "GPT2LMHeadModel"
    inputs = spec.example_inputs(batch=3)
    assert set(inputs) == {"input_ids"} and inputs["input_ids"].shape == (3, 16)
    assert int(inputs["input_ids"].max()) < 96
    assert spec.example_inputs(batch=1, input_shape=(5,))["input_ids"].shape == (1, 5)


def test_hf_vision_folder_gets_a_classifier_head_on_request(tmp_path: Path) -> None:
    config = transformers.ViTConfig(
        image_size=16, patch_size=8, hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
        intermediate_size=64,
    )  # fmt: skip
    transformers.ViTModel(config).save_pretrained(tmp_path)
    spec = resolve(f"hf:{tmp_path}", num_classes=3, in_channels=1)
    model = spec.build()
    assert type(model).__name__ == "ViTForImageClassification"
    inputs = spec.example_inputs(batch=2)
    assert inputs["pixel_values"].shape == (2, 1, 16, 16)
    with torch.no_grad():
        assert model(**inputs).logits.shape == (2, 3)


def test_unknown_zoo_name_lists_the_valid_names() -> None:
    text = model_error("resnet21", r"unknown model 'resnet21'; use a zoo name, path/to/file.py:factory")
    assert "resnet20" in text and "hf:PATH" in text


def test_missing_file(tmp_path: Path) -> None:
    model_error(f"{tmp_path}/none.py:make", r"model file '.*none\.py' of spec .* does not exist")


def test_file_that_does_not_import(tmp_path: Path) -> None:
    path = tmp_path / "bad.py"
    path.write_text("def make(:\n")
    model_error(f"{path}:make", r"could not import '.*bad\.py' \(SyntaxError: .*\); fix the file")


def test_missing_factory_names_the_candidates(factory_file: Path) -> None:
    model_error(
        f"{factory_file}:nothing", r"has no factory function 'nothing'; define it or name one of: .*make"
    )


def test_factory_that_raises_is_wrapped(factory_file: Path) -> None:
    model_error(f"{factory_file}:broken", r"raised ValueError: bad width 9; fix the factory", width=9)


def test_bad_keyword_argument_is_wrapped() -> None:
    model_error("resnet20", r"raised TypeError: .*unexpected keyword argument 'depth'", depth=3)


def test_factory_that_returns_no_module(factory_file: Path) -> None:
    model_error(
        f"{factory_file}:not_a_model", r"returned int, not a torch\.nn\.Module; make the factory return"
    )


def test_module_that_does_not_import() -> None:
    model_error("no_such_package_zz.models:make", r"could not import module 'no_such_package_zz\.models' \(")


def test_hf_folder_without_config(tmp_path: Path) -> None:
    with pytest.raises(
        ModelError, match=r"has no config\.json; give hf: a local folder written by save_pretrained"
    ):
        resolve(f"hf:{tmp_path}")


def test_hf_without_transformers(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "config.json").write_text("{}")
    monkeypatch.setitem(sys.modules, "transformers", None)
    model_error(f"hf:{tmp_path}", r"need transformers: pip install 'zigprune\[hf\]'")


def test_kwargs_must_be_json_and_text_non_empty() -> None:
    with pytest.raises(ModelError, match="must be JSON values"):
        resolve("resnet20", act=nn.ReLU)
    with pytest.raises(ModelError, match="must be non-empty text"):
        resolve("  ")
    with pytest.raises(ModelError, match=r"must end in ':factory' with a Python name"):
        resolve("pkg.module:")
