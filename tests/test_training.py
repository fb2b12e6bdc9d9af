"""The training loop: determinism, exact resume after an interruption, hooks, and pickle-free checkpoints."""

from __future__ import annotations

import math
import os
import random
import signal
from pathlib import Path

import numpy as np
import pytest
import torch
from torch.utils.data import TensorDataset

import zigprune as zp
from zigprune import models
from zigprune.errors import LoadError
from zigprune.training import (
    Hook,
    Loop,
    OutputError,
    checkpoint,
    evaluate,
    logits,
    rng_state,
    set_rng_state,
    train,
)

STEPS_PER_EPOCH = 4  # 200 samples, batch 50


@pytest.fixture(autouse=True)
def one_thread():
    """Tiny models run far faster on one thread, above all on a shared, busy CPU."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def data(seed: int = 0) -> tuple[TensorDataset, TensorDataset]:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(240, 1, 8, 8, generator=g)
    y = (x.mean((1, 2, 3)) > 0).long() + 2 * (x[:, 0, 0, 0] > 0).long()
    return TensorDataset(x[:200], y[:200]), TensorDataset(x[200:], y[200:])


def flip(x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    keep = torch.rand(x.shape[0], generator=generator) < 0.5
    return torch.where(keep.view(-1, 1, 1, 1), x, x.flip(-1))


def setup(optimizer: str = "hesso", epochs: int = 3):
    torch.manual_seed(0)
    model = models.create("digits_cnn", num_classes=4)
    space = zp.analyze(model, torch.zeros(2, 1, 8, 8), check=False)
    total = epochs * STEPS_PER_EPOCH
    if optimizer == "hesso":
        opt = zp.HESSO(space, lr=0.1, momentum=0.9, target=0.5, by="macs", total_steps=total, periods=4)
    else:
        opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=total)
    return model, opt, sched


def run(hooks=(), resume=None, optimizer: str = "hesso", epochs: int = 3):
    model, opt, sched = setup(optimizer, epochs)
    train_set, test_set = data()
    kwargs = dict(epochs=epochs, batch_size=50, scheduler=sched, augment=flip, seed=3, progress=False)
    report = opt.report if hasattr(opt, "report") else None
    history = train(
        model,
        opt,
        train_set,
        test_set=test_set,
        hooks=hooks,
        resume=resume,
        postfix=report,
        log_every=1,
        **kwargs,
    )
    return model, opt, history


class StopAt(Hook):
    """Raises KeyboardInterrupt in ``where`` once ``loop.step`` reaches ``step``."""

    def __init__(self, step: int, where: str = "before_step") -> None:
        self.step, self.where = step, where

    def before_step(self, loop: Loop) -> None:
        if self.where == "before_step" and loop.step == self.step:
            raise KeyboardInterrupt

    def after_step(self, loop: Loop) -> None:
        if self.where == "after_step" and loop.step == self.step:
            raise KeyboardInterrupt

    def on_epoch_end(self, loop: Loop, epoch: int) -> None:
        if self.where == "on_epoch_end" and loop.step == self.step:
            raise KeyboardInterrupt


def assert_same_params(a: torch.nn.Module, b: torch.nn.Module) -> None:
    for (name, x), (_, y) in zip(a.state_dict().items(), b.state_dict().items(), strict=True):
        assert torch.equal(x, y), name


def test_training_is_deterministic_and_learns() -> None:
    first, opt, history = run()
    second, _, again = run()
    assert_same_params(first, second)
    assert history.steps == again.steps and history.epochs[-1]["epoch"] == 3
    assert len(history.steps) == 3 * STEPS_PER_EPOCH and history.steps[-1]["step"] == 12
    assert history.epochs[-1]["train_loss"] < history.epochs[0]["train_loss"]
    assert {"group_sparsity", "macs_left", "test_accuracy"} <= set(history.steps[-1]) | set(
        history.epochs[-1]
    )
    assert opt.report()["macs_left"] <= 0.5 + 1e-9


@pytest.mark.parametrize(
    ("where", "step", "optimizer"),
    [("before_step", 5, "hesso"), ("after_step", 4, "hesso"), ("on_epoch_end", 8, "adamw")],
)
def test_resume_after_interrupt_is_exact(tmp_path: Path, where: str, step: int, optimizer: str) -> None:
    reference, _, full = run(optimizer=optimizer)
    saver = checkpoint.Checkpointer(tmp_path / "ckpt.safetensors")
    with pytest.raises(KeyboardInterrupt):
        run(hooks=(StopAt(step, where), saver), optimizer=optimizer)
    assert saver.saved_step == step
    torch.manual_seed(1234)  # resuming must not depend on the global RNG of the new process
    resumed, _, history = run(resume=checkpoint.load(saver.path), optimizer=optimizer)
    assert_same_params(reference, resumed)
    assert history.steps == full.steps and history.epochs == full.epochs


def test_signal_is_deferred_to_a_step_boundary(tmp_path: Path) -> None:
    class Kill(Hook):
        def after_backward(self, loop: Loop, loss: torch.Tensor) -> None:
            if loop.step == 6:
                os.kill(os.getpid(), signal.SIGTERM)

    saver = checkpoint.Checkpointer(tmp_path / "ckpt.safetensors")
    with pytest.raises(KeyboardInterrupt, match="SIGTERM"):
        run(hooks=(Kill(), saver))
    assert saver.saved_step == 7  # the step in flight finished, then training stopped
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL
    reference, _, _ = run()
    resumed, _, _ = run(resume=checkpoint.load(saver.path))
    assert_same_params(reference, resumed)


def test_interrupt_mid_step_saves_nothing(tmp_path: Path) -> None:
    class Boom(Hook):
        def after_backward(self, loop: Loop, loss: torch.Tensor) -> None:
            raise KeyboardInterrupt

    saver = checkpoint.Checkpointer(tmp_path / "ckpt.safetensors")
    with pytest.raises(KeyboardInterrupt):
        run(hooks=(Boom(), saver))
    assert saver.saved_step is None and not saver.path.exists()


def test_hook_order_and_stop() -> None:
    calls: list[str] = []

    class Spy(Hook):
        def on_train_start(self, loop: Loop) -> None:
            calls.append("start")

        def before_step(self, loop: Loop) -> None:
            calls.append(f"before{loop.step}")

        def after_backward(self, loop: Loop, loss: torch.Tensor) -> None:
            assert all(p.grad is not None for p in loop.model.parameters())
            calls.append(f"backward{loop.step}")

        def after_step(self, loop: Loop) -> None:
            calls.append(f"after{loop.step}")
            loop.stop = loop.step == 5

        def on_epoch_end(self, loop: Loop, epoch: int) -> None:
            calls.append(f"epoch{epoch}")

    _, _, history = run(hooks=(Spy(),))
    assert calls[:5] == ["start", "before0", "backward0", "after1", "before1"]
    assert "epoch0" in calls and calls[-1] == "after5" and len(history.steps) == 5


def test_evaluate_restores_mode_and_counts() -> None:
    model = models.create("digits_cnn", num_classes=4).train()
    _, test_set = data()
    metrics = evaluate(model, test_set, batch_size=7)
    assert model.training and metrics.count == 40
    with torch.no_grad():
        model.eval()
        out = model(test_set.tensors[0])
    expected = torch.nn.functional.cross_entropy(out, test_set.tensors[1]).item()
    assert math.isclose(metrics.loss, expected, rel_tol=1e-5)
    assert metrics.accuracy == (out.argmax(1) == test_set.tensors[1]).float().mean().item()


def test_rng_state_round_trip(tmp_path: Path) -> None:
    path = checkpoint.save(tmp_path / "rng.safetensors", rng_state())
    expected = (torch.rand(3).tolist(), random.random(), np.random.rand(), np.random.randn())
    torch.manual_seed(5), random.seed(5), np.random.seed(5)
    set_rng_state(checkpoint.load(path))
    assert (torch.rand(3).tolist(), random.random(), np.random.rand(), np.random.randn()) == expected


def test_checkpoint_round_trips_hesso_state(tmp_path: Path) -> None:
    _, opt, _ = run(epochs=1)
    state = opt.state_dict()
    assert set(state["state"]["zigprune"]) >= {"step", "pruned", "importance", "active"}
    loaded = checkpoint.load(checkpoint.save(tmp_path / "opt.safetensors", state))
    assert_nested_equal(state, loaded)
    _, fresh, _ = setup()
    fresh.load_state_dict(loaded)
    assert fresh.step_count == opt.step_count and torch.equal(fresh.zig["pruned"], opt.zig["pruned"])


def test_checkpoint_keeps_types(tmp_path: Path) -> None:
    state = {
        "ints": {0: 1.5, 7: [True, None]},
        "tuple": (0.9, 0.999),
        "odd": {"$x": float("inf"), "nan": float("nan")},
        "nested": [{"t": torch.arange(3, dtype=torch.int16)}, torch.zeros(0), torch.tensor(True)],
        "np": np.float32(2.5),
    }
    loaded = checkpoint.load(checkpoint.save(tmp_path / "s.safetensors", state))
    assert loaded["ints"] == {0: 1.5, 7: [True, None]} and loaded["tuple"] == (0.9, 0.999)
    assert loaded["odd"]["$x"] == math.inf and math.isnan(loaded["odd"]["nan"]) and loaded["np"] == 2.5
    assert torch.equal(loaded["nested"][0]["t"], torch.arange(3, dtype=torch.int16))
    assert loaded["nested"][1].shape == (0,) and loaded["nested"][2].item() is True
    assert [p.name for p in tmp_path.iterdir()] == ["s.safetensors"]  # no temporary file left


def test_checkpoint_errors(tmp_path: Path) -> None:
    with pytest.raises(checkpoint.CheckpointError, match=r"cannot checkpoint a object at a\.0; "):
        checkpoint.save(tmp_path / "x.safetensors", {"a": [object()]})
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(LoadError, match=r"no checkpoint at .*without --resume"):
        checkpoint.load(tmp_path / "missing.safetensors")
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(b"\x08\x00\x00\x00\x00\x00\x00\x00{}garbage")
    with pytest.raises(LoadError, match=r"is corrupt .*delete it"):
        checkpoint.load(bad)


def assert_nested_equal(a, b) -> None:
    assert type(a) is type(b) or (isinstance(a, dict) and isinstance(b, dict))
    if isinstance(a, torch.Tensor):
        assert a.dtype == b.dtype and torch.equal(a, b)
    elif isinstance(a, dict):
        assert list(a) == list(b)
        for key in a:
            assert_nested_equal(a[key], b[key])
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b)
        for x, y in zip(a, b):
            assert_nested_equal(x, y)
    else:
        assert a == b


def test_logits_of_model_outputs() -> None:
    scores = torch.randn(2, 3)

    class HFOutput:
        logits = scores

    assert logits(scores) is scores and logits(HFOutput()) is scores and logits((scores, None)) is scores
    with pytest.raises(OutputError, match="cannot find class scores in a model output of type dict; return"):
        logits({"x": scores})


class Watch(Hook):
    """Records the learning rate after every step."""

    def __init__(self) -> None:
        self.lrs: list[float] = []

    def after_step(self, loop: Loop) -> None:
        self.lrs.append(loop.optimizer.param_groups[0]["lr"])


def test_cosine_by_name_decays_over_the_run_and_matches_the_scheduler_built_by_hand() -> None:
    """``scheduler="cosine"`` is CosineAnnealingLR over every step of the run: the same weights as the
    scheduler built by hand, and a learning rate at 0 when the run ends."""
    results = []
    for by_name in (True, False):
        model, opt, sched = setup("adamw", epochs=2)
        watch = Watch()
        train(
            model, opt, data()[0], epochs=2, batch_size=50, scheduler="cosine" if by_name else sched,
            seed=3, progress=False, hooks=[watch],
        )  # fmt: skip
        results.append((watch.lrs, [p.detach().clone() for p in model.parameters()]))
    (named, weights), (by_hand, reference) = results
    assert named == by_hand and len(named) == 2 * STEPS_PER_EPOCH
    assert named[0] < 1e-2 and named[-1] == pytest.approx(0.0, abs=1e-12)
    assert all(torch.equal(a, b) for a, b in zip(weights, reference))
