"""Learned policies. The ``amc`` strategy (He et al., AMC 2018): a DDPG agent walks the chains of
the error database in graph order and picks, for each, the share of its units to remove; the budget
holds by bounding each action so that the chains after it can still meet it; the reward is minus the
measured loss of the whole candidate (removed, refit, outputs compared with the dense model's, as
``evolution`` measures), shared by every step of the episode against a moving-average baseline.

The state of a step follows the paper's, in the database's terms (each in [0, 1]): the chain's
position, its length in units and its share of the removable cost, the cost removed so far and
still removable after it, the share the budget still needs, and the previous action. The first
episodes explore at random (the warm-up), then the actor's action plus truncated normal noise whose
width decays. Each step's critic target is the episode's reward (the paper stores it with every
transition); the actor follows the critic. The best candidate measured is the answer. Written in
plain torch (two small MLPs): the paper's details, a reward shared by the steps and a baseline,
actions bounded by the budget, fit no off-the-shelf DDPG without wrapping most of it.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from ..posttrain.calibration import progress_bar
from .agent_file import Key, Progress, agent_file, fingerprint, keep, resume
from .database import ErrorDatabase, Item
from .evolution import evaluator_of
from .solvers import STRATEGIES, relax, repair, unreachable

FEATURES = 7
HIDDEN = 300
BATCH = 64
NOISE = 0.5
NOISE_DECAY = 0.95
BASELINE = 0.5
LR_ACTOR, LR_CRITIC = 1e-4, 1e-3


@STRATEGIES.register("amc")
def amc(db: ErrorDatabase) -> torch.Tensor:
    """The best candidate of ``evaluations // 2`` random episodes (at least 4) and ``2 * evaluations``
    episodes of the agent (seeded), each measured, then relaxed (:func:`best`)."""
    return best(db, train(db, Agent.of(seed=0)))


def best(db: ErrorDatabase, measured: dict[Key, float]) -> torch.Tensor:
    """The candidate that measured best, with every unit the budget still allows given back, least
    error first (``relax``): actions are bounded so an episode meets the budget, not so it uses all
    of it, and the agent, rewarded by the loss alone, often cuts more than asked."""
    if not measured:
        raise unreachable(db, db.total)
    levels, _ = min(measured, key=measured.__getitem__)
    return db.removed(relax(db, list(levels)))


@dataclass
class Episode:
    """What one episode chose: a level per chain and the weight layers run as int8 (none: all fp32),
    with the states seen and the actions taken, which the agent learns from."""

    levels: list[int]
    states: list[torch.Tensor]
    actions: list[float]
    int8: frozenset[str] = frozenset()

    @property
    def key(self) -> Key:
        return tuple(self.levels), self.int8


Play = Callable[[ErrorDatabase, "Agent", "float | None"], "Episode | None"]


def train(db: ErrorDatabase, agent: Agent, play: Play | None = None, name: str = "amc") -> dict[Key, float]:
    """Run ``agent``'s episodes on ``db`` (``play`` walks one: the chains by default; it learns from
    each after the warm-up); every candidate's measured loss, by its levels and int8 layers. With the
    evaluator's ``checkpoints`` folder, Ctrl-C keeps the agent there as it was when the episode began,
    and the next call on the same budget and chains continues from that episode."""
    play = play if play is not None else walk
    evaluate = evaluator_of(db, name)
    warmup = max(4, evaluate.evaluations // 2)
    episodes = warmup + 2 * evaluate.evaluations
    path = agent_file(evaluate.checkpoints, name, db)
    tag = fingerprint(name, db) if path is not None else {}
    progress = Progress(0, {}, None)
    found = resume(path, tag) if path is not None and path.is_file() else None
    if found is not None:
        agent.load_state_dict(found[0])
        progress = found[1]
    measured = progress.measured
    with progress_bar(episodes, f"{name}: episodes", evaluate.progress) as bar:
        bar.update(progress.episode)
        for episode in range(progress.episode, episodes):
            before = (agent.state_dict(), Progress(episode, dict(measured), progress.baseline))
            sigma = None if episode < warmup else NOISE * NOISE_DECAY ** (episode - warmup)
            try:
                played = play(db, agent, sigma)
                if played is not None:
                    progress.baseline = _learn(db, agent, played, evaluate, measured, progress.baseline)
                    if episode >= warmup - 1:
                        agent.learn(len(played.states))
            except KeyboardInterrupt:
                if path is not None:
                    keep(path, *before, tag)
                raise
            if measured:
                bar.set_postfix_str(f"best loss {min(measured.values()):.4g}")
            bar.update()
    if path is not None:
        path.unlink(missing_ok=True)
    return measured


def _learn(
    db: ErrorDatabase,
    agent: Agent,
    played: Episode,
    evaluate: Any,
    measured: dict[Key, float],
    baseline: float | None,
) -> float:
    """Measure ``played``'s candidate (once per candidate) and store its steps with the reward against
    ``baseline``; the baseline moved."""
    if played.key not in measured:
        removed = db.removed(played.levels)
        loss = evaluate.losses(removed, [played.int8])[0] if played.int8 else evaluate(removed)
        measured[played.key] = loss
    reward = -measured[played.key]
    baseline = reward if baseline is None else baseline + (1 - BASELINE) * (reward - baseline)
    agent.remember(played.states, played.actions, reward - baseline)
    return baseline


def walk(
    db: ErrorDatabase,
    agent: Agent,
    sigma: float | None,
    need: float | None = None,
    flag: tuple[float, ...] = (),
    node: bool = False,
) -> Episode | None:
    """One episode over the chains: a level per chain, each action bounded so the rest can still save
    ``need`` (the budget's, by default) on the summed savings, then taken further where the exact cost
    still exceeds the budget (``repair``). ``sigma``: the noise around the actor's action; None acts at
    random. ``flag``: features put before each state (an agent that also walks other things);
    ``node``: the chain's index put first (a graph agent looks its embedding up by it). None when the
    budget cannot be met so."""
    items = db.items
    need = db.need if need is None else need
    most = [float(item.saved[item.soft]) for item in items]
    after = [sum(most[i + 1 :]) for i in range(len(items))]
    longest = max((len(item.units) for item in items), default=1) or 1
    total = max(db.total, 1e-12)
    levels: list[int] = []
    states = []
    removed, previous = 0.0, 0.0
    for i, item in enumerate(items):
        size = len(item.units)
        state = [*flag, *([float(i)] if node else []), i / max(len(items) - 1, 1), size / longest]
        state += [most[i] / total, removed / total]
        state += [after[i] / total, max(need - removed, 0.0) / total, previous]
        states.append(torch.tensor(state))
        least = _least(item, need - removed - after[i]) if size else 0
        level = min(max(round(agent.act(states[-1], sigma) * size), least), item.soft) if size else 0
        levels.append(level)
        removed += float(item.saved[level])
        previous = level / size if size else 0.0
    for soft in (True, False):
        levels, left = repair(db, levels, soft)
        if left <= db.limit:
            shares = [level / len(item.units) if item.units else 0.0 for item, level in zip(items, levels)]
            return Episode(levels, states, shares)
    return None


def _least(item: Item, still: float) -> int:
    """The fewest units of ``item`` whose summed saving covers ``still`` (its soft floor at most)."""
    if still <= 0:
        return 0
    reach = torch.nonzero(item.saved[: item.soft + 1] >= still).reshape(-1)
    return int(reach[0]) if len(reach) else item.soft


@dataclass
class Agent:
    """DDPG's actor (state -> the share to remove, in [0, 1]) and critic (state, action -> reward),
    their optimizers and the replay buffer; ``rng`` draws noise and batches. No target networks: the
    critic's target is the episode's reward itself, nothing is bootstrapped."""

    actor: nn.Module
    critic: nn.Module
    actor_opt: torch.optim.Optimizer
    critic_opt: torch.optim.Optimizer
    rng: torch.Generator
    memory: list[tuple[torch.Tensor, float, float]] = field(default_factory=list)

    @classmethod
    def of(cls, seed: int, features: int = FEATURES) -> Agent:
        """An untrained agent for states of ``features`` numbers (AMC's seven by default)."""
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            actor, critic = nn.Sequential(_mlp(features), nn.Sigmoid()), _mlp(features + 1)
        actor_opt = torch.optim.Adam(actor.parameters(), lr=LR_ACTOR)
        critic_opt = torch.optim.Adam(critic.parameters(), lr=LR_CRITIC)
        return cls(actor, critic, actor_opt, critic_opt, torch.Generator().manual_seed(seed))

    def act(self, state: torch.Tensor, sigma: float | None) -> float:
        """The share to remove: uniform at random without ``sigma``, else the actor's, plus noise of
        width ``sigma`` truncated to [0, 1]."""
        if sigma is None:
            return float(torch.rand((), generator=self.rng))
        with torch.no_grad():
            mean = float(self.actor(state))
        for _ in range(100):
            value = mean + sigma * float(torch.randn((), generator=self.rng))
            if 0.0 <= value <= 1.0:
                return value
        return min(max(mean, 0.0), 1.0)

    def state_dict(self) -> dict[str, Any]:
        """A copy of everything the agent has learned and will draw: networks, optimizers, the noise
        generator and the replay buffer."""
        nets = {"actor": self.actor.state_dict(), "critic": self.critic.state_dict()}
        nets |= {"actor_opt": self.actor_opt.state_dict(), "critic_opt": self.critic_opt.state_dict()}
        return copy.deepcopy(nets) | {"rng": self.rng.get_state(), "memory": list(self.memory)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.actor.load_state_dict(state["actor"])
        self.critic.load_state_dict(state["critic"])
        self.actor_opt.load_state_dict(state["actor_opt"])
        self.critic_opt.load_state_dict(state["critic_opt"])
        self.rng.set_state(state["rng"])
        self.memory = [(s, float(a), float(r)) for s, a, r in state["memory"]]

    def remember(self, states: list[torch.Tensor], actions: list[float], reward: float) -> None:
        self.memory += [(s, a, reward) for s, a in zip(states, actions)]

    def learn(self, steps: int) -> None:
        """``steps`` updates of the critic on sampled transitions, each followed by one of the actor
        through it."""
        for _ in range(steps):
            picks = torch.randint(len(self.memory), (min(BATCH, len(self.memory)),), generator=self.rng)
            batch = [self.memory[i] for i in picks.tolist()]
            states = torch.stack([s for s, _, _ in batch])
            actions = torch.tensor([[a] for _, a, _ in batch])
            rewards = torch.tensor([[r] for _, _, r in batch])
            critic_loss = (self.critic(torch.cat([states, actions], 1)) - rewards).square().mean()
            self.critic_opt.zero_grad()
            critic_loss.backward()
            self.critic_opt.step()
            actor_loss = -self.critic(torch.cat([states, self.actor(states)], 1)).mean()
            self.actor_opt.zero_grad()
            actor_loss.backward()
            self.actor_opt.step()


def _mlp(inputs: int) -> nn.Module:
    return nn.Sequential(
        nn.Linear(inputs, HIDDEN), nn.ReLU(), nn.Linear(HIDDEN, HIDDEN), nn.ReLU(), nn.Linear(HIDDEN, 1)
    )
