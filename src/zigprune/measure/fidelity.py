"""How closely a pruned model's outputs follow the dense model's, for models without labels.

Each sample's output (the first output tensor, mean-pooled over the tokens an ``attention_mask``
keeps when it is ``[batch, tokens, features]``) is compared by cosine similarity, and by whether
each sample's nearest other sample (retrieval top-1) stays the same. A causal language model is also
measured as language-model pruning papers measure it: perplexity on the text, and how often its
next-token prediction is the dense model's.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ..core.construct import output_tensors
from ..core.trace import as_inputs, eval_mode


@dataclass(frozen=True)
class Fidelity:
    """Mean cosine similarity to the dense outputs, and the share of samples whose nearest neighbour stays."""

    cosine: float
    retrieval: float
    samples: int


def embeddings(model: nn.Module, batches: Iterable[Any]) -> torch.Tensor:
    """One unit vector per sample: the model's first output, mean-pooled over kept tokens."""
    rows = []
    with torch.no_grad(), eval_mode(model):
        for batch in batches:
            inputs = as_inputs(batch, model)
            out = output_tensors(inputs.call(model))[0].float()
            pooled = mean_pool(out, inputs.kwargs.get("attention_mask"))
            rows.append(F.normalize(pooled.reshape(pooled.shape[0], -1), dim=-1))
    return torch.cat(rows)


def mean_pool(out: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    """A ``[batch, tokens, features]`` output averaged over the tokens ``mask`` keeps; others as they are."""
    if out.dim() != 3 or mask is None or mask.shape != out.shape[:2]:
        return out
    weight = mask.to(out.dtype).unsqueeze(-1)
    return (out * weight).sum(1) / weight.sum(1).clamp(min=1)


def fidelity(reference: torch.Tensor, model: nn.Module, batches: Iterable[Any]) -> Fidelity:
    """Compare ``model``'s :func:`embeddings` on ``batches`` with ``reference`` (the dense model's)."""
    got = embeddings(model, batches)
    cosine = float((got * reference).sum(-1).mean())
    return Fidelity(cosine, _nearest_agree(reference, got), int(got.shape[0]))


def follows(dense: nn.Module, batches: list[Any]) -> Callable[[nn.Module], dict[str, float]]:
    """A run's quality measure without labels: how closely a model follows ``dense`` on ``batches``
    (the mean ``cosine``, the ``retrieval`` agreement and the number of ``held_out`` samples); for a
    causal language model also its ``perplexity`` and ``next_token`` agreement with ``dense``."""
    reference = embeddings(dense, batches)
    tokens = next_tokens(dense, batches)[1] if is_causal_lm(dense) else None

    def quality(model: nn.Module) -> dict[str, float]:
        found = fidelity(reference, model, batches)
        scores = {"cosine": found.cosine, "retrieval": found.retrieval, "held_out": found.samples}
        if tokens is not None:
            perplexity, predicted = next_tokens(model, batches)
            agree = sum(int((a == b).sum()) for a, b in zip(predicted, tokens))
            scores |= {"perplexity": perplexity, "next_token": agree / max(sum(t.numel() for t in tokens), 1)}
        return scores

    return quality


def is_causal_lm(model: nn.Module) -> bool:
    """A Hugging Face causal language model (``...ForCausalLM``, GPT-2's ``...LMHeadModel``)."""
    return type(model).__name__.endswith(("ForCausalLM", "LMHeadModel"))


def next_tokens(model: nn.Module, batches: Iterable[Any]) -> tuple[float, list[torch.Tensor]]:
    """Perplexity of a causal language model on ``batches`` (``input_ids`` and ``attention_mask``; every
    kept token after the first is predicted), and its predicted token at each of those positions."""
    total, count, predicted = 0.0, 0, []
    with torch.no_grad(), eval_mode(model):
        for batch in batches:
            inputs = as_inputs(batch, model)
            logits = output_tensors(inputs.call(model))[0].float()[:, :-1]
            ids = inputs.kwargs["input_ids"]
            targets = ids[:, 1:]
            mask = inputs.kwargs.get("attention_mask", torch.ones_like(ids))[:, 1:].bool()
            loss = F.cross_entropy(logits.transpose(1, 2), targets, reduction="none")
            total += float(loss[mask].sum())
            count += int(mask.sum())
            predicted.append(logits.argmax(-1)[mask])
    return float(torch.tensor(total / max(count, 1)).exp()), predicted


def _nearest_agree(a: torch.Tensor, b: torch.Tensor) -> float:
    if a.shape[0] < 2:
        return 1.0
    sa, sb = a @ a.t(), b @ b.t()
    sa.fill_diagonal_(-2)
    sb.fill_diagonal_(-2)
    return float((sa.argmax(1) == sb.argmax(1)).float().mean())
