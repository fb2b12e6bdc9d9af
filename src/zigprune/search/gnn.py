"""The ``gnn-rl`` strategy (AGMC, Yu et al. 2021; GNN-RL, Yu et al. 2022): ``amc``'s agent, with each
step's state taken from a graph network's embedding of the model instead of the chain's own numbers.

The graph is the model as zigprune sees it: a node per chain of the error database (a family, or one
input of a concatenation), linked where one family's channels feed a layer that produces another's,
or where two chains are pieces of one family. A node's features are its position, its length, the
rank among the chains of its removable cost and of its error half-way down, its degree and whether
it has a soft floor: ranks and shares, the same for a model of any depth or error scale. Two rounds
of message passing (mean over the neighbours, residual) embed it in its surroundings. Actor and
critic each read the step's node embedding next to amc's step features, and train their graph
network with them, as the papers do.

What the papers claim and this tests: an agent trained on one model may **transfer**: ``agent=``
names a file that a training search writes the agent to, and a search that finds it there applies
it to its own model without training (its greedy walk, no measurement, then the units the budget
still allows given back by least error).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from ..errors import LoadError, first_line
from ..training.checkpoint import load, save
from .database import ErrorDatabase
from .rl import FEATURES, LR_ACTOR, LR_CRITIC, Agent, best, train, walk
from .solvers import STRATEGIES, relax, unreachable

NODE_FEATURES = 6
EMBED = 32
HIDDEN = 64
ROUNDS = 2
NAME = "gnn-rl"


@dataclass
class Graph:
    """A model as the agent sees it: per chain its features, and the row-normalised adjacency (self
    loops, both directions)."""

    features: torch.Tensor
    adjacency: torch.Tensor


def chain_graph(db: ErrorDatabase) -> Graph:
    """The graph of ``db``'s chains: linked where their families are coupled through a layer (one
    consumed by the layer that produces the other), or are the same family."""
    space, items = db.space, db.items
    chains = [int(space.group_family[item.units[0][0]]) if item.units else -1 for item in items]
    family = torch.tensor(chains, dtype=torch.long)
    coupled = torch.eye(len(space.families) + 1, dtype=torch.bool)  # the last row: chains without units
    coupled[-1, -1] = False
    for a, b in _family_links(db):
        coupled[a, b] = coupled[b, a] = True
    n = len(items)
    adjacency = (coupled[family][:, family] | torch.eye(n, dtype=torch.bool)).float()
    adjacency /= adjacency.sum(1, keepdim=True)
    most = torch.tensor([float(item.saved[item.soft]) for item in items])
    half = torch.tensor([float(item.errors[(len(item.units) + 1) // 2]) for item in items])
    longest = max((len(item.units) for item in items), default=1) or 1
    degree = (adjacency > 0).sum(1).float()
    features = torch.stack(
        [
            torch.arange(n) / max(n - 1, 1),
            torch.tensor([len(item.units) / longest for item in items]),
            _ranks(most),
            _ranks(half),
            degree / max(float(degree.max()), 1.0) if n else degree,
            torch.tensor([float(item.soft < len(item.units)) for item in items]),
        ],
        1,
    )
    return Graph(features.float(), adjacency)


def _ranks(values: torch.Tensor) -> torch.Tensor:
    """Each value's rank among ``values``, in [0, 1]: the same for a model of any size or error scale."""
    ranks = torch.empty(len(values))
    ranks[values.argsort(stable=True)] = torch.arange(len(values)) / max(len(values) - 1, 1)
    return ranks


def _family_links(db: ErrorDatabase) -> set[tuple[int, int]]:
    """Pairs of families (consumed, produced) that one module couples: its weight reads the first's
    channels and writes the second's."""
    space = db.space
    reads: dict[str, set[int]] = {}
    writes: dict[str, set[int]] = {}
    for s in space.slices:
        classes = s.classes[s.classes >= 0]
        if not classes.numel():
            continue
        module = s.name.rpartition(".")[0]
        families = set(space.class_family[classes].unique().tolist())
        (writes if s.producer else reads).setdefault(module, set()).update(families)
    return {(a, b) for module, read in reads.items() for a in read for b in writes.get(module, ()) if a != b}


class GraphNet(nn.Module):
    """A graph network over a model's chains, then an MLP over the step's node embedding and the rest
    of the step's numbers (the first of which is the node's index); ``sigmoid`` for the actor."""

    def __init__(self, inputs: int, sigmoid: bool) -> None:
        super().__init__()
        self.embed = nn.Linear(NODE_FEATURES, EMBED)
        self.rounds = nn.ModuleList(nn.Linear(EMBED, EMBED) for _ in range(ROUNDS))
        layers = [nn.Linear(EMBED + inputs, HIDDEN), nn.ReLU(), nn.Linear(HIDDEN, HIDDEN), nn.ReLU()]
        self.head = nn.Sequential(*layers, nn.Linear(HIDDEN, 1), *([nn.Sigmoid()] if sigmoid else []))
        self.graph: Graph | None = None

    def embeddings(self, graph: Graph) -> torch.Tensor:
        """Every node's embedding: its features, then ``ROUNDS`` of mean message passing."""
        h = self.embed(graph.features).relu()
        for layer in self.rounds:
            h = h + layer(graph.adjacency @ h).relu()
        return h

    def forward(self, states: torch.Tensor) -> torch.Tensor:
        if self.graph is None:
            raise RuntimeError("GraphNet.graph is not set: the agent has no model to act on")
        states = states.reshape(-1, states.shape[-1])
        nodes = self.embeddings(self.graph)[states[:, 0].round().long()]
        return self.head(torch.cat([nodes, states[:, 1:]], 1))


def graph_agent(seed: int, graph: Graph | None = None) -> Agent:
    """An untrained gnn-rl agent (seeded), set on ``graph``."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        actor, critic = GraphNet(FEATURES, sigmoid=True), GraphNet(FEATURES + 1, sigmoid=False)
    actor.graph = critic.graph = graph
    actor_opt = torch.optim.Adam(actor.parameters(), lr=LR_ACTOR)
    critic_opt = torch.optim.Adam(critic.parameters(), lr=LR_CRITIC)
    return Agent(actor, critic, actor_opt, critic_opt, torch.Generator().manual_seed(seed))


def save_agent(agent: Agent, path: str | Path) -> None:
    """The trained networks (not the replay buffer, which is of one model) to ``path``, atomically."""
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    save(path, {"strategy": NAME, "actor": agent.actor.state_dict(), "critic": agent.critic.state_dict()})


def load_agent(path: str | Path, graph: Graph) -> Agent:
    """The agent saved at ``path``, set on ``graph``; ``LoadError`` when the file is not a gnn-rl
    agent (corrupt, or another kind of checkpoint)."""
    agent = graph_agent(0, graph)
    try:
        state = load(path)
        if state.get("strategy") != NAME:
            raise ValueError(f"it holds {state.get('strategy')!r}")
        agent.actor.load_state_dict(state["actor"])
        agent.critic.load_state_dict(state["critic"])
    except (LoadError, ValueError, KeyError, RuntimeError, AttributeError) as err:
        why = (
            f"{path} is not a gnn-rl agent ({first_line(err)}); name another file, or delete it to train one"
        )
        raise LoadError(why) from None
    return agent


@STRATEGIES.register(NAME)
def gnn_rl(db: ErrorDatabase) -> torch.Tensor:
    """Trained here as ``amc`` is (the best candidate measured, relaxed; the agent written to the evaluator's
    ``agent`` file when one is named), or, when that file exists, its agent's greedy walk, with the
    units the budget still allows given back (an agent from another model may cut more than needed)."""
    graph = chain_graph(db)
    path = db.evaluate.agent if db.evaluate is not None else None
    if path is not None and Path(path).is_file():
        played = walk(db, load_agent(path, graph), 0.0, node=True)
        if played is None:
            raise unreachable(db, db.total)
        return db.removed(relax(db, played.levels))
    agent = graph_agent(0, graph)
    measured = train(db, agent, lambda db, agent, sigma: walk(db, agent, sigma, node=True), name=NAME)
    if measured and path is not None:
        save_agent(agent, path)
    return best(db, measured)
