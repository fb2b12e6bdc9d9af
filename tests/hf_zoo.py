"""Tiny, randomly initialised Hugging Face models for the zigprune test suite.

This is a helper module, not a test file. Every entry builds a model from a
small random config (hidden <= 64, <= 2 layers, vocab <= 128, images <= 32px)
in eval mode, with a fixed seed, and returns ``(model, kwargs)`` where
``kwargs`` are example keyword inputs (batch 2, sequence 8) suitable for::

    torch.export.export(model, args=(), kwargs=kwargs, strict=False)

Nothing is downloaded: all models are built from configs.

* ``HF_MODELS``: the main zoo the suite is developed against.
* ``HF_HELD_OUT``: a held-out set that should only be used to check that the
  analysis generalises (do not tune heuristics against it).
* ``HF_ATTN_IMPL``: which attention implementation each entry requests
  (``"sdpa"`` where the architecture supports it; ``"eager"`` for
  architectures without an attention interface: ConvNeXt and ResNet have no
  attention, MobileViT hard-codes matmul + softmax).
  The implementation actually in effect after construction can be read from
  ``model.config._attn_implementation``.

Decoder configs set ``use_cache=False`` so that outputs contain only tensors.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import transformers
from torch import nn

__all__ = ["HF_ATTN_IMPL", "HF_HELD_OUT", "HF_MODELS", "build"]

SEED = 0
BATCH = 2
SEQ = 8
VOCAB = 128
IMAGE = 32

Builder = Callable[[], tuple[nn.Module, dict[str, torch.Tensor]]]

HF_MODELS: dict[str, Builder] = {}
HF_HELD_OUT: dict[str, Builder] = {}
HF_ATTN_IMPL: dict[str, str] = {}


def _register(registry: dict[str, Builder], name: str, attn: str) -> Callable[[Builder], Builder]:
    def deco(fn: Builder) -> Builder:
        registry[name] = fn
        HF_ATTN_IMPL[name] = attn
        return fn

    return deco


def _make(model_cls: type, config: transformers.PretrainedConfig) -> nn.Module:
    """Instantiate ``model_cls(config)`` with a fixed seed, in eval mode."""
    torch.manual_seed(SEED)
    model = model_cls(config)
    return model.eval()


def _text_inputs(*, token_type_ids: bool = False, low: int = 3, pad_last: int = 2) -> dict[str, torch.Tensor]:
    """``input_ids`` + ``attention_mask`` of shape (BATCH, SEQ).

    The second sequence is right-padded by ``pad_last`` tokens so that the
    attention mask is not trivially all ones. Token ids start at ``low`` to
    stay clear of the special/pad ids used by the configs below.
    """
    g = torch.Generator().manual_seed(SEED)
    input_ids = torch.randint(low, VOCAB, (BATCH, SEQ), generator=g)
    attention_mask = torch.ones(BATCH, SEQ, dtype=torch.long)
    if pad_last:
        attention_mask[1, -pad_last:] = 0
    out = {"input_ids": input_ids, "attention_mask": attention_mask}
    if token_type_ids:
        tt = torch.zeros(BATCH, SEQ, dtype=torch.long)
        tt[:, SEQ // 2 :] = 1
        out["token_type_ids"] = tt
    return out


def _image_inputs(channels: int = 3, size: int = IMAGE) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(SEED)
    return {"pixel_values": torch.randn(BATCH, channels, size, size, generator=g)}


# --------------------------------------------------------------------------
# Main zoo
# --------------------------------------------------------------------------


@_register(HF_MODELS, "bert_qa", "sdpa")
def bert_qa() -> tuple[nn.Module, dict[str, torch.Tensor]]:
    config = transformers.BertConfig(
        vocab_size=VOCAB,
        hidden_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        intermediate_size=128,
        max_position_embeddings=64,
        type_vocab_size=2,
        attn_implementation="sdpa",
    )
    return _make(transformers.BertForQuestionAnswering, config), _text_inputs(token_type_ids=True)


@_register(HF_MODELS, "vit", "sdpa")
def vit() -> tuple[nn.Module, dict[str, torch.Tensor]]:
    config = transformers.ViTConfig(
        image_size=IMAGE,
        patch_size=8,
        num_channels=3,
        hidden_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        intermediate_size=128,
        num_labels=10,
        attn_implementation="sdpa",
    )
    return _make(transformers.ViTForImageClassification, config), _image_inputs()


@_register(HF_MODELS, "gpt2", "sdpa")
def gpt2() -> tuple[nn.Module, dict[str, torch.Tensor]]:
    config = transformers.GPT2Config(
        vocab_size=VOCAB,
        n_positions=64,
        n_embd=64,
        n_layer=2,
        n_head=4,
        n_inner=128,
        bos_token_id=0,
        eos_token_id=0,
        use_cache=False,
        attn_implementation="sdpa",
    )
    return _make(transformers.GPT2LMHeadModel, config), _text_inputs()


@_register(HF_MODELS, "llama_gqa", "sdpa")
def llama_gqa() -> tuple[nn.Module, dict[str, torch.Tensor]]:
    config = transformers.LlamaConfig(
        vocab_size=VOCAB,
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=64,
        pad_token_id=0,
        bos_token_id=1,
        eos_token_id=2,
        use_cache=False,
        attn_implementation="sdpa",
    )
    return _make(transformers.LlamaForCausalLM, config), _text_inputs()


# --------------------------------------------------------------------------
# Held-out zoo
# --------------------------------------------------------------------------


@_register(HF_HELD_OUT, "distilbert_cls", "sdpa")
def distilbert_cls() -> tuple[nn.Module, dict[str, torch.Tensor]]:
    config = transformers.DistilBertConfig(
        vocab_size=VOCAB,
        dim=64,
        n_layers=2,
        n_heads=4,
        hidden_dim=128,
        max_position_embeddings=64,
        num_labels=3,
        attn_implementation="sdpa",
    )
    return _make(transformers.DistilBertForSequenceClassification, config), _text_inputs()


@_register(HF_HELD_OUT, "roberta_cls", "sdpa")
def roberta_cls() -> tuple[nn.Module, dict[str, torch.Tensor]]:
    config = transformers.RobertaConfig(
        vocab_size=VOCAB,
        hidden_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        intermediate_size=128,
        max_position_embeddings=64 + 2,
        pad_token_id=1,
        bos_token_id=0,
        eos_token_id=2,
        num_labels=3,
        attn_implementation="sdpa",
    )
    return _make(transformers.RobertaForSequenceClassification, config), _text_inputs()


@_register(HF_HELD_OUT, "mistral_gqa", "sdpa")
def mistral_gqa() -> tuple[nn.Module, dict[str, torch.Tensor]]:
    config = transformers.MistralConfig(
        vocab_size=VOCAB,
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        head_dim=16,
        max_position_embeddings=64,
        sliding_window=None,
        pad_token_id=0,
        bos_token_id=1,
        eos_token_id=2,
        use_cache=False,
        attn_implementation="sdpa",
    )
    return _make(transformers.MistralForCausalLM, config), _text_inputs()


@_register(HF_HELD_OUT, "qwen2_gqa", "sdpa")
def qwen2_gqa() -> tuple[nn.Module, dict[str, torch.Tensor]]:
    config = transformers.Qwen2Config(
        vocab_size=VOCAB,
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=64,
        use_sliding_window=False,
        pad_token_id=0,
        bos_token_id=1,
        eos_token_id=2,
        use_cache=False,
        attn_implementation="sdpa",
    )
    return _make(transformers.Qwen2ForCausalLM, config), _text_inputs()


@_register(HF_HELD_OUT, "opt", "sdpa")
def opt() -> tuple[nn.Module, dict[str, torch.Tensor]]:
    config = transformers.OPTConfig(
        vocab_size=VOCAB,
        hidden_size=64,
        num_hidden_layers=2,
        ffn_dim=128,
        num_attention_heads=4,
        max_position_embeddings=64,
        word_embed_proj_dim=64,
        pad_token_id=1,
        bos_token_id=2,
        eos_token_id=2,
        use_cache=False,
        attn_implementation="sdpa",
    )
    return _make(transformers.OPTForCausalLM, config), _text_inputs()


@_register(HF_HELD_OUT, "gpt_neox", "sdpa")
def gpt_neox() -> tuple[nn.Module, dict[str, torch.Tensor]]:
    config = transformers.GPTNeoXConfig(
        vocab_size=VOCAB,
        hidden_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        intermediate_size=128,
        rotary_pct=0.25,
        max_position_embeddings=64,
        pad_token_id=0,
        bos_token_id=1,
        eos_token_id=2,
        use_cache=False,
        attn_implementation="sdpa",
    )
    return _make(transformers.GPTNeoXForCausalLM, config), _text_inputs()


@_register(HF_HELD_OUT, "t5_encoder", "sdpa")
def t5_encoder() -> tuple[nn.Module, dict[str, torch.Tensor]]:
    config = transformers.T5Config(
        vocab_size=VOCAB,
        d_model=64,
        d_kv=16,
        d_ff=128,
        num_layers=2,
        num_heads=4,
        relative_attention_num_buckets=8,
        relative_attention_max_distance=16,
        pad_token_id=0,
        eos_token_id=1,
        use_cache=False,
        attn_implementation="sdpa",
    )
    return _make(transformers.T5EncoderModel, config), _text_inputs()


@_register(HF_HELD_OUT, "convnext", "eager")
def convnext() -> tuple[nn.Module, dict[str, torch.Tensor]]:
    config = transformers.ConvNextConfig(
        num_channels=3,
        patch_size=4,
        num_stages=2,
        hidden_sizes=[16, 32],
        depths=[1, 1],
        image_size=IMAGE,
        num_labels=10,
        attn_implementation="eager",
    )
    return _make(transformers.ConvNextForImageClassification, config), _image_inputs()


@_register(HF_HELD_OUT, "resnet", "eager")
def resnet() -> tuple[nn.Module, dict[str, torch.Tensor]]:
    config = transformers.ResNetConfig(
        num_channels=3,
        embedding_size=16,
        hidden_sizes=[32, 64],
        depths=[1, 1],
        layer_type="bottleneck",
        num_labels=10,
        attn_implementation="eager",
    )
    return _make(transformers.ResNetForImageClassification, config), _image_inputs()


@_register(HF_HELD_OUT, "swin", "sdpa")
def swin() -> tuple[nn.Module, dict[str, torch.Tensor]]:
    config = transformers.SwinConfig(
        image_size=IMAGE,
        patch_size=4,
        num_channels=3,
        embed_dim=16,
        depths=[1, 1],
        num_heads=[2, 4],
        window_size=4,
        mlp_ratio=2.0,
        num_labels=10,
        attn_implementation="sdpa",
    )
    return _make(transformers.SwinForImageClassification, config), _image_inputs()


@_register(HF_HELD_OUT, "mobilevit", "eager")
def mobilevit() -> tuple[nn.Module, dict[str, torch.Tensor]]:
    config = transformers.MobileViTConfig(
        num_channels=3,
        image_size=IMAGE,
        patch_size=2,
        hidden_sizes=[32, 48, 64],
        neck_hidden_sizes=[8, 8, 16, 16, 24, 32, 64],
        num_attention_heads=4,
        mlp_ratio=2.0,
        expand_ratio=2.0,
        num_labels=10,
        attn_implementation="eager",
    )
    return _make(transformers.MobileViTForImageClassification, config), _image_inputs()


@_register(HF_HELD_OUT, "whisper_encoder", "sdpa")
def whisper_encoder() -> tuple[nn.Module, dict[str, torch.Tensor]]:
    from transformers.models.whisper.modeling_whisper import WhisperEncoder

    # max_source_positions=8 -> the encoder expects 2 * 8 = 16 mel frames
    # (the stride-2 conv halves them to a sequence of 8).
    config = transformers.WhisperConfig(
        vocab_size=VOCAB,
        num_mel_bins=16,
        d_model=64,
        encoder_layers=2,
        encoder_attention_heads=4,
        encoder_ffn_dim=128,
        decoder_layers=1,
        decoder_attention_heads=4,
        decoder_ffn_dim=128,
        max_source_positions=SEQ,
        max_target_positions=16,
        pad_token_id=0,
        bos_token_id=1,
        eos_token_id=2,
        decoder_start_token_id=1,
        use_cache=False,
        attn_implementation="sdpa",
    )
    g = torch.Generator().manual_seed(SEED)
    kwargs = {"input_features": torch.randn(BATCH, 16, 2 * SEQ, generator=g)}
    return _make(WhisperEncoder, config), kwargs


def build(name: str) -> tuple[nn.Module, dict[str, torch.Tensor]]:
    """Build an entry from either zoo by name."""
    if name in HF_MODELS:
        return HF_MODELS[name]()
    return HF_HELD_OUT[name]()
