"""Torch-Pruning's one-shot magnitude pruning of a BERT encoder, as a baseline for post_training.py.

Heads (whole, ``prune_num_heads``) and MLP channels go at one ratio per layer; the hidden size is
kept (the attention and MLP output projections and the embeddings are ignored), so the embeddings
stay comparable with the dense model's. The ratio is found by bisection to reach the MACs target.
"""

from __future__ import annotations

import copy
import time
from typing import Any

import zigprune as zp

STEPS = 10


def available() -> bool:
    """Whether torch-pruning is installed."""
    try:
        import torch_pruning  # noqa: F401
    except ImportError:
        return False
    return True


def _prune(dense: Any, example: dict[str, Any], ratio: float) -> Any:
    import torch_pruning as tp
    from transformers.models.bert.modeling_bert import BertSelfAttention

    model = copy.deepcopy(dense)
    attention = [m for m in model.modules() if isinstance(m, BertSelfAttention)]
    heads = {lin: m.num_attention_heads for m in attention for lin in (m.query, m.key, m.value)}
    layers = model.encoder.layer
    ignored = [model.embeddings, *([model.pooler] if model.pooler is not None else [])]
    ignored += [layer.attention.output.dense for layer in layers] + [layer.output.dense for layer in layers]
    pruner = tp.pruner.MetaPruner(
        model, example, importance=tp.importance.MagnitudeImportance(p=2, group_reduction="mean"),
        pruning_ratio=ratio, head_pruning_ratio=ratio, ignored_layers=ignored, num_heads=heads,
        prune_num_heads=True, prune_head_dims=False, round_to=8,
        output_transform=lambda out: out.last_hidden_state.sum(),
    )  # fmt: skip
    for group in pruner.step(interactive=True):
        group.prune()
    for m in attention:
        m.num_attention_heads = pruner.num_heads[m.query]
        m.all_head_size = m.query.out_features
    return model.eval()


def tp_magnitude(dense: Any, example: dict[str, Any], factor: float) -> tuple[Any, float]:
    """The least-pruned model with at least ``factor`` x fewer MACs, and the seconds the search took."""
    start = time.perf_counter()
    goal = zp.count(dense, example)["macs"] / factor
    low, high, best = 0.0, 0.95, None
    for _ in range(STEPS):
        ratio = (low + high) / 2
        model = _prune(dense, example, ratio)
        if zp.count(model, example)["macs"] <= goal:
            best, high = model, ratio
        else:
            low = ratio
    return best if best is not None else _prune(dense, example, high), time.perf_counter() - start
