"""Ops whose channels are kept whole: recurrent cells, gathers, and any op without a rule.

These are correct by construction: every channel that reaches them, and every parameter dim they
read, is unprunable, and their outputs carry no channel identity.
"""

from __future__ import annotations

from typing import Any

from .registry import Ctx, rule

KEPT_WHOLE = (
    "lstm", "gru", "rnn_tanh", "rnn_relu", "lstm_cell", "gru_cell", "rnn_tanh_cell", "rnn_relu_cell",
    "embedding_bag", "_embedding_bag", "gather", "scatter", "scatter_add", "scatter_reduce", "index_put",
    "index_add", "index_copy", "take", "take_along_dim", "masked_select", "masked_scatter", "nonzero",
    "topk", "sort", "argsort", "einsum", "tensordot", "kron", "diag", "tril", "triu", "fft_fft", "fft_rfft",
    "_native_multi_head_attention", "grid_sampler", "grid_sampler_2d", "im2col", "col2im", "unfold",
)  # fmt: skip

TENSOR_FACTORIES = (
    "arange", "zeros", "ones", "full", "empty", "zeros_like", "ones_like", "full_like", "empty_like", "rand",
    "randn", "randint", "rand_like", "randn_like", "scalar_tensor", "tensor", "linspace", "eye", "new_zeros",
    "new_ones", "new_full", "new_empty", "_assert_tensor_metadata", "_assert_scalar",
    "sym_constrain_range_for_size",
    "_assert_async", "sym_size", "sym_numel", "sym_stride", "item", "_local_scalar_dense", "lift_fresh",
)  # fmt: skip


@rule(*KEPT_WHOLE)
def kept_whole(ctx: Ctx) -> Any:
    ctx.poison_inputs(f"{ctx.name} keeps its channels whole")
    return ctx.rigid_out()


@rule(*TENSOR_FACTORIES)
def factory(ctx: Ctx) -> Any:
    return ctx.rigid_out()


def unknown(ctx: Ctx) -> Any:
    """Fallback for ops with no rule: conservative, and the caller warns once naming the op."""
    ctx.poison_inputs(f"no channel rule for {ctx.name}")
    return ctx.rigid_out()
