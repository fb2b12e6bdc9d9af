"""Shared machinery of the group-sparse optimizers: base SGD/Adam/AdamW updates over the model's
parameters (all of them, or torch-style param groups), hooks for group terms before and after the
update, pinned zeros, a schedule derived from ``total_steps``, and resumable state.

Parameters in no group get exactly the base update, with their param group's options. Group terms
work on a zero-invariant group's whole vector whichever param groups hold its rows (see
``GroupOptimizer``). The pruning state (step, selected and zeroed groups, importance, total steps)
lives in ``state["zigprune"]``, so ``state_dict()``/``load_state_dict()`` resume it. Steps whose
gradients are not finite are skipped (nothing changes), with a warning; pass ``nonfinite="raise"``
to get an error instead.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Iterable
from typing import Any

import torch

from ..core.grouping import Grouping
from ..core.limits import Limits
from ..core.policy import Policy
from ..core.selection import Target, check_reachable, removed_share, select
from ..core.shards import any_rank, local
from ..core.space import GroupSpace
from ..errors import OptimizerError, PolicyError
from .params import check_in_model, check_options, frozen_groups, model_params

VARIANTS = ("sgd", "adam", "adamw")


class GroupOptimizer(torch.optim.Optimizer):
    """Base class: subclasses add group terms in ``_before_update`` and projections in ``_after_update``.

    ``params`` takes what torch optimizers take: parameters, or dicts ``{"params": [...], "lr": ...,
    "weight_decay": ...}`` whose options override ``lr``, ``momentum``, ``weight_decay`` … (not
    ``variant``); by default every parameter of ``space.model`` that requires gradients. They must be
    parameters of ``space.model``. The base update of each parameter uses its own group's options.
    Group terms act on a zero-invariant group's whole vector, whichever param groups hold its rows:
    selections, decay factors, half-space tests and pinned zeros are lr-free and cover every row, so
    pruned groups reach exact zeros; group-lasso pulls (HSPG, DHSPG) are added to the gradients and
    taken with each row's own lr. A group with rows in a model parameter left out of ``params``
    (frozen) is kept whole, with a warning: the optimizer changes only the parameters it owns.
    """

    def __init__(
        self,
        space: GroupSpace,
        lr: float,
        momentum: float = 0.0,
        weight_decay: float = 0.0,
        *,
        params: Iterable[Any] | None = None,
        variant: str = "sgd",
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        nesterov: bool = False,
        dampening: float = 0.0,
        nonfinite: str = "skip",
    ) -> None:
        if variant not in VARIANTS:
            raise ValueError(f"variant must be one of {VARIANTS}, not {variant!r}")
        if nonfinite not in ("skip", "raise"):
            raise ValueError("nonfinite must be 'skip' or 'raise'")
        defaults: dict[str, Any] = {"lr": lr, "weight_decay": weight_decay, "variant": variant}
        if variant == "sgd":
            defaults.update(momentum=momentum, nesterov=nesterov, dampening=dampening)
        else:
            defaults.update(betas=betas, eps=eps)
        self.space = space
        self.frozen: torch.Tensor | None = None
        super().__init__(model_params(space) if params is None else params, defaults)
        self.grouping = Grouping(space)
        self.frozen = frozen_groups(space, self.grouping, self._owned())
        self.nonfinite = nonfinite
        self.total_steps: int | None = None
        self.state["zigprune"] = {
            "step": 0,
            "skipped": 0,
            "pruned": torch.zeros(space.num_groups, dtype=torch.bool),
            "importance": torch.zeros(space.num_groups),
            "total_steps": None,
        }

    def add_param_group(self, param_group: dict[str, Any]) -> None:
        """``torch.optim.Optimizer.add_param_group``, checked; groups kept whole are found again."""
        check_options(param_group, self.defaults)
        super().add_param_group(param_group)
        try:
            check_in_model(self.space, self.param_groups[-1]["params"])
        except OptimizerError:
            self.param_groups.pop()
            raise
        if self.frozen is not None:
            self.frozen = frozen_groups(self.space, self.grouping, self._owned())

    def _owned(self) -> list[torch.Tensor]:
        return [p for group in self.param_groups for p in group["params"]]

    def _lrs(self) -> dict[int, float]:
        """Each owned parameter's learning rate (its param group's, as the scheduler left it)."""
        return {id(p): float(group["lr"]) for group in self.param_groups for p in group["params"]}

    # -- schedule ---------------------------------------------------------------------------------------

    def set_total_steps(self, total_steps: int) -> None:
        """Derive the schedule again from ``total_steps`` (for a total known only when training starts).

        Options given explicitly (``start_step=`` …) stay; those left to their defaults follow the new
        total. The same total again does nothing; another total after the first step is an
        ``OptimizerError``, since the schedule is already running.
        """
        total_steps = checked_total(total_steps)
        if total_steps == self.total_steps:
            return
        if self.step_count:
            raise OptimizerError(
                f"set_total_steps({total_steps}) after {self.step_count} steps of a schedule made for "
                f"total_steps={self.total_steps}: set the total before the first step"
            )
        self._schedule(total_steps)

    def _schedule(self, total_steps: int | None) -> None:
        """Set ``total_steps`` and what it derives (subclasses add their steps)."""
        self.total_steps = total_steps
        self.zig["total_steps"] = total_steps

    # -- state ------------------------------------------------------------------------------------------

    @property
    def zig(self) -> dict[str, Any]:
        return self.state["zigprune"]

    @property
    def step_count(self) -> int:
        return int(self.zig["step"])

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Resume; an optimizer made with ``total_steps=None`` takes the saved total, others keep theirs."""
        super().load_state_dict(state_dict)
        self.state["zigprune"] = {
            k: (v.clone() if isinstance(v, torch.Tensor) else v)
            for k, v in state_dict["state"]["zigprune"].items()
        }
        saved = self.zig.get("total_steps")
        if self.total_steps is None and saved is not None:
            self._schedule(saved)
        self.zig["total_steps"] = self.total_steps

    def report(self) -> dict[str, float]:
        """Progress for logs and bars: group sparsity, MACs left, groups pinned at zero."""
        zero = self.space.zero_groups()
        groups = max(self.space.num_groups, 1)
        return {
            "group_sparsity": float(zero.sum()) / groups,
            "macs_left": self.space.macs(zero) / max(self.space.total_macs, 1),
            "pinned": int(self.zig["pruned"].sum()),
        }

    # -- the step ---------------------------------------------------------------------------------------

    @torch.no_grad()
    def step(self, closure: Callable[[], torch.Tensor] | None = None) -> torch.Tensor | None:
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        grads = {id(p): p.grad for group in self.param_groups for p in group["params"] if p.grad is not None}
        if self.zig["step"] == 0:
            self._check_owned()
        if not self._finite(loss, grads):
            return loss
        self.zig["step"] += 1
        self._before_update(grads)
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is not None:
                    self._base_update(p, p.grad, group)
        self._after_update()
        self._pin()
        return loss

    def _check_owned(self) -> None:
        """Sharding (FSDP2's fully_shard) replaces the model's parameters: an optimizer made before it
        would update tensors the model no longer uses."""
        owned = {id(p) for p in self.space.model.parameters()}
        if any(id(p) not in owned for p in self.grouping.params()):
            raise OptimizerError(
                "the optimizer's parameters are no longer the model's (was the model sharded or moved "
                "after the optimizer was made?); create the optimizer after fully_shard / .to(device)"
            )

    def _finite(self, loss: torch.Tensor | None, grads: dict[int, torch.Tensor]) -> bool:
        bad = loss is not None and not bool(torch.isfinite(local(torch.as_tensor(loss))).all())
        bad = bad or any(not bool(torch.isfinite(local(g)).all()) for g in grads.values())
        if not any_rank(bad, list(grads.values())):  # sharded (FSDP2): every rank skips the same steps
            return True
        if self.nonfinite == "raise":
            raise FloatingPointError(
                f"non-finite loss or gradients at step {self.step_count + 1}; lower the learning rate, "
                "clip gradients, or use nonfinite='skip' to skip such steps"
            )
        self.zig["skipped"] += 1
        warnings.warn(
            f"zigprune: skipped step {self.step_count + 1}: loss or gradients are not finite "
            f"({self.zig['skipped']} skipped so far); parameters and zero groups are unchanged",
            stacklevel=3,
        )
        return False

    def _base_update(self, p: torch.Tensor, grad: torch.Tensor, group: dict[str, Any]) -> None:
        lr, wd, state = group["lr"], group["weight_decay"], self.state[p]
        if group["variant"] == "sgd":
            if wd:
                grad = grad.add(p, alpha=wd)
            momentum = group["momentum"]
            if momentum:
                buf = state.get("momentum_buffer")
                if buf is None:
                    buf = state["momentum_buffer"] = grad.detach().clone()
                else:
                    buf.mul_(momentum).add_(grad, alpha=1 - group["dampening"])
                grad = grad.add(buf, alpha=momentum) if group["nesterov"] else buf
            p.add_(grad, alpha=-lr)
            return
        beta1, beta2 = group["betas"]
        if "exp_avg" not in state:
            state["step"] = torch.zeros((), dtype=torch.float64)
            state["exp_avg"] = torch.zeros_like(p)
            state["exp_avg_sq"] = torch.zeros_like(p)
        state["step"] += 1
        t = float(state["step"])
        if wd and group["variant"] == "adamw":
            p.mul_(1 - lr * wd)
        elif wd:
            grad = grad.add(p, alpha=wd)
        state["exp_avg"].lerp_(grad, 1 - beta1)
        state["exp_avg_sq"].mul_(beta2).addcmul_(grad, grad, value=1 - beta2)
        denom = (state["exp_avg_sq"] / (1 - beta2**t)).sqrt_().add_(group["eps"])
        p.addcdiv_(state["exp_avg"], denom, value=-lr / (1 - beta1**t))

    def _before_update(self, grads: dict[int, torch.Tensor]) -> None:
        """Add group terms to the gradients (in place) before the base update."""

    def _after_update(self) -> None:
        """Project or decay groups after the base update."""

    def _pin(self) -> None:
        """Keep pruned groups exactly zero, in the parameters and in their optimizer moments."""
        moments = [
            {id(p): self.state[p][key] for p in self.grouping.params() if key in self.state.get(p, {})}
            for key in ("momentum_buffer", "exp_avg", "exp_avg_sq")
        ]
        self.grouping.zero_(self.zig["pruned"], moments)

    def _update_importance(self, grads: dict[int, torch.Tensor], momentum: float) -> None:
        """Moving average of each group's normalised magnitude plus first-order Taylor score |⟨x, ∇⟩|."""
        magnitude = self.grouping.norms()
        taylor = self.grouping.reduce(None, grads).abs()
        score = magnitude / magnitude.max().clamp(min=1e-12) + taylor / taylor.max().clamp(min=1e-12)
        beta = momentum if self.step_count > 1 else 0.0
        self.zig["importance"].mul_(beta).add_(score, alpha=1 - beta)


class TargetedOptimizer(GroupOptimizer):
    """Base of HESSO and DHSPG: a ``Target`` to reach within ``total_steps``, importance tracked meanwhile.

    ``target`` is a ``Target``, or the fraction to remove with ``by``, ``round_to``, ``cost_power``,
    ``cost`` and ``limits`` (a ``zigprune.core.limits.Limits``: families left alone, a maximum share,
    a minimum of heads, uniform widths) beside it; those left out take ``Target``'s defaults. Or a
    :class:`~zigprune.Policy` from ``zp.search`` ("search, then train once"): every family is taken to
    the policy's width, its least important groups first.
    A target that removing every removable group cannot meet is a ``TargetError`` here, saying how
    much can go. ``total_steps=None`` leaves the schedule to ``set_total_steps`` (e.g. from the
    Hugging Face Trainer, ``zigprune.hf.PruningCallback``), before the first step. ``start_step``
    ends the warm-up (default 10% of ``total_steps``); ``importance_momentum`` is the moving
    average's momentum. Every other argument goes to ``GroupOptimizer``. The optimizer registers
    ``shortfall`` with the space, so ``space.construct()`` warns when the schedule had not finished
    (fewer steps run than ``total_steps`` promised).
    """

    def __init__(
        self,
        space: GroupSpace,
        lr: float,
        *args: float,
        target: float | Target,
        total_steps: int | None,
        by: str | None = None,
        round_to: int | None = None,
        cost_power: float | None = None,
        cost: Callable[[torch.Tensor], torch.Tensor] | None = None,
        limits: Limits | None = None,
        start_step: int | None = None,
        importance_momentum: float = 0.9,
        **kwargs: Any,
    ) -> None:
        if total_steps is not None:
            checked_total(total_steps)
        self.given_start_step = start_step
        super().__init__(space, lr, *args, **kwargs)
        self.policy = target if isinstance(target, Policy) else None
        if self.policy is not None:
            target = self._policy_target(space, self.policy, by, round_to, cost_power, cost, limits)
        self.target = Target.of(
            target, by=by, round_to=round_to, cost_power=cost_power, cost=cost, limits=limits
        )
        if self.policy is None:
            check_reachable(space, self.target, self.frozen)
        self.start_step: int | None = None
        self._schedule(total_steps)
        self.importance_momentum = importance_momentum
        space.shortfall = self.shortfall

    def _schedule(self, total_steps: int | None) -> None:
        super()._schedule(total_steps)
        if total_steps is not None:
            self.start_step = default(self.given_start_step, total_steps, 0.1)

    @staticmethod
    def _policy_target(space: GroupSpace, policy: Policy, *options: Any) -> Target:
        """The share of groups a policy removes, as the target reports count it (its widths decide)."""
        if any(option is not None for option in options):
            raise OptimizerError(
                "a policy sets every family's width: give target=policy without by, round_to, cost_power, "
                "cost or limits (search with them instead: zp.search(..., round_to=8))"
            )
        policy.check(space)
        if not policy.removes:
            raise PolicyError("the policy removes no group: search with a smaller budget")
        return Target(policy.removes / space.num_groups, "groups")

    def choose(self, scores: torch.Tensor, taken: torch.Tensor, share: float) -> torch.Tensor:
        """Groups to add to ``taken`` to go ``share`` of the way: to the policy's widths when the target
        is a policy (its lowest-importance groups in each family), else by the target's ranking."""
        if self.policy is not None:
            return self.policy.removed(self.space, scores, share, taken, self.frozen)
        return select(self.space, scores, taken, self.target, share, self.frozen)

    @torch.no_grad()
    def step(self, closure: Callable[[], torch.Tensor] | None = None) -> torch.Tensor | None:
        if self.total_steps is None:
            raise OptimizerError(
                "total_steps is not set: give total_steps= when making the optimizer, or call "
                "set_total_steps(n) before the first step (zigprune.hf.PruningCallback does it in a Trainer)"
            )
        return super().step(closure)

    @property
    def schedule_end(self) -> int:
        """The step from which the target is met: ``total_steps`` here; HESSO and DHSPG compute theirs."""
        return self.total_steps

    def report(self) -> dict[str, float]:
        """``GroupOptimizer.report`` plus ``pruning_done``: the share of the pruning schedule's steps run."""
        done = 0.0 if self.total_steps is None else min(self.step_count / self.schedule_end, 1.0)
        return {**super().report(), "pruning_done": done}

    def shortfall(self) -> str | None:
        """Why the target is not met yet (the schedule has steps left), or None once it has run to its end."""
        if self.total_steps is None:
            return "target not reached: total_steps was never set, so the pruning schedule never ran"
        if self.step_count >= self.schedule_end:
            return None
        removed = removed_share(self.space, self.space.zero_groups(), self.target.by)
        return (
            f"target not reached: ran {self.step_count} of total_steps={self.total_steps}: the pruning "
            f"schedule had not finished (it ends at step {self.schedule_end}), so {removed:.1%} of "
            f"{self.target.by} are removed instead of {self.target.fraction:.1%}; give total_steps as the "
            "number of optimizer steps the run takes, or keep training"
        )


def linear_decay(step_in_period: int, period: int) -> float:
    """Factor that takes a group linearly to exactly zero over ``period`` steps (0 at the last step)."""
    return max(period - step_in_period - 1, 0) / max(period - step_in_period, 1)


def checked_total(total_steps: int) -> int:
    """``total_steps`` if it is a positive int, else a ``ValueError`` saying what it should be."""
    if isinstance(total_steps, bool) or not isinstance(total_steps, int) or total_steps < 1:
        raise ValueError(
            f"total_steps is {total_steps!r}: give the number of optimizer steps the run will take "
            "(epochs x batches per epoch), at least 1; the schedule's warm-up and pruning depend on it"
        )
    return total_steps


def default(value: int | None, total_steps: int, share: float) -> int:
    """``value`` if given, else ``share`` of ``total_steps`` (at least one step)."""
    return int(value) if value is not None else max(1, math.floor(total_steps * share))
