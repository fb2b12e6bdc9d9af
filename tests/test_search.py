"""Policy search (zp.search): the DP solver against brute force, policies that round-trip and apply to
exactly their widths, every strategy within its budget, and the bad inputs refused."""

from __future__ import annotations

import itertools
import json
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from torch import nn

import zigprune as zp
from zigprune.errors import CalibrationError, OptimizerError, PolicyError, TargetError, UnknownNameError
from zigprune.posttrain.prune import group_scores
from zigprune.search import STRATEGIES, ErrorDatabase, load_policy, parse_budget, save_policy, score_cache
from zigprune.search.budget import Budget
from zigprune.search.database import Item
from zigprune.search.evolution import Evaluator
from zigprune.search.solvers import solve


def toy(seed: int) -> ErrorDatabase:
    """Four chains with integer savings (exact in the DP's bins) and random increasing errors."""
    g = torch.Generator().manual_seed(seed)
    items = []
    for _ in range(4):
        length = int(torch.randint(2, 5, (1,), generator=g))
        saved = torch.cat([torch.zeros(1), torch.randint(1, 6, (length,), generator=g).cumsum(0)]).double()
        errors = torch.cat([torch.zeros(1), torch.rand(length, generator=g).cumsum(0)]).double()
        items.append(Item([[j] for j in range(length)], errors, saved, length))
    return ErrorDatabase(None, None, torch.zeros(0), items, None, 0.0, None)


@pytest.mark.parametrize("seed", range(6))
def test_dp_equals_brute_force_on_a_toy_database(seed: int) -> None:
    db = toy(seed)
    total = float(sum(item.saved[-1] for item in db.items))
    ask = 20.0 if total >= 25 else 10.0  # divides the DP's bins: every saving is exact there
    best = min(
        (sum(float(item.errors[j]) for item, j in zip(db.items, levels)), levels)
        for levels in itertools.product(*(range(len(item.units) + 1) for item in db.items))
        if sum(float(item.saved[j]) for item, j in zip(db.items, levels)) >= ask
    )
    levels = solve(db, ask)
    assert sum(float(item.saved[j]) for item, j in zip(db.items, levels)) >= ask
    assert db.error(levels) == pytest.approx(best[0])


class Net(nn.Module):
    """Three convolutions of unequal cost and a head: families that matter unequally."""

    def __init__(self) -> None:
        super().__init__()
        self.a, self.b, self.c = (
            nn.Conv2d(1, 16, 3, padding=1),
            nn.Conv2d(16, 16, 3, padding=1),
            nn.Conv2d(16, 24, 3),
        )
        self.head = nn.Linear(24, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.c(self.b(self.a(x).relu()).relu()).relu()
        return self.head(x.mean((2, 3)))


@pytest.fixture()
def setting() -> tuple[Net, torch.Tensor, list[torch.Tensor]]:
    torch.manual_seed(0)
    model = Net().eval()
    x = torch.randn(2, 1, 8, 8)
    calibration = [torch.randn(32, 1, 8, 8) for _ in range(2)]
    return model, x, calibration


@pytest.mark.parametrize("strategy", ["dp", "global", "uniform", "evolution", "bo", "amc", "galen", "gnn-rl"])
def test_every_strategy_meets_its_budget_and_the_policy_applies_exactly(setting, strategy: str) -> None:
    model, x, calibration = setting
    space = zp.analyze(model, x)
    policy = zp.search(space, calibration, "macs=0.6", strategy=strategy, progress=False, evaluations=3)
    assert policy.strategy == strategy and policy.predicted["share"] <= 0.6
    if strategy not in ("global", "uniform"):  # the others give back every unit the budget allows
        scores = score_cache.cached_scores(space, calibration, progress=False)[0]
        db = ErrorDatabase.build(space, scores, parse_budget("macs=0.6").target())
        assert_nothing_comes_back(db, db.levels_of(policy.removed(space, scores)))
    before = {k: v.clone() for k, v in model.state_dict().items()}
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())  # search changes nothing
    ids = zp.prune(space, calibration, policy=policy, progress=False)
    removed = torch.zeros(space.num_groups, dtype=torch.bool)
    removed[ids] = True
    assert zp.Policy.of(space, removed).families == policy.families
    assert space.macs(removed) <= 0.6 * space.total_macs
    slim = space.construct()
    assert slim(x).shape == (2, 4)


def test_dp_errs_less_than_the_baselines_at_the_same_budget(setting) -> None:
    model, x, calibration = setting
    space = zp.analyze(model, x)
    errors = {
        s: zp.search(space, calibration, "macs=0.5", strategy=s, progress=False).predicted["error"]
        for s in ("dp", "global", "uniform")
    }
    assert errors["dp"] <= min(errors["global"], errors["uniform"]) + 1e-9


def test_a_second_search_of_the_same_weights_and_data_reads_the_scores(
    setting, tmp_path, monkeypatch
) -> None:
    """Scores are kept on disk by what they depend on: another budget on the same model and data scores
    nothing; changed weights or data score again; a damaged file is scored again, with a warning."""
    model, x, calibration = setting
    monkeypatch.setenv("ZIGPRUNE_CACHE_DIR", str(tmp_path))
    calls = []
    monkeypatch.setattr(score_cache, "group_scores", lambda *a, **k: calls.append(1) or group_scores(*a, **k))
    space = zp.analyze(model, x)
    first = zp.search(space, calibration, "macs=0.6", progress=False)
    assert zp.search(space, calibration, "macs=0.6", progress=False).families == first.families
    zp.search(space, calibration, "macs=0.4", strategy="uniform", progress=False)
    assert len(calls) == 1
    scores, path = score_cache.cached_scores(space, calibration, progress=False)
    assert path is not None and torch.allclose(scores, group_scores(space, calibration, progress=False))
    zp.search(space, calibration[:1], "macs=0.6", progress=False)
    with torch.no_grad():
        model.a.weight[0] += 1.0
    zp.search(space, calibration, "macs=0.6", progress=False)
    assert len(calls) == 3
    for kept in (tmp_path / "scores").iterdir():
        kept.write_bytes(b"not a checkpoint")
    with pytest.warns(UserWarning, match="scoring again"):
        zp.search(space, calibration, "macs=0.6", progress=False)
    assert len(calls) == 4 and score_cache.cached_scores(space, calibration, progress=False)[1] is not None


def test_dp_keeps_every_unit_the_budget_allows(setting) -> None:
    """The knapsack trusts summed savings, which overstate; the answer is relaxed on the exact cost, so
    no unit it removes could come back within the budget."""
    model, x, calibration = setting
    space = zp.analyze(model, x)
    budget = parse_budget("macs=0.3")  # the knapsack alone cuts two units of the first layer too many
    db = ErrorDatabase.build(
        space, group_scores(space, calibration, progress=False), budget.target(), None, budget
    )
    assert_nothing_comes_back(db, db.levels_of(STRATEGIES["dp"](db)))


def assert_nothing_comes_back(db: ErrorDatabase, levels: list[int]) -> None:
    """``levels`` fit the budget, and no chain could keep one more unit within it."""
    assert db.left(levels) <= db.limit
    for i, level in enumerate(levels):
        if level:
            back = levels.copy()
            back[i] -= 1
            assert db.left(back) > db.limit, f"chain {i} could keep one more unit"


def test_evolution_keeps_the_candidate_that_measures_best(setting) -> None:
    """Every seed and child is removed, refit and measured; the result measures no worse than the best
    seed, and a search without calibration data cannot measure."""
    model, x, calibration = setting
    space = zp.analyze(model, x)
    scores = group_scores(space, calibration, progress=False)
    evaluate = Evaluator.of(space, calibration, evaluations=6, progress=False)
    budget = parse_budget("macs=0.5")
    db = ErrorDatabase.build(space, scores, budget.target(), None, budget, evaluate)
    seeds = [evaluate(STRATEGIES[name](db)) for name in ("dp", "global", "uniform")]
    before = {k: v.clone() for k, v in model.state_dict().items()}
    best = STRATEGIES["evolution"](db)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items()), "measuring restores"
    assert evaluate(best) <= min(seeds) + 1e-12 and space.macs(best) <= 0.5 * space.total_macs
    with pytest.raises(CalibrationError, match="evolution measures candidates"):
        zp.search(space, None, "macs=0.5", strategy="evolution", scores=scores, progress=False)


class Hurts:
    """A measure where only chain 0's units cost anything: each of them ``weight``, the rest nothing;
    with ``stop``, Ctrl-C at that call."""

    evaluations, progress = 16, False

    def __init__(self, db: ErrorDatabase, checkpoints: Path | None = None, stop: int | None = None) -> None:
        self.db, self.checkpoints, self.stop, self.calls = db, checkpoints, stop, 0

    def __call__(self, removed: torch.Tensor) -> float:
        self.calls += 1
        if self.calls == self.stop:
            raise KeyboardInterrupt
        return float(self.db.levels_of(removed)[0])


def agent_db(monkeypatch: pytest.MonkeyPatch) -> ErrorDatabase:
    """A toy database of three chains, every unit its own group, costs summed exactly, half to go."""
    from zigprune.search import rl

    monkeypatch.setattr(rl, "evaluator_of", lambda db, name: db.evaluate)
    db = toy(3)
    db.limit, db.budget = float(sum(item.saved[-1] for item in db.items)) * 0.5, Budget("macs", 0.5)
    db.space = SimpleNamespace(num_groups=sum(len(item.units) for item in db.items))
    db.meter = SimpleNamespace(total=float(sum(item.saved[-1] for item in db.items)))
    db.meter.left = lambda removed: (
        db.meter.total - sum(float(item.saved[level]) for item, level in zip(db.items, db.levels_of(removed)))
    )
    offset = 0
    for item in db.items:  # every unit its own group id
        item.units = [[offset + j] for j in range(len(item.units))]
        offset += len(item.units)
    db.evaluate = Hurts(db)
    return db


def test_amc_learns_to_spare_the_chain_that_hurts_and_repeats_itself(monkeypatch) -> None:
    """Every episode meets the budget (actions bounded, then fitted to the exact cost); on a toy
    database where only chain 0 hurts, the agent ends up cutting elsewhere; seeded, it repeats."""
    from zigprune.search import rl

    db = agent_db(monkeypatch)
    walked = [rl.walk(db, rl.Agent.of(seed=1), None) for _ in range(10)]
    assert all(w is not None and db.left(w.levels) <= db.limit for w in walked)
    agent = rl.Agent.of(seed=0)
    assert rl.walk(db, agent, 1e-6).levels[0] > 0, "untrained, the actor cuts about half of every chain"
    rl.train(db, agent)
    assert rl.walk(db, agent, 1e-6).levels[0] == 0, "trained, it spares chain 0"
    first = STRATEGIES["amc"](db)
    assert db.levels_of(first)[0] == 0 and db.left_of(first) <= db.limit
    assert torch.equal(STRATEGIES["amc"](db), first)


class Other(nn.Module):
    """Another model for the transferred agent: more layers, other widths, three input channels."""

    def __init__(self) -> None:
        super().__init__()
        self.a, self.b = nn.Conv2d(3, 8, 3, padding=1), nn.Conv2d(8, 32, 3, padding=1)
        self.c, self.d = nn.Conv2d(32, 32, 3), nn.Conv2d(32, 16, 1)
        self.head = nn.Linear(16, 5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.d(self.c(self.b(self.a(x).relu()).relu()).relu()).relu()
        return self.head(x.mean((2, 3)))


def test_gnn_rl_embeds_the_graph_and_its_agent_transfers_to_another_model(setting, tmp_path) -> None:
    """The graph links the chains a layer couples; a trained agent is written to its file (seeded: twice
    the same), embeds a model it was not trained on, and applied there without training meets the
    budget with no unit left that the budget allows back; a file that is not an agent is refused."""
    from zigprune.errors import LoadError
    from zigprune.search import gnn
    from zigprune.training.checkpoint import save

    model, x, calibration = setting
    space = zp.analyze(model, x)
    budget = parse_budget("macs=0.6")
    db = ErrorDatabase.build(space, group_scores(space, calibration, progress=False), budget.target())
    graph = gnn.chain_graph(db)
    names = [space.families[int(space.group_family[item.units[0][0]])].name for item in db.items]
    a, b, c = (names.index(n) for n in ("a", "b", "c"))
    assert graph.adjacency[a, b] > 0 and graph.adjacency[b, c] > 0 and graph.adjacency[a, c] == 0
    assert torch.allclose(graph.adjacency.sum(1), torch.ones(len(names)))
    trained = [tmp_path / "one.safetensors", tmp_path / "two.safetensors"]
    policies = [
        zp.search(
            space, calibration, "macs=0.6", strategy="gnn-rl", progress=False, evaluations=3, agent=path
        )
        for path in trained
    ]
    assert policies[0].families == policies[1].families
    first, second = (gnn.load_agent(path, graph) for path in trained)
    pairs = zip(first.actor.parameters(), second.actor.parameters())
    assert all(torch.allclose(p, q, atol=1e-6) for p, q in pairs), "measuring is not bit-exact on 2 threads"

    torch.manual_seed(1)
    other = Other().eval()
    inputs, data = torch.randn(2, 3, 10, 10), [torch.randn(32, 3, 10, 10) for _ in range(2)]
    target = zp.analyze(other, inputs)
    db = ErrorDatabase.build(
        target, group_scores(target, data, progress=False), parse_budget("macs=0.5").target()
    )
    embedded = first.actor.embeddings(gnn.chain_graph(db))
    assert embedded.shape == (len(db.items), gnn.EMBED) and torch.isfinite(embedded).all()
    assert not torch.allclose(embedded[0], embedded[-1])
    before = trained[0].read_bytes()
    policy = zp.search(target, data, "macs=0.5", strategy="gnn-rl", progress=False, agent=trained[0])
    assert trained[0].read_bytes() == before, "applying an agent does not train or rewrite it"
    assert_nothing_comes_back(db, db.levels_of(policy.removed(target, db.scores)))
    (tmp_path / "bad.safetensors").write_bytes(b"not an agent")
    save(tmp_path / "amc.safetensors", {"strategy": "amc"})
    for bad in ("bad", "amc"):
        with pytest.raises(LoadError, match="not a gnn-rl agent"):
            zp.search(
                target,
                data,
                "macs=0.5",
                strategy="gnn-rl",
                progress=False,
                agent=tmp_path / f"{bad}.safetensors",
            )


def test_a_learned_search_stopped_by_ctrl_c_continues_the_same_episodes(monkeypatch, tmp_path) -> None:
    """Ctrl-C in the middle of an episode keeps the agent as it was when that episode began; the next
    run on the same folder ends with the same candidates and the same actor as a run never stopped,
    and removes the file. A corrupt file is not continued: the search starts over, saying so."""
    from zigprune.search import rl

    db = agent_db(monkeypatch)
    whole = rl.Agent.of(seed=0)
    db.evaluate = Hurts(db)
    expected = rl.train(db, whole)
    db.evaluate = Hurts(db, tmp_path, stop=9)
    with pytest.raises(KeyboardInterrupt):
        rl.train(db, rl.Agent.of(seed=0))
    (kept,) = tmp_path.glob("amc-*.safetensors")
    db.evaluate = Hurts(db, tmp_path)
    resumed = rl.Agent.of(seed=0)
    assert rl.train(db, resumed) == expected and db.evaluate.calls == len(expected) - 8
    assert all(torch.equal(a, b) for a, b in zip(resumed.actor.parameters(), whole.actor.parameters()))
    assert not kept.exists()

    kept.write_bytes(b"not a checkpoint")
    db.evaluate = Hurts(db, tmp_path)
    with pytest.warns(UserWarning, match="corrupt.*the search starts over"):
        assert rl.train(db, rl.Agent.of(seed=0)) == expected


def test_bo_without_optuna_says_how_to_install_it(setting, monkeypatch) -> None:
    model, x, calibration = setting
    monkeypatch.setitem(sys.modules, "optuna", None)
    with pytest.raises(PolicyError, match=r"pip install 'zigprune\[search\]'"):
        zp.search(zp.analyze(model, x), calibration, "macs=0.5", strategy="bo", progress=False)


def test_a_policy_round_trips_through_json_and_refuses_another_model(setting, tmp_path: Path) -> None:
    model, x, calibration = setting
    space = zp.analyze(model, x)
    policy = zp.search(space, calibration, "macs=2x", progress=False)
    path = save_policy(policy, tmp_path / "policy.json")
    assert load_policy(path) == policy
    other = zp.analyze(nn.Sequential(nn.Conv2d(1, 8, 3), nn.ReLU(), nn.Conv2d(8, 4, 3)).eval(), x)
    with pytest.raises(PolicyError, match="another model"):
        zp.prune(other, calibration, policy=policy, progress=False)
    (tmp_path / "bad.json").write_text(json.dumps({"format": "something else"}))
    with pytest.raises(PolicyError, match="not a zigprune policy"):
        load_policy(tmp_path / "bad.json")
    with pytest.raises(PolicyError, match="cannot read"):
        load_policy(tmp_path / "missing.json")


def test_bad_budgets_and_strategies_say_what_to_do(setting) -> None:
    model, x, calibration = setting
    space = zp.analyze(model, x)
    valid = "dp, global, uniform, evolution, bo, amc, galen"
    with pytest.raises(UnknownNameError, match=f"unknown strategy 'annealing'; valid names: {valid}"):
        zp.search(space, calibration, strategy="annealing", progress=False)
    for bad in ("macs=1.5", "macs=0.5x", "flops=0.5", "macs=half", "macs=0.5@onnxruntime", "latency=2"):
        with pytest.raises(TargetError):
            parse_budget(bad)
    with pytest.raises(UnknownNameError, match="unknown runtime 'tpu'; valid names: torch, onnxruntime"):
        parse_budget("latency=0.3@tpu")
    with pytest.raises(UnknownNameError, match="inductor is not timed layer by layer yet"):
        zp.search(space, calibration, "latency=0.3@inductor", progress=False)
    with pytest.raises(TargetError, match="ask for macs=0"):
        zp.search(space, calibration, "macs=0.001", progress=False)
    assert parse_budget("macs=2x") == Budget("macs", 0.5)
    assert parse_budget("params=0.4") == Budget("params", 0.4)
    assert parse_budget("latency=0.3@ONNXRuntime-int8") == Budget("latency", 0.3, "onnxruntime-int8")
    assert parse_budget("latency=4x") == Budget("latency", 0.25, "torch")


@pytest.mark.parametrize("kind", ["HESSO", "DHSPG"])
def test_search_then_train_once_reaches_exactly_the_policy(setting, kind: str) -> None:
    """target=policy: the optimizer takes every family to the searched width ("search, then train once")."""
    model, x, calibration = setting
    space = zp.analyze(model, x)
    policy = zp.search(space, calibration, "macs=0.6", progress=False)
    optimizer = getattr(zp, kind)(space, lr=0.05, target=policy, total_steps=40)
    g = torch.Generator().manual_seed(0)
    for _ in range(40):
        optimizer.zero_grad()
        model(torch.randn(16, 1, 8, 8, generator=g)).pow(2).mean().backward()
        optimizer.step()
    assert zp.Policy.of(space, space.zero_groups()).families == policy.families
    assert space.construct()(x).shape == (2, 4)
    with pytest.raises(OptimizerError, match="without by"):
        zp.HESSO(space, lr=0.1, target=policy, by="macs", total_steps=10)


def test_scores_scored_once_give_the_same_policies(setting) -> None:
    """search(..., scores=) with one scoring pass finds what a search scoring on its own finds."""
    from zigprune.posttrain.prune import group_scores

    model, x, calibration = setting
    space = zp.analyze(model, x)
    scores = group_scores(space, calibration, progress=False)
    for strategy in ("dp", "global", "uniform"):
        alone = zp.search(space, calibration, "macs=0.5", strategy=strategy, progress=False)
        shared = zp.search(space, None, "macs=0.5", strategy=strategy, scores=scores)
        assert shared.families == alone.families and shared.predicted == pytest.approx(alone.predicted)


def test_a_budget_list_shares_kind_and_runtime_along_each_run_and_refuses_bad_items() -> None:
    from zigprune.search.budget import budget_list

    assert budget_list("macs=0.4,0.5,2x") == ["macs=0.4", "macs=0.5", "macs=2x"]
    assert budget_list("latency=0.4,0.6@onnxruntime,params=0.3,0.3") == [
        "latency=0.4@onnxruntime", "latency=0.6@onnxruntime", "params=0.3",
    ]  # fmt: skip
    assert budget_list("0.5") == ["macs=0.5"]
    with pytest.raises(TargetError, match="has an empty item"):
        budget_list("macs=0.5,,0.4")
    with pytest.raises(TargetError, match="keeps nothing or everything"):
        budget_list("macs=0.5,1.5")
