"""Hugging Face encoders, decoders and vision models built from small random configs prune exactly."""

import pytest
import torch

pytest.importorskip("transformers")

import zigprune as zp
from equality import prune_and_check
from hf_zoo import HF_HELD_OUT, HF_MODELS, build


@pytest.mark.parametrize("fraction", [0.3, 0.5, 0.9])
@pytest.mark.parametrize("name", sorted(HF_MODELS))
def test_hf_model_prunes_exactly(name: str, fraction: float) -> None:
    model, inputs = build(name)
    prune_and_check(model, inputs, fraction, other_inputs=_shorter(inputs))


@pytest.mark.parametrize("name", sorted(HF_HELD_OUT))
def test_more_hf_architectures_prune_exactly(name: str) -> None:
    model, inputs = build(name)
    prune_and_check(model, inputs, 0.5)


QUERY = {"bert_qa": "attention.self.query", "gpt2": "attn.c_attn", "llama_gqa": "self_attn.q_proj",
         "vit": "attention.q_proj"}  # fmt: skip


@pytest.mark.parametrize("name", sorted(QUERY))
def test_attention_heads_are_prunable(name: str) -> None:
    model, inputs = build(name)
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
