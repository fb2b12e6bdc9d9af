"""timm's attention patterns (issue 17), each as a small module: heads pruned, and exact.

timm itself is not needed: every class copies the few lines of a timm model that mattered.
"""

import copy
import random

import pytest
import torch
import torch.nn.functional as F
from test_timm_patterns import exact, family
from torch import nn

import zigprune as zp
from equality import prune_and_check

# -- ViT attention (item 3) -------------------------------------------------------------------------------


class Attention(nn.Module):
    """timm's ``Attention``: one qkv Linear, ``reshape(B, N, 3, self.num_heads, self.head_dim)``,
    ``unbind(0)``, optional per-head ``q_norm``/``k_norm``, sdpa or (``fused_attn=False``) the eager
    ``q @ k.transpose(-2, -1)``, softmax, ``@ v``; then ``reshape(B, N, self.attn_dim)``."""

    def __init__(
        self, dim: int = 16, num_heads: int = 4, qk_norm: bool = False, fused_attn: bool = True
    ) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.head_dim = dim // num_heads
        self.attn_dim = num_heads * self.head_dim
        self.scale = self.head_dim**-0.5
        self.fused_attn = fused_attn
        self.qkv = nn.Linear(dim, self.attn_dim * 3)
        self.q_norm = nn.LayerNorm(self.head_dim) if qk_norm else nn.Identity()
        self.k_norm = nn.RMSNorm(self.head_dim) if qk_norm else nn.Identity()
        self.proj = nn.Linear(self.attn_dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, N, _ = x.shape
        qkv = self.qkv(x).reshape(B, N, 3, self.num_heads, self.head_dim).permute(2, 0, 3, 1, 4)
        q, k, v = qkv.unbind(0)
        q, k = self.q_norm(q), self.k_norm(k)
        if self.fused_attn:
            x = F.scaled_dot_product_attention(q, k, v)
        else:
            attn = (q @ k.transpose(-2, -1)) * self.scale
            x = attn.softmax(dim=-1) @ v
        return self.proj(x.transpose(1, 2).reshape(B, N, self.attn_dim))


class GroupedQueryAttention(nn.Module):
    """gemma4_vit's attention: separate projections, ``k.repeat_interleave(self.num_kv_groups, dim=1)``."""

    def __init__(self, dim: int = 16, num_heads: int = 4, num_kv_heads: int = 2) -> None:
        super().__init__()
        self.num_heads, self.num_kv_heads, self.head_dim = num_heads, num_kv_heads, dim // num_heads
        self.num_kv_groups = num_heads // num_kv_heads
        self.q_proj = nn.Linear(dim, num_heads * self.head_dim)
        self.k_proj = nn.Linear(dim, num_kv_heads * self.head_dim)
        self.v_proj = nn.Linear(dim, num_kv_heads * self.head_dim)
        self.o_proj = nn.Linear(num_heads * self.head_dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, N, _ = x.shape
        q = self.q_proj(x).view(B, N, self.num_heads, self.head_dim).transpose(1, 2)
        k = self.k_proj(x).view(B, N, self.num_kv_heads, self.head_dim).transpose(1, 2)
        v = self.v_proj(x).view(B, N, self.num_kv_heads, self.head_dim).transpose(1, 2)
        k = k.repeat_interleave(self.num_kv_groups, dim=1)
        v = v.repeat_interleave(self.num_kv_groups, dim=1)
        x = F.scaled_dot_product_attention(q, k, v)
        return self.o_proj(x.transpose(1, 2).reshape(B, N, -1))


class Block(nn.Module):
    def __init__(self, attn: nn.Module) -> None:
        super().__init__()
        self.embed = nn.Linear(8, 16)
        self.attn = attn
        self.head = nn.Linear(16, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.embed(x)
        return self.head(h + self.attn(h)).mean(1)


@pytest.mark.parametrize("fused_attn", [True, False])
@pytest.mark.parametrize("qk_norm", [False, True])
def test_vit_attention_heads_are_pruned_exactly(qk_norm: bool, fused_attn: bool) -> None:
    x = torch.randn(2, 5, 8)
    attn = Attention(qk_norm=qk_norm, fused_attn=fused_attn)
    space, slim = exact(Block(attn), x, other_inputs=torch.randn(3, 7, 8))
    assert len(family(space, "attn.qkv").groups) == 4
    assert slim.attn.num_heads == slim.attn.attn_dim // 4 < 4
    assert slim.attn.qkv.out_features == 3 * slim.attn.attn_dim


def test_random_eager_heads_are_cut_exactly() -> None:
    """Heads of the eager path, chosen at random: the slim model keeps the rest, with its head counts."""
    torch.manual_seed(0)
    model, x = Block(Attention(fused_attn=False)).eval(), torch.randn(2, 5, 8)
    for seed in range(3):
        trial = copy.deepcopy(model)
        space = zp.analyze(trial, x)
        heads = family(space, "attn.qkv").groups
        chosen = random.Random(seed).sample(heads, 1 + seed % 3)
        space.zero_(chosen)
        reference = trial(x)
        slim = space.construct()
        torch.testing.assert_close(slim(x), reference, rtol=1e-5, atol=1e-6)
        assert slim.attn.num_heads == 4 - len(chosen) and slim.attn.attn_dim == 4 * slim.attn.num_heads
        assert zp.count(slim, x)["macs"] == space.macs(space.zero_groups())


class ClassAttention(nn.Module):
    """CaiT's ``ClassAttn`` (eager path): the head size is ``C // self.num_heads`` of the input width C,
    and the heads merge back with ``reshape(B, 1, C)``, so neither follows a cut of the heads."""

    def __init__(self, dim: int = 16, num_heads: int = 4) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.scale = (dim // num_heads) ** -0.5
        self.q, self.k, self.v = nn.Linear(dim, dim), nn.Linear(dim, dim), nn.Linear(dim, dim)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, N, C = x.shape
        q = (
            self.q(x[:, 0])
            .unsqueeze(1)
            .reshape(B, 1, self.num_heads, C // self.num_heads)
            .permute(0, 2, 1, 3)
        )
        k = self.k(x).reshape(B, N, self.num_heads, C // self.num_heads).permute(0, 2, 1, 3)
        v = self.v(x).reshape(B, N, self.num_heads, C // self.num_heads).permute(0, 2, 1, 3)
        attn = ((q * self.scale) @ k.transpose(-2, -1)).softmax(dim=-1)
        return self.proj((attn @ v).transpose(1, 2).reshape(B, 1, C))


class ClassBlock(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.embed, self.attn = nn.Linear(8, 16), ClassAttention()
        self.mlp = nn.Sequential(nn.Linear(16, 32), nn.GELU(), nn.Linear(32, 3))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.mlp(self.attn(self.embed(x))).mean(1)


def test_heads_sized_from_the_input_width_stay_with_a_reason() -> None:
    space, _ = prune_and_check(ClassBlock(), torch.randn(2, 5, 8), 0.5)
    heads = family(space, "attn.q")
    assert not heads.groups and heads.width == 4
    (reason,) = heads.reasons
    assert "the forward of attn computes a size that does not follow a cut of its heads" in reason
    assert "C // num_heads" in reason
    assert len(family(space, "mlp.0").groups) == 32


def test_grouped_query_attention_with_repeated_keys_prunes_whole_key_value_groups() -> None:
    x = torch.randn(2, 5, 8)
    space, slim = exact(Block(GroupedQueryAttention()), x, 1.0, other_inputs=torch.randn(3, 7, 8))
    assert len(family(space, "attn.q_proj").groups) == 2
    assert slim.attn.num_kv_heads == 1 and slim.attn.num_heads == 2
    assert slim.attn.k_proj.out_features == 4


# -- multi-query attention (item 6, mobilenetv5) ------------------------------------------------------


class MultiQueryAttention(nn.Module):
    """MobileNetV5's ``MultiQueryAttention2d``: ``num_heads`` query heads, one key and one value head
    (1x1 convs), sdpa, and the heads merged back into channels for the output conv."""

    def __init__(self, dim: int = 8, num_heads: int = 4, key_dim: int = 4, value_dim: int = 4) -> None:
        super().__init__()
        self.num_heads, self.key_dim = num_heads, key_dim
        self.stem = nn.Conv2d(3, dim, 1)
        self.query = nn.Conv2d(dim, num_heads * key_dim, 1)
        self.key = nn.Conv2d(dim, key_dim, 1)
        self.value = nn.Conv2d(dim, value_dim, 1)
        self.output = nn.Conv2d(num_heads * value_dim, 2, 1)

    @staticmethod
    def _reshape_input(t: torch.Tensor) -> torch.Tensor:
        s = t.shape
        return t.reshape(s[0], s[1], -1).transpose(1, 2).unsqueeze(1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.relu(self.stem(x))
        B, _, H, W = x.shape
        q = self.query(x).reshape(B, self.num_heads, self.key_dim, -1).transpose(-1, -2)
        o = F.scaled_dot_product_attention(
            q, self._reshape_input(self.key(x)), self._reshape_input(self.value(x))
        )
        o = o.transpose(1, 2).reshape(B, H, W, -1).permute(0, 3, 1, 2)
        return self.output(o).mean((2, 3))


def test_multi_query_attention_prunes_value_channels_in_every_head() -> None:
    space, slim = exact(MultiQueryAttention(), torch.randn(2, 3, 4, 4))
    assert len(family(space, "value").groups) == 4
    assert slim.output.in_channels == 4 * slim.value.out_channels < 16
    assert any("share one key/value head" in r for r in family(space, "query").reasons)


# -- relative-position bias (Swin's WindowAttention) ------------------------------------------------------


class WindowAttention(nn.Module):
    """timm's Swin ``WindowAttention``: a per-head bias gathered from ``relative_position_bias_table``
    by a fixed index buffer, ``.view(N, N, -1).permute(2, 0, 1)``, given to sdpa or added to the scores."""

    def __init__(self, dim: int = 16, num_heads: int = 4, window: int = 3, fused: bool = True) -> None:
        super().__init__()
        self.num_heads, self.head_dim, self.fused = num_heads, dim // num_heads, fused
        self.qkv = nn.Linear(dim, dim * 3)
        self.proj = nn.Linear(dim, dim)
        self.relative_position_bias_table = nn.Parameter(torch.randn((2 * window - 1) ** 2, num_heads))
        coords = torch.stack(
            torch.meshgrid(torch.arange(window), torch.arange(window), indexing="ij")
        ).flatten(1)
        relative = (coords[:, :, None] - coords[:, None, :]).permute(1, 2, 0) + window - 1
        self.register_buffer(
            "relative_position_index", relative[..., 0] * (2 * window - 1) + relative[..., 1]
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, N, _ = x.shape
        qkv = self.qkv(x).reshape(B, N, 3, self.num_heads, self.head_dim).permute(2, 0, 3, 1, 4)
        q, k, v = qkv.unbind(0)
        bias = self.relative_position_bias_table[self.relative_position_index.view(-1)].view(N, N, -1)
        bias = bias.permute(2, 0, 1).contiguous().unsqueeze(0)
        if self.fused:
            x = F.scaled_dot_product_attention(q, k, v, attn_mask=bias)
        else:
            x = ((q * self.head_dim**-0.5) @ k.transpose(-2, -1) + bias).softmax(-1) @ v
        return self.proj(x.transpose(1, 2).reshape(B, N, -1))


@pytest.mark.parametrize("fused", [True, False])
def test_relative_position_bias_goes_with_its_head(fused: bool) -> None:
    """With sdpa (timm's fused path) and eager, where the bias is added to the scores."""
    space, slim = exact(WindowAttention(fused=fused), torch.randn(2, 9, 16))
    heads = family(space, "qkv")
    assert len(heads.groups) == 4 and not heads.reasons
    kept = slim.relative_position_bias_table.shape[1]
    assert kept < 4 and slim.qkv.out_features == 3 * kept * 4


# -- extra dims between batch and tokens (NesT's blocks, Hiera's mask units; issue 27 §5) -------------------


class BlockedAttention(nn.Module):
    """NesT: ``qkv(x).reshape(B, T, N, 3, H, C // H).permute(3, 0, 4, 1, 2, 5)``: heads on dim 1, the T
    blocks on dim -3 between them and the tokens. With ``heads_from_input`` the head width is
    ``C // self.num_heads`` as NesT writes it (C the input width), which a head cut cannot follow."""

    def __init__(self, dim: int = 16, num_heads: int = 4, heads_from_input: bool = False) -> None:
        super().__init__()
        self.num_heads, self.head_dim, self.heads_from_input = num_heads, dim // num_heads, heads_from_input
        self.qkv = nn.Linear(dim, dim * 3)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, T, N, C = x.shape
        width = C // self.num_heads if self.heads_from_input else self.head_dim
        qkv = self.qkv(x).reshape(B, T, N, 3, self.num_heads, width).permute(3, 0, 4, 1, 2, 5)
        q, k, v = qkv.unbind(0)
        x = F.scaled_dot_product_attention(q, k, v)
        return self.proj(x.permute(0, 2, 3, 4, 1).reshape(B, T, N, -1))


def test_heads_before_extra_dims_are_pruned_exactly() -> None:
    """Crashed analysis (``head_ids.reshape(kv_heads, -1)``: heads were read from dim -3, the blocks)."""
    space, slim = exact(BlockedAttention(), torch.randn(2, 3, 5, 16))
    assert len(family(space, "qkv").groups) == 4 and slim.num_heads < 4


def test_heads_whose_width_follows_the_input_are_kept_with_a_reason() -> None:
    space = zp.analyze(BlockedAttention(heads_from_input=True).eval(), torch.randn(2, 3, 5, 16))
    assert not family(space, "qkv").groups and space.check.dropped


class MaskUnitAttention(nn.Module):
    """Hiera: one head, the mask units on dim -3: ``[B, heads, units, tokens, channels]``."""

    def __init__(self, dim: int = 16) -> None:
        super().__init__()
        self.qkv = nn.Linear(dim, dim * 3)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, U, N, C = x.shape
        q, k, v = self.qkv(x).reshape(B, 1, U, N, 3, C).unbind(4)
        return self.proj(F.scaled_dot_product_attention(q, k, v)[:, 0])


def test_one_head_over_mask_units_analyses_and_stays_exact() -> None:
    model = MaskUnitAttention().eval()
    x = torch.randn(2, 4, 5, 16)
    space = zp.analyze(model, x)
    ids = list(range(0, space.num_groups, 2))
    space.zero_(ids)
    with torch.no_grad():
        torch.testing.assert_close(space.construct()(x), model(x))


class WindowedHeads(nn.Module):
    """Hiera's ``MaskUnitAttention`` with several heads: ``reshape(B, -1, windows, 3, self.heads,
    self.head_dim)``, and the heads merged back with ``reshape(B, -1, self.dim_out)``; ``dim_out`` is
    the inner width (``heads * head_dim``), wider than the input at a stage change."""

    def __init__(self, dim: int = 8, dim_out: int = 16, heads: int = 4, windows: int = 2) -> None:
        super().__init__()
        self.dim_out, self.heads, self.head_dim, self.windows = dim_out, heads, dim_out // heads, windows
        self.qkv = nn.Linear(dim, 3 * dim_out)
        self.proj = nn.Linear(dim_out, dim_out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B = x.shape[0]
        qkv = self.qkv(x).reshape(B, -1, self.windows, 3, self.heads, self.head_dim).permute(3, 0, 4, 2, 1, 5)
        q, k, v = qkv.unbind(0)
        x = F.scaled_dot_product_attention(q, k, v)
        return self.proj(x.transpose(1, 3).reshape(B, -1, self.dim_out))


def test_heads_merged_by_an_inner_width_named_dim_out_are_pruned_exactly() -> None:
    """The check dropped every one of Hiera's attention families (``dim_out`` kept its full width)."""
    space, slim = exact(WindowedHeads(), torch.randn(2, 6, 8))
    assert len(family(space, "qkv").groups) == 4 and not space.check.dropped
    assert slim.heads < 4 and slim.dim_out == slim.heads * slim.head_dim


def test_a_rule_that_raises_leaves_its_channels_unprunable_with_one_warning(monkeypatch) -> None:
    from zigprune.rules import registry

    def broken(ctx):
        raise IndexError("a layout this rule does not read")

    for name in ("scaled_dot_product_attention", "_scaled_dot_product_flash_attention_for_cpu"):
        monkeypatch.setitem(registry.RULES, name, broken)
    model = Attention().eval()
    x = torch.randn(2, 5, 16)
    with pytest.warns(UserWarning, match="cannot read 1 use") as caught:
        space = zp.analyze(model, x)
    assert len([w for w in caught if "zigprune" in str(w.message)]) == 1
    assert "IndexError: a layout this rule does not read in " in str(caught[0].message)
    assert not family(space, "qkv").groups
    space.zero_(range(space.num_groups))
    with torch.no_grad():
        torch.testing.assert_close(space.construct()(x), model(x))
