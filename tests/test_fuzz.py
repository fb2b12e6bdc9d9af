"""Property-based fuzzing of analyze -> zero_ -> construct over random small conv DAGs
(``random_nets``: conv, BatchNorm, activations, residual adds, concat, gates, scales, chunks, dropout,
shape-reading reshapes, on a fixed 8x8 spatial size)."""

from __future__ import annotations

import os
import warnings

import torch
from hypothesis import HealthCheck, event, given, note, settings
from hypothesis import strategies as st
from torch import nn

import zigprune as zp
from random_nets import FuzzNet, Spec, build, example, randomize, specs

X = example(2)


# -- helpers ----------------------------------------------------------------------------------------------


def analyzed(spec: Spec, seed: int) -> tuple[FuzzNet, zp.GroupSpace]:
    model = build(spec, seed)
    with warnings.catch_warnings():
        warnings.filterwarnings("error", message="zigprune: no channel rule")  # every op here has a rule
        space = zp.analyze(model, X, check=False)
    return model, space


def pick(data: st.DataObject, num_groups: int, frac: float) -> list[int]:
    """``round(frac * num_groups)`` distinct group ids, drawn by hypothesis (shrinking to the first ids)."""
    k = round(frac * num_groups)
    return sorted(data.draw(st.permutations(range(num_groups)), label="order")[:k])


def close(got: torch.Tensor, ref: torch.Tensor) -> None:
    assert got.shape == ref.shape
    diff = float((got - ref).abs().max())
    assert diff <= 1e-4 * max(1.0, float(ref.abs().max())), f"max abs diff {diff:.3g}"


def alone_removable(space: zp.GroupSpace, group: int) -> bool:
    """Zeroing ``group`` by itself empties no parameter dim: no slice consists of its channels only.

    If every zeroed group is alone-removable, the keep-one-channel-per-layer rule cannot keep all of
    them (the last one kept would have to fill a slice by itself), so the slim model must be smaller.
    """
    cls = space.group_class[group]
    return not any(bool((s.classes == cls).all()) for s in space.slices if s.classes.numel())


def fuzz(examples: int) -> settings:
    """Reproducible in CI (~40 s for the file on 2 cores); ZIGPRUNE_FUZZ_EXAMPLES=400 ZIGPRUNE_FUZZ_RANDOM=1
    hunts further with fresh examples."""
    return settings(
        max_examples=int(os.environ.get("ZIGPRUNE_FUZZ_EXAMPLES", examples)),
        deadline=None,
        derandomize=not os.environ.get("ZIGPRUNE_FUZZ_RANDOM"),
        database=None,
        suppress_health_check=[HealthCheck.too_slow],
    )


seeds = st.integers(0, 2**16)
fractions = st.floats(0, 1)


# -- properties -------------------------------------------------------------------------------------------


@fuzz(30)
@given(spec=specs(), seed=seeds, frac=fractions, data=st.data())
def test_slim_model_matches_zeroed_model_and_is_not_larger(
    spec: Spec, seed: int, frac: float, data: st.DataObject
) -> None:
    model, space = analyzed(spec, seed)
    full = zp.count(model, X)
    ids = pick(data, space.num_groups, frac)
    space.zero_(ids)
    with torch.no_grad():
        ref = model(X)
        slim = space.construct(check=False)
        close(slim(X), ref)
    got = zp.count(slim, X)
    zeroed = space.zero_groups()
    removed = bool(space.pruned_classes(zeroed)[:-1].any())
    note(f"groups={space.num_groups} zeroed={ids} full={full} slim={got} removed={removed}")
    event("prunable groups" if space.num_groups else "no prunable groups")
    event("slim model smaller" if removed else "slim model not smaller")
    assert got["params"] <= full["params"] and got["macs"] <= full["macs"]
    # The slim model has exactly the size the space predicts for these zero groups ...
    assert got["params"] == space.params(zeroed)
    assert got["macs"] == space.macs(zeroed)
    # ... it is strictly smaller exactly when some zero group survives the keep-one-channel rule ...
    assert (got["params"] < full["params"]) == removed
    assert (got["macs"] < full["macs"]) == removed
    # ... and that is always the case when no zeroed group fills a parameter dim by itself.
    if ids and all(alone_removable(space, g) for g in ids):
        assert got["params"] < full["params"] and got["macs"] < full["macs"]
    if not ids:
        assert got == full


@fuzz(50)
@given(spec=specs(), seed=seeds, frac=fractions, data=st.data())
def test_slim_model_runs_at_another_batch_size(
    spec: Spec, seed: int, frac: float, data: st.DataObject
) -> None:
    model, space = analyzed(spec, seed)
    space.zero_(pick(data, space.num_groups, frac))
    slim = space.construct(check=False)
    x5 = example(5, seed=1)
    with torch.no_grad():
        close(slim(x5), model(x5))
        close(slim(X), model(X))


@fuzz(50)
@given(spec=specs(), seed=seeds, frac=fractions, data=st.data())
def test_zero_sets_exactly_the_chosen_groups(spec: Spec, seed: int, frac: float, data: st.DataObject) -> None:
    _, space = analyzed(spec, seed)
    assert not space.zero_groups().any()
    ids = pick(data, space.num_groups, frac)
    space.zero_(ids)
    mask = space.zero_groups()
    assert mask.dtype == torch.bool and mask.shape == (space.num_groups,)
    assert torch.nonzero(mask).reshape(-1).tolist() == ids
    assert space.zero_(ids).zero_groups().equal(mask)  # idempotent


@fuzz(50)
@given(spec=specs(), seed=seeds, frac=fractions, data=st.data())
def test_construct_leaves_the_original_model_untouched(
    spec: Spec, seed: int, frac: float, data: st.DataObject
) -> None:
    model, space = analyzed(spec, seed)
    space.zero_(pick(data, space.num_groups, frac))
    before = {k: v.clone() for k, v in model.state_dict().items()}
    text = repr(model)
    with torch.no_grad():
        ref = model(X)
    slim = space.construct(check=False)
    after = model.state_dict()
    assert after.keys() == before.keys()
    for key, value in before.items():
        assert after[key].dtype == value.dtype and after[key].shape == value.shape, key
        assert torch.equal(after[key].view(-1).view(torch.uint8), value.view(-1).view(torch.uint8)), key
    assert repr(model) == text
    assert slim is not model
    assert not {id(p) for p in slim.parameters()} & {id(p) for p in model.parameters()}
    with torch.no_grad():
        assert torch.equal(model(X), ref)


# -- known bugs found by the fuzzer -----------------------------------------------------------------------


class CatChunk(nn.Module):
    """Minimised from the fuzzer: chunk a concat of the raw input and a conv's output."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 5, 1)
        self.fc = nn.Linear(4, 5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        z = torch.cat([x, self.conv(x)], dim=1)  # channels x0 x1 x2 c0 | c1 c2 c3 c4
        _, b = z.chunk(2, dim=1)  # b = c1 c2 c3 c4, position-for-position with x0 x1 x2 c0
        return self.fc(b.mean((2, 3)))


def test_chunk_of_input_and_conv_channels() -> None:
    """Found by this fuzzer: conv channels facing raw input channels across equal chunks must stay."""
    model = randomize(CatChunk(), seed=0)
    space = zp.analyze(model, X, check=False)
    assert space.num_groups == 1
    space.zero_(range(space.num_groups))
    with torch.no_grad():
        ref = model(X)
        close(space.construct(check=False)(X), ref)


@fuzz(25)
@given(spec=specs(shape_reads=True), seed=seeds, frac=fractions, data=st.data())
def test_checked_space_constructs_for_any_selection(
    spec: Spec, seed: int, frac: float, data: st.DataObject
) -> None:
    """With the construction check on, no selection of groups may break construct(), shape reads included."""
    model = build(spec, seed)
    space = zp.analyze(model, X)
    ids = pick(data, space.num_groups, frac)
    note(f"groups={space.num_groups} zeroed={ids} check={space.check}")
    space.zero_(ids)
    with torch.no_grad():
        close(space.construct()(X), model(X))
