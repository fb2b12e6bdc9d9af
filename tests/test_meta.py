"""Models larger than memory: analysis, zeroing and construction on the meta device, and the slim
weights read straight from a (sharded) safetensors checkpoint."""

import json

import pytest
import torch
from safetensors.torch import save_model

import zigprune as zp
from zigprune import models
from zigprune.errors import LoadError
from zigprune.io import checkpoint_reader

transformers = pytest.importorskip("transformers")
accelerate = pytest.importorskip("accelerate")


def llama_config():
    return transformers.LlamaConfig(
        hidden_size=64,
        intermediate_size=172,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        vocab_size=128,
        use_cache=False,
        tie_word_embeddings=False,
    )


@pytest.fixture(scope="module")
def llama_folder(tmp_path_factory):
    """A random-weight decoder saved by Hugging Face as a folder of five shards with their index."""
    torch.manual_seed(0)
    model = transformers.LlamaForCausalLM(llama_config()).eval()
    folder = tmp_path_factory.mktemp("llama")
    model.save_pretrained(folder, max_shard_size="100KB")
    assert (folder / checkpoint_reader.INDEX).is_file()
    return folder, model


def empty_llama():
    """Parameters on the meta device, buffers (rotary frequencies) real: what accelerate builds."""
    with accelerate.init_empty_weights():
        return transformers.LlamaForCausalLM(llama_config()).eval()


def tokens():
    return torch.randint(0, 128, (2, 12), generator=torch.Generator().manual_seed(1))


def test_meta_analysis_finds_the_same_groups_and_costs_as_on_real_weights(llama_folder):
    _, real = llama_folder
    meta_space = zp.analyze(empty_llama(), {"input_ids": tokens().to("meta")}, check=False)
    real_space = zp.analyze(real, {"input_ids": tokens()}, check=False)
    assert meta_space.num_groups == real_space.num_groups > 0
    assert [f.name for f in meta_space.families] == [f.name for f in real_space.families]
    assert meta_space.macs() == real_space.macs()
    assert zp.count(empty_llama(), {"input_ids": tokens().to("meta")}) == zp.count(
        real, {"input_ids": tokens()}
    )


def test_meta_zeroing_is_recorded_and_construct_gives_the_slim_shapes(llama_folder):
    _, real = llama_folder
    meta = empty_llama()
    space = zp.analyze(meta, {"input_ids": tokens().to("meta")}, check=False)
    half = torch.arange(0, space.num_groups, 2)
    space.zero_(half)
    zeroed = space.zero_groups()
    assert zeroed.sum() == half.numel() and bool(zeroed[half].all())
    slim = space.construct(check=False)
    assert all(p.is_meta for p in slim.parameters())
    copy = transformers.LlamaForCausalLM(llama_config()).eval()
    copy.load_state_dict(real.state_dict())
    reference = zp.analyze(copy, {"input_ids": tokens()}, check=False)
    reference.zero_(half)
    shapes = {n: p.shape for n, p in reference.construct().named_parameters()}
    assert {n: p.shape for n, p in slim.named_parameters()} == shapes
    assert space.params(zeroed) == sum(p.numel() for p in slim.parameters())


def test_steps_that_need_values_refuse_a_meta_model_with_what_to_do():
    meta = empty_llama()
    inputs = {"input_ids": tokens().to("meta")}
    with pytest.raises(zp.MetaDeviceError, match="check=False"):
        zp.analyze(meta, inputs)
    space = zp.analyze(meta, inputs, check=False)
    with pytest.raises(zp.MetaDeviceError, match="check=False"):
        space.construct()
    with pytest.raises(zp.MetaDeviceError, match="Checkpoint"):
        space.group_norms()
    with pytest.raises(zp.MetaDeviceError, match="magnitude"):
        zp.prune(space, [inputs], 0.3, method="wanda", progress=False)


def test_magnitude_prune_on_meta_then_load_pruned_equals_pruning_the_real_model(llama_folder, monkeypatch):
    folder, real = llama_folder
    meta = empty_llama()
    space = zp.analyze(meta, {"input_ids": tokens().to("meta")}, check=False)
    weights = zp.Checkpoint(folder)
    removed = zp.prune(space, None, 0.4, by="params", method="magnitude", weights=weights, progress=False)

    copy = transformers.LlamaForCausalLM(llama_config()).eval()
    copy.load_state_dict(real.state_dict())
    reference_space = zp.analyze(copy, {"input_ids": tokens()}, check=False)
    assert zp.prune(reference_space, None, 0.4, by="params", method="magnitude", progress=False) == removed
    reference = reference_space.construct()

    def whole(*_):
        raise AssertionError("load_pruned read a whole tensor")

    monkeypatch.setattr(zp.Checkpoint, "tensor", whole)
    monkeypatch.setattr(checkpoint_reader, "CHUNK_BYTES", 1024)
    slim = zp.load_pruned(space, weights)
    assert not any(t.is_meta for t in [*slim.parameters(), *slim.buffers()])
    with torch.no_grad():
        assert torch.equal(slim(input_ids=tokens()).logits, reference(input_ids=tokens()).logits)
    assert sum(p.numel() for p in slim.parameters()) < sum(p.numel() for p in real.parameters())


def test_load_pruned_on_a_vision_model_from_one_safetensors_file(tmp_path):
    torch.manual_seed(0)
    real = models.create("resnet20").eval()
    path = tmp_path / "resnet20.safetensors"
    save_model(real, str(path))
    with torch.device("meta"):
        meta = models.create("resnet20").eval()
    x = torch.randn(2, 3, 32, 32)
    space = zp.analyze(meta, x.to("meta"), check=False)
    chosen = torch.arange(1, space.num_groups, 3)
    space.zero_(chosen)
    slim = zp.load_pruned(space, path)

    reference = zp.analyze(real, x, check=False)
    reference.zero_(chosen)
    with torch.no_grad():
        torch.testing.assert_close(slim(x), reference.construct()(x), rtol=0, atol=0)
        torch.testing.assert_close(slim(x), real(x), rtol=1e-4, atol=1e-5)


def test_checkpoint_read_keeps_runs_and_chunks(tmp_path, monkeypatch):
    from safetensors.torch import save_file

    value = torch.arange(7 * 5 * 3, dtype=torch.float32).reshape(7, 5, 3)
    save_file({"w": value}, str(tmp_path / "w.safetensors"))
    weights = zp.Checkpoint(tmp_path / "w.safetensors")
    monkeypatch.setattr(checkpoint_reader, "CHUNK_BYTES", 60)
    rows, cols = torch.tensor([0, 1, 2, 5]), torch.tensor([1, 4])
    assert torch.equal(weights.read("w", [(0, rows), (1, cols)]), value[rows][:, cols])
    assert torch.equal(weights.read("w", [(2, torch.tensor([2]))]), value[:, :, [2]])
    assert torch.equal(weights.read("w", []), value)


def test_bad_checkpoints_are_clear_errors(tmp_path, llama_folder):
    folder, _ = llama_folder
    with pytest.raises(LoadError, match="neither"):
        zp.Checkpoint(tmp_path)
    (tmp_path / "bad.safetensors").write_bytes(b"not a safetensors file")
    with pytest.raises(LoadError, match="not a readable"):
        zp.Checkpoint(tmp_path / "bad.safetensors")
    index = tmp_path / checkpoint_reader.INDEX
    index.write_text(json.dumps({"metadata": {}}))
    with pytest.raises(LoadError, match="not a safetensors index"):
        zp.Checkpoint(tmp_path)

    with torch.device("meta"):
        meta = transformers.LlamaForCausalLM(llama_config()).eval()
    space = zp.analyze(meta, {"input_ids": tokens().to("meta")}, check=False)
    with pytest.raises(LoadError, match="init_empty_weights"):
        zp.load_pruned(space, folder)

    wide = llama_config()
    wide.intermediate_size = 200
    with accelerate.init_empty_weights():
        other = transformers.LlamaForCausalLM(wide).eval()
    space = zp.analyze(other, {"input_ids": tokens().to("meta")}, check=False)
    with pytest.raises(LoadError, match="different configuration"):
        zp.load_pruned(space, folder)
