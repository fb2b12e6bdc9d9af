"""analyze's construction check: families that must stay equal in width are tied, a channel facing a
tensor without channel identity is unprunable, and a failing family loses only its culprit groups."""

from __future__ import annotations

import itertools
import random
import re

import pytest
import torch
from torch import nn

import zigprune as zp
from zigprune.core.store import Store


class ShapeRead(nn.Module):
    """A Linear over channels whose output is reshaped to the conv's channel count, read from its shape."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3, padding=1)
        self.lin = nn.Linear(8, 8)
        self.head = nn.Conv2d(8, 4, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.conv(x)
        b, c, h, w = y.shape
        return self.head(self.lin(y.flatten(2).transpose(1, 2)).transpose(1, 2).reshape(b, c, h, w))


class CatRaw(nn.Module):
    """A learned per-channel scale over ``cat([x_raw, conv(x_raw)])``: its first entry faces the input."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 24, 3, padding=1)
        self.scale = nn.Parameter(torch.rand(1, 25, 1, 1) + 0.5)
        self.head = nn.Conv2d(25, 4, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(torch.cat([x, self.conv(x)], 1) * self.scale)


class ReadsTheInputWidth(nn.Module):
    """A Linear over channels reshaped to the *input's* channel count, concatenated with a conv's output:
    one family, whose Linear channels must all stay while the conv's may go."""

    def __init__(self) -> None:
        super().__init__()
        self.lin = nn.Linear(3, 3)
        self.conv = nn.Conv2d(3, 6, 1)
        self.head = nn.Conv2d(9, 4, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        y = self.lin(x.flatten(2).transpose(1, 2)).transpose(1, 2).reshape(b, c, h, w)
        return self.head(torch.cat([y, self.conv(x)], 1))


def _every_selection_constructs(make: type[nn.Module], x: torch.Tensor, trials: int = 12) -> int:
    """Zero random selections (unequal ones included) in fresh copies; each must construct exactly."""
    torch.manual_seed(0)
    reference = make().eval()
    groups = 0
    for trial in range(trials):
        model = make().eval()
        model.load_state_dict(reference.state_dict())
        space = zp.analyze(model, x)
        groups = space.num_groups
        rng = random.Random(trial)
        space.zero_(rng.sample(range(groups), rng.randint(1, groups)))
        with torch.no_grad():
            torch.testing.assert_close(space.construct()(x), model(x), atol=1e-5, rtol=1e-4)
    return groups


def test_reshape_sized_by_another_tensor_ties_the_two_families() -> None:
    x = torch.randn(2, 3, 4, 4)
    space = zp.analyze(ShapeRead().eval(), x)
    assert space.check.tied == [["conv", "lin"]]
    assert space.num_groups == 8 and not space.check.dropped and not space.check.cut
    assert _every_selection_constructs(ShapeRead, x) == 8


def test_scale_entry_facing_the_raw_input_is_unprunable_and_the_rest_prunable() -> None:
    x = torch.randn(2, 1, 6, 6)
    space = zp.analyze(CatRaw().eval(), x)
    assert space.num_groups == 24
    family = next(f for f in space.families if f.groups)
    assert any("scale meets a tensor without channel identity" in r for r in family.reasons)
    assert not space.check.changed  # the rule saw it: nothing was left for the check
    assert _every_selection_constructs(CatRaw, x) == 24


def test_check_cuts_only_the_culprit_group(monkeypatch: pytest.MonkeyPatch) -> None:
    """A rule that misses the raw-input fact leaves one bad group: the check removes that one only."""
    poison = Store.poison

    def forgetful(self: Store, ids: torch.Tensor, reason: str) -> None:
        if "without channel identity" not in reason:
            poison(self, ids, reason)

    monkeypatch.setattr(Store, "poison", forgetful)
    x = torch.randn(2, 1, 6, 6)
    assert zp.analyze(CatRaw().eval(), x, check=False).num_groups == 25
    space = zp.analyze(CatRaw().eval(), x)
    assert space.num_groups == 24
    assert sum(space.check.cut.values()) == 1 and not space.check.dropped
    assert _every_selection_constructs(CatRaw, x) == 24


def test_check_finds_every_culprit_of_a_family_not_only_those_it_zeroed() -> None:
    x = torch.randn(2, 3, 4, 4)
    space = zp.analyze(ReadsTheInputWidth().eval(), x)
    assert space.num_groups == 6 and sum(space.check.cut.values()) == 3 and not space.check.dropped
    assert _every_selection_constructs(ReadsTheInputWidth, x) == 6


def test_construction_error_says_what_to_do_instead() -> None:
    x = torch.randn(2, 3, 4, 4)
    model = ShapeRead().eval()
    space = zp.analyze(model, x, check=False)
    conv = next(f for f in space.families if f.name == "conv")
    space.zero_(conv.groups[:3])
    with pytest.raises(zp.ConstructionError) as info:
        space.construct()
    message = str(info.value)
    assert "zp.analyze(..., check=True) (the default)" not in message
    families = [int(i) for i in re.findall(r"#(\d+)", message)]
    assert conv.index in families and f"space.drop_families({families}" in message
    space.drop_families(families, "construction fails")
    with torch.no_grad():
        torch.testing.assert_close(space.construct()(x), model(x))


def test_summary_reports_what_the_check_changed(monkeypatch: pytest.MonkeyPatch) -> None:
    text = zp.analyze(ShapeRead().eval(), torch.randn(2, 3, 4, 4)).summary()
    assert "tied to keep equal widths: conv + lin" in text
    assert "construction check" not in zp.analyze(CatRaw().eval(), torch.randn(2, 1, 6, 6)).summary()
    monkeypatch.setattr("zigprune.core.check._partner", lambda *args: None)
    space = zp.analyze(ShapeRead().eval(), torch.randn(2, 3, 4, 4))
    assert space.num_groups == 0 and sorted(space.check.dropped) == ["conv", "lin"]
    assert "made wholly unprunable: " in space.summary()


def test_a_tied_space_saves_and_loads(tmp_path) -> None:
    """The check's ties are recorded in plan.json, so zp.load rebuilds the same groups without the check."""
    x = torch.randn(2, 3, 4, 4)
    torch.manual_seed(0)
    model = ShapeRead().eval()
    space = zp.analyze(model, x)
    space.zero_(space.families[next(f.index for f in space.families if f.groups)].groups[:3])
    slim = space.construct()
    directory = zp.save(slim, space, "test_construction_check:ShapeRead", tmp_path / "run")
    loaded = zp.load(directory, factory=ShapeRead)
    with torch.no_grad():
        torch.testing.assert_close(loaded(x), model(x))
    assert loaded.lin.out_features == 5


class EqualSizes(nn.Module):
    """Found by an outside generator (issue 27 §5): ``b``'s output is reshaped to ``a``'s channel count,
    and two more families of the same size sit between them in the family order."""

    def __init__(self, order: str) -> None:
        super().__init__()
        self.order = order
        self.a, self.x, self.z = (nn.Conv2d(3, 2, 1) for _ in range(3))
        self.b = nn.Linear(2, 2)
        self.heads = nn.ModuleDict({k: nn.Linear(2, 5) for k in "axzy"})

    def forward(self, inp: torch.Tensor) -> torch.Tensor:
        outs = {name: torch.relu(getattr(self, name)(inp)) for name in self.order}
        bsz, c, h, w = outs["a"].shape
        outs["y"] = self.b(outs["x"].flatten(2).transpose(1, 2)).transpose(1, 2).reshape(bsz, c, h, w)
        return sum(self.heads[k](outs[k].mean((2, 3))) for k in "axzy")


@pytest.mark.parametrize("order", ["xaz", "zax"])
def test_families_of_equal_size_are_told_apart_however_many_there_are(order: str) -> None:
    """Four families of two groups: counts given in turn ([0, 1, 0, 1]) left ``a`` and ``b`` equal in
    every probe, and 96 of the 255 selections failed to construct; base-2 digits tell them apart."""
    x = torch.randn(2, 3, 4, 4)
    torch.manual_seed(0)
    model = EqualSizes(order).eval()
    space = zp.analyze(model, x)
    assert space.check.tied == [["a", "b"]]
    state = {k: v.clone() for k, v in model.state_dict().items()}
    for r in range(1, space.num_groups + 1):
        for ids in itertools.combinations(range(space.num_groups), r):
            model.load_state_dict(state)
            space.zero_(list(ids))
            with torch.no_grad():
                torch.testing.assert_close(space.construct(check=False)(x), model(x))


def _without_blocks(monkeypatch: pytest.MonkeyPatch) -> None:
    from zigprune.core import blocks

    monkeypatch.setattr(blocks.Blocks, "breaks", lambda self, space, groups, atol: None)


@pytest.mark.parametrize("make", ["resnet20", "bert", "blocked"])
def test_probes_in_one_block_agree_with_probes_of_the_whole_model(make: str, monkeypatch) -> None:
    """Local probes (the submodule holding a family, run on its captured input) give the same answer as
    full-model probes, and the check ends with the same groups either way."""
    from test_timm_attention import BlockedAttention

    from hf_zoo import build as hf_build
    from zigprune import models
    from zigprune.core.blocks import Blocks
    from zigprune.core.probe import breaks

    if make == "resnet20":
        model, x = models.create("resnet20").eval(), torch.randn(2, 3, 8, 8)
    elif make == "bert":
        model, x = hf_build("bert_qa")
    else:
        model = nn.Sequential(BlockedAttention(heads_from_input=True), BlockedAttention()).eval()
        x = torch.randn(2, 3, 5, 16)
    space = zp.analyze(model, x, check=False)
    blocks = Blocks.of(space)
    blocks.inputs = blocks.capture(space)
    held = [f for f in space.families if f.groups and blocks.holder[f.index] in blocks.inputs]
    assert held, "some family sits in one submodule"
    for family in held[:6]:
        for groups in (family.groups[:1], family.groups[: len(family.groups) // 2]):
            space.blocks = blocks
            local = breaks(space, groups)
            space.blocks = None
            assert local == breaks(space, groups), (family.name, groups)
    checked = zp.analyze(model, x)
    _without_blocks(monkeypatch)
    plain = zp.analyze(model, x)
    assert checked.num_groups == plain.num_groups and checked.check.dropped == plain.check.dropped


class Cached(nn.Module):
    """A forward that caches a tensor in a plain dict attribute; a list attribute naming a weight (as an
    RNN's ``_flat_weights`` does)."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3, padding=1)
        self.head = nn.Conv2d(8, 4, 1)
        self.cache: dict[str, torch.Tensor] = {}
        self.weights = [self.head.weight]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.cache["last"] = x
        return self.head(self.conv(x).relu())


def test_probe_copies_share_weights_but_leave_the_model_untouched() -> None:
    """The check's copies (build(share=True)) skip deepcopy: a copy must still hold its own attributes
    and containers, its cut tensors wherever the module names them, and match a full copy."""
    from zigprune.core.construct import build, outputs

    torch.manual_seed(0)
    model = Cached().eval()
    x = torch.randn(2, 3, 8, 8)
    space = zp.analyze(model, x, check=False)
    space.zero_([0, 3, 5])
    pruned = space.pruned_classes(space.zero_groups())
    probe_copy, full_copy = build(space, pruned, share=True), build(space, pruned)
    assert probe_copy.conv.weight.shape[0] == 5 and probe_copy.conv.out_channels == 5
    assert model.conv.weight.shape[0] == 8 and model.conv.out_channels == 8
    assert probe_copy.weights[0] is probe_copy.head.weight and probe_copy.head.weight.shape[1] == 5
    assert model.weights[0] is model.head.weight and model.head.weight.shape[1] == 8
    probe_copy.cache.clear()
    outputs(model, space.inputs)
    assert "last" in model.cache
    assert probe_copy.cache == {}
    for got, want in zip(outputs(probe_copy, space.inputs), outputs(full_copy, space.inputs)):
        assert torch.equal(got, want)
    assert probe_copy.conv.weight.data_ptr() != model.conv.weight.data_ptr()
    assert probe_copy.head.bias is model.head.bias
