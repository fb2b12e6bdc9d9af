"""Hugging Face encoders, decoders and vision models built from small random configs prune exactly."""

import functools
import math
import random

import pytest
import torch
from torch import nn

pytest.importorskip("transformers")

import zigprune as zp
from equality import assert_close, outputs, prune_and_check, zero_and_check
from hf_zoo import HF_HELD_OUT, HF_MODELS, build


@pytest.mark.parametrize("fraction", [0.3, 0.5, 0.9])
@pytest.mark.parametrize("name", sorted(HF_MODELS))
def test_hf_model_prunes_exactly(name: str, fraction: float) -> None:
    space, weights, full, inputs = _analysed(name)
    space.model.load_state_dict(weights)  # the dense weights again: each fraction starts from them
    zero_and_check(space, inputs, fraction, other_inputs=_shorter(inputs), full=full)


@functools.cache
def _analysed(name: str) -> tuple[zp.GroupSpace, dict[str, torch.Tensor], dict[str, int], dict]:
    """HF zoo model ``name`` analysed once (construction check on) for all its fractions, with its
    dense weights, its ``zp.count`` and its inputs."""
    model, inputs = build(name)
    model.eval()
    weights = {k: v.clone() for k, v in model.state_dict().items()}
    return zp.analyze(model, inputs), weights, zp.count(model, inputs), inputs


@pytest.mark.parametrize("name", sorted(HF_HELD_OUT))
def test_more_hf_architectures_prune_exactly(name: str) -> None:
    model, inputs = build(name)
    prune_and_check(model, inputs, 0.5)


QUERY = {"bert_qa": "attention.self.query", "gpt2": "attn.c_attn", "llama_gqa": "self_attn.q_proj",
         "vit": "attention.q_proj"}  # fmt: skip


def eager(name: str) -> tuple[nn.Module, dict]:
    """A zoo model switched to the eager attention path (matmul, softmax, matmul)."""
    model, inputs = build(name)
    model.set_attn_implementation("eager")
    assert model.config._attn_implementation == "eager"
    return model, inputs


@pytest.mark.parametrize("attention", ["sdpa", "eager"])
@pytest.mark.parametrize("name", sorted(QUERY))
def test_attention_heads_are_prunable(name: str, attention: str) -> None:
    model, inputs = build(name) if attention == "sdpa" else eager(name)
    space = zp.analyze(model, inputs)
    heads = [f for f in space.families if f.modules and f.modules[0].endswith(QUERY[name])]
    assert len(heads) == 2
    expected = getattr(model.config, "num_key_value_heads", None) or model.config.num_attention_heads
    assert all(len(f.groups) == f.width == expected for f in heads)


def test_gqa_keeps_query_groups_with_their_key_value_head() -> None:
    model, inputs = build("llama_gqa")
    space = zp.analyze(model, inputs)
    family = next(f for f in space.families if f.modules[0] == "model.layers.0.self_attn.q_proj")
    assert len(family.groups) == model.config.num_key_value_heads
    space.zero_(family.groups[:1])
    slim = space.construct()
    layer = slim.model.layers[0].self_attn
    assert layer.q_proj.out_features == layer.head_dim * 2
    assert layer.k_proj.out_features == layer.head_dim


def test_random_heads_of_eager_bert_are_cut_exactly() -> None:
    model, inputs = eager("bert_qa")
    space = zp.analyze(model, inputs)
    heads = [f.groups for f in space.families if f.modules[:1] and f.modules[0].endswith("self.query")]
    assert [len(groups) for groups in heads] == [4, 4]
    rng = random.Random(0)
    space.zero_([g for groups in heads for g in rng.sample(groups, 1 + len(heads[0]) // 2)])
    slim = space.construct()
    assert_close(outputs(model, inputs), outputs(slim, inputs))
    assert_close(outputs(model, _shorter(inputs)), outputs(slim, _shorter(inputs)))
    layer = slim.bert.encoder.layer[0].attention.self
    assert layer.num_attention_heads == 1 and layer.all_head_size == layer.attention_head_size
    assert layer.query.out_features == layer.all_head_size
    assert zp.count(slim, inputs)["macs"] == space.macs(space.zero_groups())


class LegacyBertSelfAttention(nn.Module):
    """transformers 4.x's eager ``BertSelfAttention``: ``transpose_for_scores`` views to
    ``self.num_attention_heads`` heads, and the context to ``self.all_head_size``."""

    def __init__(self, hidden: int = 16, heads: int = 4) -> None:
        super().__init__()
        self.num_attention_heads = heads
        self.attention_head_size = hidden // heads
        self.all_head_size = heads * self.attention_head_size
        self.query, self.key, self.value = (nn.Linear(hidden, self.all_head_size) for _ in range(3))

    def transpose_for_scores(self, x: torch.Tensor) -> torch.Tensor:
        shape = x.size()[:-1] + (self.num_attention_heads, self.attention_head_size)
        return x.view(shape).permute(0, 2, 1, 3)

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        q, k, v = (self.transpose_for_scores(f(hidden)) for f in (self.query, self.key, self.value))
        scores = torch.matmul(q, k.transpose(-1, -2)) / math.sqrt(self.attention_head_size)
        context = torch.matmul(nn.functional.softmax(scores, dim=-1), v).permute(0, 2, 1, 3).contiguous()
        return context.view(context.size()[:-2] + (self.all_head_size,))


def test_legacy_bert_attention_heads_are_cut_exactly() -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(8, 16), LegacyBertSelfAttention(), nn.Linear(16, 3)).eval()
    x = torch.randn(2, 5, 8)
    space, slim = prune_and_check(model, x, 0.5, other_inputs=torch.randn(3, 7, 8))
    heads = next(f for f in space.families if f.modules[:1] == ["1.query"])
    assert len(heads.groups) == 4
    kept = slim[1].num_attention_heads
    assert kept < 4 and slim[1].all_head_size == 4 * kept == slim[2].in_features


def test_gpt2_keeps_tied_embedding_tied() -> None:
    model, inputs = build("gpt2")
    space = zp.analyze(model, inputs)
    space.zero_(range(0, space.num_groups, 2))
    slim = space.construct()
    assert slim.lm_head.weight is slim.transformer.wte.weight


def _shorter(inputs: dict) -> dict:
    """The same kind of inputs with a shorter sequence and one more sample."""
    out = {}
    for key, value in inputs.items():
        if key in ("input_ids", "attention_mask", "token_type_ids") and value.dim() == 2:
            value = torch.cat([value, value[:1]])[:, :5]
        elif key == "pixel_values":
            value = torch.cat([value, value[:1]])
        out[key] = value
    return out
