"""Limits on what pruning removes (families left alone, a maximum share, a minimum of heads, uniform
widths), and slim Hugging Face models saved as plain ``from_pretrained`` folders."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import torch
from cli_errors import error_of
from conftest import FAST, bert

import zigprune as zp
from zigprune.cli import main
from zigprune.core.limits import Limits
from zigprune.errors import TargetError
from zigprune.io.hf_folder import ConfigShapeError, save_pretrained, slim_config

transformers = pytest.importorskip("transformers")


def _bert(seed: int = 0) -> torch.nn.Module:
    return bert(seed, vocab_size=60, initializer_range=0.2, num_hidden_layers=3).eval()


def _llama(kv_heads: int) -> torch.nn.Module:
    sizes = {"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2, "num_attention_heads": 4}
    config = transformers.LlamaConfig(vocab_size=60, num_key_value_heads=kv_heads, head_dim=8, **sizes)
    torch.manual_seed(0)
    return transformers.LlamaModel(config).eval()


CALIBRATION = [
    {"input_ids": torch.randint(60, (8, 12), generator=torch.Generator().manual_seed(i))} for i in range(4)
]


def _kept(space: zp.GroupSpace, ids: list[int]) -> dict[str, int]:
    gone = set(ids)
    return {f.name: sum(g not in gone for g in f.groups) for f in space.families if f.groups}


def _pruned(model: torch.nn.Module, target: float, **options) -> tuple[zp.GroupSpace, dict[str, int]]:
    space = zp.analyze(model, CALIBRATION[0])
    ids = zp.prune(space, CALIBRATION, target, "macs", progress=False, **options)
    return space, _kept(space, ids)


def test_uniform_widths_are_the_same_in_every_layer() -> None:
    _, free = _pruned(_bert(), 0.3, round_to=4)
    mlp = lambda kept: {v for k, v in kept.items() if "intermediate" in k}  # noqa: E731
    assert len(mlp(free)) > 1, "without limits the layers keep different widths"
    _, tied = _pruned(_bert(), 0.3, round_to=4, limits=Limits(uniform=True))
    assert len(mlp(tied)) == 1 and mlp(tied) != {64}
    assert len({v for k, v in tied.items() if "attention" in k}) == 1


def test_leave_max_share_and_min_heads() -> None:
    _, left = _pruned(_bert(), 0.3, limits=Limits(leave=("*.attention.*",)))
    assert all(v == 4 for k, v in left.items() if "attention" in k)
    _, capped = _pruned(_bert(), 0.3, limits=Limits(max_share=0.5))
    assert all(v >= 32 for k, v in capped.items() if "intermediate" in k)
    _, heads = _pruned(_bert(), 0.45, round_to=1, cost_power=1.0, limits=Limits(min_heads=3))
    assert all(v >= 3 for k, v in heads.items() if "attention" in k)
    with pytest.raises(TargetError, match="kept by the limits given"):
        _pruned(_bert(), 0.45, limits=Limits(leave=("*.intermediate.*",), max_share=0.25))
    for bad in ({"max_share": 0}, {"max_share": 1.5}, {"min_heads": -1}, {"min_heads": 1.5}):
        with pytest.raises(ValueError):
            Limits(**bad)


def test_hesso_keeps_the_limits() -> None:
    model = _bert()
    space = zp.analyze(model, CALIBRATION[0])
    opt = zp.HESSO(space, lr=1e-3, variant="adamw", target=0.3, by="macs", total_steps=12,
                   limits=Limits(uniform=True, leave=("*.attention.*",)))  # fmt: skip
    for step in range(12):
        opt.zero_grad()
        model(**CALIBRATION[step % 4]).last_hidden_state.pow(2).mean().backward()
        opt.step()
    kept = _kept(space, space.zero_groups().nonzero().flatten().tolist())
    assert len({v for k, v in kept.items() if "intermediate" in k}) == 1
    assert all(v == 4 for k, v in kept.items() if "attention" in k)


def test_uniform_bert_saves_as_a_from_pretrained_folder(tmp_path: Path) -> None:
    space, _ = _pruned(_bert(), 0.3, limits=Limits(uniform=True, leave=("*.attention.*",)))
    slim = space.construct()
    folder = save_pretrained(slim, tmp_path / "hf")
    back = transformers.AutoModel.from_pretrained(folder).eval()
    assert back.config.intermediate_size < 64 and slim.config.intermediate_size == 64
    batch = CALIBRATION[1]
    assert torch.equal(back(**batch).last_hidden_state, slim(**batch).last_hidden_state)


def test_gpt2_with_uniform_widths_writes_n_inner(tmp_path: Path) -> None:
    """GPT-2 leaves ``n_inner`` None (4 x n_embd); uniform MLP widths are written there, and the folder
    gets the usual permissions (its temporary folder was private)."""
    config = transformers.GPT2Config(vocab_size=60, n_embd=32, n_layer=2, n_head=4, n_positions=32)
    torch.manual_seed(0)
    space, kept = _pruned(transformers.GPT2LMHeadModel(config).eval(), 0.3, limits=Limits(uniform=True))
    assert all(v == 4 for k, v in kept.items() if "attn" in k) and {
        v for k, v in kept.items() if "mlp" in k
    } != {128}
    slim = space.construct()
    mask = os.umask(0o022)
    try:
        folder = save_pretrained(slim, tmp_path / "hf")
    finally:
        os.umask(mask)
    back = transformers.AutoModelForCausalLM.from_pretrained(folder).eval()
    assert back.config.n_inner < 128 and slim.config.n_inner is None
    assert torch.equal(back(**CALIBRATION[1]).logits, slim(**CALIBRATION[1]).logits)
    assert folder.stat().st_mode & 0o777 == 0o755
    assert all(path.stat().st_mode & 0o777 == 0o644 for path in folder.iterdir() if path.is_file())


def test_a_sentence_transformers_source_lends_its_pooling_and_normalisation(tmp_path: Path) -> None:
    source = tmp_path / "source"
    model = _bert()
    model.save_pretrained(source)
    kinds = [("", "Transformer"), ("1_Pooling", "Pooling"), ("2_Normalize", "Normalize")]
    modules = [
        {"idx": i, "name": str(i), "path": path, "type": f"sentence_transformers.models.{kind}"}
        for i, (path, kind) in enumerate(kinds)
    ]
    (source / "modules.json").write_text(json.dumps(modules))
    (source / "1_Pooling").mkdir()
    pooling = {"word_embedding_dimension": 32, "pooling_mode_mean_tokens": True}
    (source / "1_Pooling" / "config.json").write_text(json.dumps(pooling))
    (source / "sentence_bert_config.json").write_text(json.dumps({"max_seq_length": 12}))
    space, _ = _pruned(model, 0.3, limits=Limits(uniform=True, leave=("*.attention.*",)))
    folder = save_pretrained(space.construct(), tmp_path / "hf", source=source)
    assert json.loads((folder / "modules.json").read_text()) == modules
    assert (folder / "1_Pooling" / "config.json").is_file() and (folder / "2_Normalize").is_dir()
    assert (folder / "sentence_bert_config.json").is_file()


def test_configs_that_cannot_describe_the_slim_model_say_why() -> None:
    space, _ = _pruned(_bert(), 0.3)
    with pytest.raises(ConfigShapeError, match="uniform"):
        slim_config(space.construct())
    space, kept = _pruned(_bert(), 0.3, round_to=1, limits=Limits(uniform=True, leave=("*.intermediate.*",)))
    assert any(v < 4 for k, v in kept.items() if "attention" in k)
    with pytest.raises(ConfigShapeError, match="leave heads whole"):
        slim_config(space.construct())
    with pytest.raises(ConfigShapeError, match="no Hugging Face config"):
        slim_config(torch.nn.Linear(2, 2))


def test_llama_heads_round_trip_where_the_config_states_the_head_size(tmp_path: Path) -> None:
    space, _ = _pruned(_llama(2), 0.1, limits=Limits(uniform=True, leave=("*.mlp.*",)))
    slim = space.construct()
    back = transformers.AutoModel.from_pretrained(save_pretrained(slim, tmp_path / "gqa")).eval()
    assert (back.config.num_attention_heads, back.config.num_key_value_heads) == (2, 1)
    batch = CALIBRATION[2]
    assert torch.allclose(back(**batch).last_hidden_state, slim(**batch).last_hidden_state, atol=1e-5)
    space, _ = _pruned(_llama(4), 0.1, limits=Limits(uniform=True, leave=("*.mlp.*",)))
    with pytest.raises(ConfigShapeError, match="transformers refuses"):
        slim_config(space.construct())


def test_prune_cli_writes_the_hf_folder_when_uniform(
    tiny_bert: Path, text_file: Path, tmp_path: Path, capsys
) -> None:
    argv = ["prune", "--model", f"hf:{tiny_bert}", "--data", f"text:{text_file}", "--calibration", "32"]
    argv += ["--batch-size", "8", "--target", "macs=1.2x", *FAST]
    out = tmp_path / "uniform"
    assert main([*argv, "--uniform", "--leave", "*.attention.*", "--out", str(out)]) == 0
    assert json.loads((out / "metrics.json").read_text())["hf_folder"] == "hf"
    back = transformers.AutoModel.from_pretrained(out / "hf").eval()
    assert (out / "hf" / "tokenizer.json").is_file()
    ids = torch.tensor([[2, 7, 8, 9, 3]])
    assert torch.equal(back(input_ids=ids).last_hidden_state, zp.load(out)(input_ids=ids).last_hidden_state)
    other = tmp_path / "free"
    assert main([*argv, "--round-to", "1", "--out", str(other)]) == 0
    assert "no from_pretrained folder" in capsys.readouterr().err
    assert json.loads((other / "metrics.json").read_text())["hf_folder"] is None
    assert not (other / "hf").exists()


def test_limit_flags_are_checked(capsys) -> None:
    bad = (
        (["--max-share", "0"], "--max-share"),
        (["--min-heads", "-1"], "--min-heads"),
        (["--min-keep", "1"], "--min-keep"),
    )
    for flags, message in bad:
        for command in ("compress", "prune"):
            assert message in error_of(capsys, [command, *flags, *FAST])
