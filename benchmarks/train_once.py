"""Train once on Fashion-MNIST: dense SGD against zigprune's HSPG, DHSPG and HESSO on ResNet-20.

Every run uses the same recipe: ``models.create("resnet20", in_channels=1, num_classes=10)`` on
1x28x28 images, SGD with momentum 0.9 and weight decay 5e-4, batch 128, learning rate 0.1 with a
per-step cosine schedule (``CosineAnnealingLR`` down to 0 over all steps), ``--epochs`` epochs, and
for each seed the same initial weights, the same batch order and the same random horizontal flips
for every method: the training is ``zigprune.training.train``, the loop ``zigprune compress`` and
the bench run on. The optimizers come from ``zigprune.optim.make``:

* ``dense``: ``torch.optim.SGD`` (the baseline);
* ``hspg``: ``zp.HSPG(lmbda=1e-3)``, which has no explicit target (it prunes what the penalty zeroes);
* ``dhspg``: ``zp.DHSPG(target=Target(--macs-target, "macs"))``;
* ``hesso``: ``zp.HESSO(target=Target(--macs-target, "macs"))``.

``--macs-target 0.6`` (default) asks to remove 60 % of the MACs, i.e. 2.5x fewer MACs. The model is
analysed on the first two training images, and after training the pruning runs call
``space.construct()`` (which checks that the slim model reproduces the zero-group model's outputs on
them), and the reported accuracy is the last-epoch test accuracy of the slim model (of the trained
model for ``dense``). Parameters and MACs come from ``zp.count`` on one 1x28x28 training image.
Per-epoch test accuracy during training is measured on the full (not yet constructed) model.

Wall time of a run is ``zp.analyze`` + the training loop + ``space.construct()``; the per-epoch test
evaluations and the progress-bar bookkeeping (``opt.report()`` every few steps) are excluded and
reported separately. Its ratio is taken against the dense run of the same seed. The process CPU
time of the same parts (``time.process_time``, all threads) is reported too, as wall time suffers
when other processes share the CPU.

Optimizer-step overhead: for each method a fresh model (same seed) and one fixed training batch of
128 images; after a few untimed forward/backward warm-ups, ``--step-iters`` (default 50) iterations
of forward, backward and ``optimizer.step()`` are timed separately with ``time.perf_counter``. The
methods are interleaved iteration by iteration so background load hits them alike. The zigprune
optimizers get ``total_steps=--step-iters``, so the timed steps go through their schedule (warm-up,
pruning, pinned phase) in the same proportions as a full run. Reported: mean ``optimizer.step()``
time and mean forward+backward+step time, each as a ratio to ``torch.optim.SGD``.

Data: the idx files of Fashion-MNIST (``apt-get install dataset-fashion-mnist`` puts them in
``/usr/share/datasets/fashion-mnist``), read with ``zigprune.data.load("fashion-mnist")``
(standardised with mean 0.2860 and std 0.3530); ``--subset K`` keeps the first K training images.

Run from the repository root::

    PYTHONPATH=src python benchmarks/train_once.py --quick              # ~1-2 minutes on 2 cores
    PYTHONPATH=src python benchmarks/train_once.py --epochs 3 --subset 20000
    PYTHONPATH=src python benchmarks/train_once.py                      # 15 epochs, all 60k images

It prints a Markdown table and writes ``train_once.md`` (table, command, machine, seeds),
``train_once.json`` (everything) and ``train_once.png`` (test accuracy per epoch and MACs left
over training) to ``--out`` (default ``benchmarks/results/train_once``). The exit status is 2 when
the data are missing, 1 when a run raised (its traceback is printed and kept in the JSON), else 0.
"""

from __future__ import annotations

import argparse
import datetime as dt
import statistics
import sys
import time
import traceback
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.utils.data import TensorDataset
from tqdm import tqdm

try:
    import zigprune as zp
except ImportError:  # run from a checkout without PYTHONPATH=src
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
    import zigprune as zp
from zigprune import data as datasets
from zigprune import models
from zigprune.errors import DataError
from zigprune.optim import Target, make, targeted
from zigprune.training import Hook, Loop, evaluate, steps_per_epoch, train

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import command_line, machine_info
from train_once_report import (
    LABELS,
    STEM,
    markdown_table,
    overhead_table,
    summarise,
    write_outputs,
)

DEFAULT_DATA_DIR = Path("/usr/share/datasets/fashion-mnist")
DEFAULT_OUT = Path("benchmarks/results/train_once")
MODEL = "resnet20"
METHODS = ("dense", "hspg", "dhspg", "hesso")
QUICK_TRAIN, QUICK_TEST, QUICK_EPOCHS, QUICK_STEP_ITERS = 2000, 1000, 1, 20
HSPG_LAMBDA = 1e-3
STEP_WARMUP = 3
FLIP = datasets.Augment(flip=True)

# -- data ------------------------------------------------------------------------------------------------


def load_data(args: argparse.Namespace) -> dict[str, torch.Tensor]:
    """Fashion-MNIST through ``zigprune.data``, cut to the first ``--subset`` / ``--test-subset`` images."""
    ds = datasets.load("fashion-mnist", args.data_dir)
    (train_x, train_y), (test_x, test_y) = ds.train.tensors, ds.test.tensors
    train_slice, test_slice = slice(args.subset), slice(args.test_subset)
    return {
        "train_x": train_x[train_slice],
        "train_y": train_y[train_slice],
        "test_x": test_x[test_slice],
        "test_y": test_y[test_slice],
    }


# -- training --------------------------------------------------------------------------------------------


def build(seed: int) -> nn.Module:
    torch.manual_seed(seed)
    return models.create(MODEL, in_channels=1, num_classes=10)


def make_optimizer(
    method: str, model: nn.Module, space: Any, total_steps: int, args: argparse.Namespace
) -> torch.optim.Optimizer:
    """``torch.optim.SGD`` for ``dense``, else the zigprune optimizer from the library's one factory."""
    common = {"lr": args.lr, "momentum": args.momentum, "weight_decay": args.weight_decay}
    if method == "dense":
        return torch.optim.SGD(model.parameters(), **common)
    options = {"target": Target(args.macs_target, "macs")} if targeted(method) else {"lmbda": HSPG_LAMBDA}
    return make(method, space, total_steps=total_steps, **common, **options)


def examples(data: dict[str, torch.Tensor], n: int) -> torch.Tensor:
    """The first ``n`` training images: real inputs for ``zp.analyze``'s construction check and counts."""
    return data["train_x"][:n]


class RunClock(Hook):
    """Times every step's forward+backward and ``optimizer.step()``, and the parts excluded from wall time.

    At each epoch end it evaluates the full model on the test set (timed, excluded) and completes the
    epoch's record with test accuracy, learning rate and, for pruning runs, ``opt.report()``; the
    progress fields (``postfix``, ``opt.report()`` every few steps) are timed and excluded too.
    """

    def __init__(self, label: str, model: nn.Module, opt: torch.optim.Optimizer, test: TensorDataset) -> None:
        self.label, self.opt, self.test = label, opt, test
        self.pruning = hasattr(opt, "report")
        self.fwd_bwd: list[float] = []
        self.step: list[float] = []
        self.epochs: list[dict] = []
        self.eval_s = self.eval_cpu_s = self.log_s = self.log_cpu_s = 0.0
        self._forward = self._step = 0.0
        self.handles = [
            model.register_forward_pre_hook(self._on_forward),
            opt.register_step_pre_hook(self._on_step),
            opt.register_step_post_hook(self._on_stepped),
        ]

    def _on_forward(self, *_: Any) -> None:
        self._forward = time.perf_counter()

    def _on_step(self, *_: Any) -> None:
        self._step = time.perf_counter()
        self.fwd_bwd.append(self._step - self._forward)

    def _on_stepped(self, *_: Any) -> None:
        self.step.append(time.perf_counter() - self._step)

    def postfix(self) -> dict[str, float]:
        """``opt.report()`` for the step log and the bar, its time kept out of the training time."""
        start, cpu = time.perf_counter(), time.process_time()
        report = self.opt.report()
        self.log_s += time.perf_counter() - start
        self.log_cpu_s += time.process_time() - cpu
        return report

    def on_epoch_end(self, loop: Loop, epoch: int) -> None:
        start, cpu = time.perf_counter(), time.process_time()
        test_acc = evaluate(loop.model, self.test).accuracy
        self.eval_s += time.perf_counter() - start
        self.eval_cpu_s += time.process_time() - cpu
        row = loop.history.epochs[-1]
        record = {
            "epoch": epoch + 1,
            "train_loss": row["train_loss"],
            "train_acc": row["train_accuracy"],
            "test_acc": test_acc,
            "lr_end": float(self.opt.param_groups[0]["lr"]),
        }
        if self.pruning:
            record.update(self.opt.report())
        self.epochs.append(record)
        tqdm.write(
            f"{self.label} epoch {epoch + 1}: loss {record['train_loss']:.4f} "
            f"train acc {record['train_acc']:.4f} test acc {test_acc:.4f}"
            + (f" macs_left {record['macs_left']:.3f}" if self.pruning else ""),
            file=sys.stderr,
        )

    def close(self) -> None:
        """Remove the model and optimizer hooks."""
        for handle in self.handles:
            handle.remove()


def train_run(method: str, seed: int, data: dict[str, torch.Tensor], args: argparse.Namespace) -> dict:
    """One training run on ``zigprune.training.train``; returns its record (accuracy per epoch, slim model
    stats, timings)."""
    train_set = TensorDataset(data["train_x"], data["train_y"])
    test_set = TensorDataset(data["test_x"], data["test_y"])
    per_epoch = steps_per_epoch(len(train_set), args.batch_size)
    total_steps = per_epoch * args.epochs
    model = build(seed)
    dense_counts = zp.count(model, examples(data, 1))

    t0, c0 = time.perf_counter(), time.process_time()
    space = zp.analyze(model, examples(data, 2)) if method != "dense" else None
    analyze_s, cpu_s = time.perf_counter() - t0, time.process_time() - c0
    opt = make_optimizer(method, model, space, total_steps, args)
    clock = RunClock(f"{LABELS[method]} seed {seed}", model, opt, test_set)
    c_train = time.process_time()
    history = train(
        model,
        opt,
        train_set,
        epochs=args.epochs,
        batch_size=args.batch_size,
        scheduler="cosine",
        augment=FLIP,
        hooks=[clock],
        seed=seed,
        progress=not args.no_progress,
        postfix=clock.postfix if clock.pruning else None,
        log_every=max(1, min(10, per_epoch // 20)),
        desc=f"{LABELS[method]:>9} seed {seed}",
    )
    cpu_s += time.process_time() - c_train - clock.eval_cpu_s - clock.log_cpu_s
    train_s = history.seconds - clock.eval_s - clock.log_s
    clock.close()

    model.eval()
    construct_s = 0.0
    final = model
    report = None
    if space is not None:
        report = opt.report()
        t_c, c_c = time.perf_counter(), time.process_time()
        final = space.construct()
        construct_s, cpu_s = time.perf_counter() - t_c, cpu_s + time.process_time() - c_c
    t_eval = time.perf_counter()
    accuracy = evaluate(final, test_set).accuracy
    eval_s = clock.eval_s + time.perf_counter() - t_eval
    counts = zp.count(final, examples(data, 1))
    macs_history = [(0, 1.0)] + [(int(r["step"]), r["macs_left"]) for r in history.steps if "macs_left" in r]
    return {
        "method": method,
        "seed": seed,
        "accuracy": accuracy,
        "accuracy_full_model": clock.epochs[-1]["test_acc"],
        "params": counts["params"],
        "macs": counts["macs"],
        "dense_params": dense_counts["params"],
        "dense_macs": dense_counts["macs"],
        "macs_reduction": dense_counts["macs"] / max(counts["macs"], 1),
        "params_reduction": dense_counts["params"] / max(counts["params"], 1),
        "report": report,
        "num_groups": space.num_groups if space is not None else None,
        "steps": total_steps,
        "steps_per_epoch": per_epoch,
        "wall_s": analyze_s + train_s + construct_s,
        "cpu_s": cpu_s,
        "analyze_s": analyze_s,
        "train_s": train_s,
        "construct_s": construct_s,
        "eval_s": eval_s,
        "log_s": clock.log_s,
        "in_run_step_ms_mean": 1e3 * statistics.fmean(clock.step),
        "in_run_step_ms_median": 1e3 * statistics.median(clock.step),
        "in_run_fwd_bwd_ms_mean": 1e3 * statistics.fmean(clock.fwd_bwd),
        "in_run_fwd_bwd_ms_median": 1e3 * statistics.median(clock.fwd_bwd),
        "epochs": clock.epochs,
        "macs_left_history": macs_history if space is not None else None,
    }


# -- optimizer-step overhead -----------------------------------------------------------------------------


def step_overhead(
    methods: list[str], seed: int, data: dict[str, torch.Tensor], args: argparse.Namespace
) -> dict:
    """Time forward+backward and ``optimizer.step()`` per iteration for each method (see module docstring)."""
    iters = args.step_iters
    names = ["dense", *[m for m in methods if m != "dense"]]
    xb = data["train_x"][: args.batch_size]
    yb = data["train_y"][: args.batch_size]
    loss_fn = nn.CrossEntropyLoss()
    setups = {}
    for method in names:
        model = build(seed)
        space = zp.analyze(model, examples(data, 2)) if method != "dense" else None
        model.train()
        for _ in range(STEP_WARMUP):  # untimed: first-call allocations of autograd and the kernels
            model.zero_grad(set_to_none=True)
            loss_fn(model(xb), yb).backward()
        setups[method] = (model, make_optimizer(method, model, space, iters, args))
    times: dict[str, dict[str, list[float]]] = {m: {"fwd_bwd": [], "step": []} for m in names}
    bar = tqdm(total=iters * len(names), desc="step overhead", disable=args.no_progress, dynamic_ncols=True)
    for _ in range(iters):
        for method in names:
            model, opt = setups[method]
            opt.zero_grad(set_to_none=True)
            t0 = time.perf_counter()
            loss_fn(model(xb), yb).backward()
            t1 = time.perf_counter()
            opt.step()
            t2 = time.perf_counter()
            times[method]["fwd_bwd"].append(t1 - t0)
            times[method]["step"].append(t2 - t1)
            bar.update()
    bar.close()
    result: dict[str, Any] = {"iters": iters, "batch": int(xb.shape[0]), "warmup": STEP_WARMUP, "methods": {}}
    base_step = statistics.fmean(times["dense"]["step"])
    base_total = statistics.fmean(a + b for a, b in zip(times["dense"]["fwd_bwd"], times["dense"]["step"]))
    for method in names:
        t = times[method]
        total = [a + b for a, b in zip(t["fwd_bwd"], t["step"])]
        result["methods"][method] = {
            "optimizer": "torch.optim.SGD" if method == "dense" else LABELS[method],
            "step_ms_mean": 1e3 * statistics.fmean(t["step"]),
            "step_ms_median": 1e3 * statistics.median(t["step"]),
            "fwd_bwd_ms_mean": 1e3 * statistics.fmean(t["fwd_bwd"]),
            "total_ms_mean": 1e3 * statistics.fmean(total),
            "total_ms_median": 1e3 * statistics.median(total),
            "step_ratio": statistics.fmean(t["step"]) / base_step,
            "total_ratio": statistics.fmean(total) / base_total,
            "step_times_s": t["step"],
            "fwd_bwd_times_s": t["fwd_bwd"],
        }
    return result


# -- summary and output ----------------------------------------------------------------------------------


# -- driver ----------------------------------------------------------------------------------------------


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="train_once.py",
        description=(
            "Train ResNet-20 on Fashion-MNIST once with dense SGD, HSPG, DHSPG and HESSO (same recipe),\n"
            "construct the slim models and report accuracy, MACs, params, wall time and step overhead."
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--data-dir", type=Path, default=DEFAULT_DATA_DIR, help="folder with the idx(.gz) files"
    )
    parser.add_argument(
        "--epochs", type=int, default=None, help="epochs per run (default 15; 1 with --quick)"
    )
    parser.add_argument(
        "--subset", type=int, default=None, help="use the first K training images (default all)"
    )
    parser.add_argument(
        "--test-subset", type=int, default=None, help="use the first K test images (default all)"
    )
    parser.add_argument("--seeds", type=int, default=1, help="number of seeds (0, 1, ...) per method")
    parser.add_argument("--methods", default=",".join(METHODS), help="comma list of " + ",".join(METHODS))
    parser.add_argument("--macs-target", type=float, default=0.6, help="fraction of MACs DHSPG/HESSO remove")
    parser.add_argument("--lr", type=float, default=0.1)
    parser.add_argument("--momentum", type=float, default=0.9)
    parser.add_argument("--weight-decay", type=float, default=5e-4)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument(
        "--step-iters",
        type=int,
        default=None,
        help="timed steps per optimizer (default 50, 20 with --quick; 0: skip)",
    )
    parser.add_argument(
        "--out", type=Path, default=DEFAULT_OUT, help=f"output folder (default {DEFAULT_OUT})"
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help=f"{QUICK_TRAIN} train / {QUICK_TEST} test images, {QUICK_EPOCHS} epoch (explicit flags win)",
    )
    parser.add_argument("--no-progress", action="store_true", help="no tqdm progress bars")
    args = parser.parse_args(argv)
    if args.epochs is None:
        args.epochs = QUICK_EPOCHS if args.quick else 15
    if args.step_iters is None:
        args.step_iters = QUICK_STEP_ITERS if args.quick else 50
    if args.quick:
        args.subset = args.subset or QUICK_TRAIN
        args.test_subset = args.test_subset or QUICK_TEST
    args.methods = [m.strip().lower() for m in args.methods.split(",") if m.strip()]
    unknown = sorted(set(args.methods) - set(METHODS))
    if unknown or not args.methods:
        parser.error(f"--methods: unknown {unknown}; choose from {','.join(METHODS)}")
    args.methods = [m for m in METHODS if m in args.methods]
    for name in ("epochs", "seeds", "batch_size"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be at least 1")
    if not 0 < args.macs_target < 1:
        parser.error("--macs-target must lie strictly between 0 and 1")
    return args


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = parse_args(argv)
    try:
        data = load_data(args)
    except DataError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    seeds = list(range(args.seeds))
    machine = machine_info()  # before training: the source digest is of the code that ran
    n_train, n_test = data["train_x"].shape[0], data["test_x"].shape[0]
    print(
        f"Fashion-MNIST from {args.data_dir}: {n_train} train / {n_test} test images; methods "
        f"{','.join(args.methods)}; {args.epochs} epoch(s); seeds {seeds}; "
        f"torch threads {torch.get_num_threads()}",
        file=sys.stderr,
    )
    started = time.perf_counter()
    runs: list[dict] = []
    for seed in seeds:
        for method in args.methods:
            try:
                runs.append(train_run(method, seed, data, args))
            except Exception:
                tb = traceback.format_exc()
                print(f"{method} seed {seed} failed:\n{tb}", file=sys.stderr)
                runs.append({"method": method, "seed": seed, "error": tb})
    overhead = None
    if args.step_iters > 0:
        try:
            overhead = step_overhead(args.methods, seeds[0], data, args)
        except Exception:
            tb = traceback.format_exc()
            print(f"step overhead failed:\n{tb}", file=sys.stderr)
            runs.append({"method": "step_overhead", "seed": seeds[0], "error": tb})
    rows = summarise(runs, args.methods, overhead)
    report = {
        "command": command_line(__file__, argv),
        "timestamp": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "machine": machine,
        "settings": {
            "model": MODEL,
            "data_dir": str(args.data_dir),
            "quick": args.quick,
            "methods": args.methods,
            "seeds": seeds,
            "epochs": args.epochs,
            "subset": args.subset,
            "test_subset": args.test_subset,
            "train_size": n_train,
            "test_size": n_test,
            "steps_per_epoch": steps_per_epoch(n_train, args.batch_size),
            "batch_size": args.batch_size,
            "lr": args.lr,
            "momentum": args.momentum,
            "weight_decay": args.weight_decay,
            "schedule": "CosineAnnealingLR per step, T_max = total steps",
            "macs_target": args.macs_target,
            "hspg_lambda": HSPG_LAMBDA,
            "data": "zigprune.data.load('fashion-mnist'): mean 0.2860, std 0.3530, random flips",
            "step_iters": args.step_iters,
        },
        "summary": rows,
        "step_overhead": overhead,
        "runs": runs,
        "total_s": time.perf_counter() - started,
    }
    write_outputs(args.out, report)
    print(markdown_table(rows, len(seeds)))
    if overhead:
        print()
        print(overhead_table(overhead))
    print(f"\nwrote {args.out / STEM}.md, .json, .png in {report['total_s']:.0f} s", file=sys.stderr)
    return 1 if any("error" in r for r in runs) else 0


if __name__ == "__main__":
    sys.exit(main())
