"""A network zigprune has never seen, trained once on Fashion-MNIST through the public contract alone.

The model below is defined only here (no zoo entry, no rule written for it): a stem, two blocks
whose two convolution branches are concatenated, gated by squeeze-and-excitation (a sigmoid gate)
and added to a 1x1 projection shortcut, then pooling and a GELU MLP head. Its dense twin trains
with ``torch.optim.SGD``; the pruned one with ``zp.HESSO`` and nothing else from zigprune but
``zp.analyze``, ``space.construct`` and ``zp.count``. Same initial weights, batch order, recipe.

    python benchmarks/held_out.py                # 6 epochs on all 60k images, ~10 min on 2 cores
    python benchmarks/held_out.py --quick        # 1 epoch on 2k images, seconds

Writes ``held_out.md`` and ``held_out.json`` to ``--out`` (default benchmarks/results/held_out).
Goal (issue 3): at least 2x fewer MACs, within 1 point of the dense twin's last-epoch accuracy.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch
from torch import nn
from torch.nn import functional as F

import zigprune as zp
from zigprune import data

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import command_line, machine_info


class SqueezeExcite(nn.Module):
    """Channel gate: x * sigmoid(MLP(mean over space))."""

    def __init__(self, channels: int, hidden: int) -> None:
        super().__init__()
        self.down = nn.Linear(channels, hidden)
        self.up = nn.Linear(hidden, channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        gate = torch.sigmoid(self.up(F.relu(self.down(x.mean((2, 3))))))
        return x * gate[:, :, None, None]


class ConcatBlock(nn.Module):
    """Two 3x3 branches, concatenated, gated, added to a 1x1 projection of the input."""

    def __init__(self, cin: int, branch: int, stride: int) -> None:
        super().__init__()
        self.a = nn.Sequential(nn.Conv2d(cin, branch, 3, stride, 1, bias=False), nn.BatchNorm2d(branch))
        self.b = nn.Sequential(
            nn.Conv2d(cin, branch, 3, stride, 1, bias=False),
            nn.BatchNorm2d(branch),
            nn.ReLU(),
            nn.Conv2d(branch, branch, 3, 1, 1, bias=False),
            nn.BatchNorm2d(branch),
        )
        self.gate = SqueezeExcite(2 * branch, branch // 2)
        self.shortcut = nn.Sequential(
            nn.Conv2d(cin, 2 * branch, 1, stride, bias=False), nn.BatchNorm2d(2 * branch)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.gate(torch.cat([self.a(x), self.b(x)], dim=1))
        return F.relu(y + self.shortcut(x))


class HeldOutNet(nn.Module):
    """Stem, two concat blocks, global pooling, a GELU MLP head."""

    def __init__(self, num_classes: int = 10, width: int = 32) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(1, width, 3, 1, 1, bias=False), nn.BatchNorm2d(width), nn.ReLU())
        self.block1 = ConcatBlock(width, width, 2)
        self.block2 = ConcatBlock(2 * width, 2 * width, 2)
        self.head = nn.Sequential(
            nn.Linear(4 * width, 2 * width), nn.GELU(), nn.Linear(2 * width, num_classes)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.block2(self.block1(self.stem(x))).mean((2, 3)))


def accuracy(model: nn.Module, dataset: torch.utils.data.TensorDataset) -> float:
    model.eval()
    x, y = dataset.tensors
    with torch.no_grad():
        correct = sum(int((model(xb).argmax(1) == yb).sum()) for xb, yb in zip(x.split(1000), y.split(1000)))
    model.train()
    return 100.0 * correct / len(y)


def run(method: str, ds: data.Dataset, args: argparse.Namespace) -> dict:
    """Train one model; ``hesso`` prunes while training and ends with the constructed slim model."""
    torch.manual_seed(args.seed)
    model = HeldOutNet()
    example = torch.zeros(1, *ds.input_shape)
    x, y = ds.train.tensors
    steps_per_epoch = -(-len(y) // args.batch_size)
    total = steps_per_epoch * args.epochs
    start = time.perf_counter()
    if method == "dense":
        space = None
        opt: torch.optim.Optimizer = torch.optim.SGD(
            model.parameters(), lr=args.lr, momentum=0.9, weight_decay=5e-4
        )
    else:
        space = zp.analyze(model, example)
        opt = zp.HESSO(
            space,
            lr=args.lr,
            momentum=0.9,
            weight_decay=5e-4,
            target=args.target,
            by="macs",
            total_steps=total,
        )
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(opt, total)
    order = torch.Generator().manual_seed(args.seed)
    for epoch in range(args.epochs):
        print(f"{method}: epoch {epoch + 1}/{args.epochs}", flush=True)
        for index in torch.randperm(len(y), generator=order).split(args.batch_size):
            xb = ds.augment(x[index]) if ds.augment else x[index]
            opt.zero_grad()
            F.cross_entropy(model(xb), y[index]).backward()
            opt.step()
            schedule.step()
    final = space.construct() if space is not None else model
    seconds = time.perf_counter() - start
    return {
        "method": method,
        "accuracy": accuracy(final, ds.test),
        "seconds": seconds,
        **zp.count(final, example),
    }


def table(rows: list[dict]) -> str:
    dense = rows[0]
    lines = [
        "| model | last-epoch acc | Δ vs dense (pt) | MACs | MACs reduction | params | wall ratio |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(
            f"| {r['method']} | {r['accuracy']:.2f} % | {r['accuracy'] - dense['accuracy']:+.2f} | "
            f"{r['macs'] / 1e6:.2f} M | {dense['macs'] / r['macs']:.2f}× | {r['params'] / 1e3:.1f} k | "
            f"{r['seconds'] / dense['seconds']:.2f}× |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=6)
    parser.add_argument("--subset", type=int, default=None, help="training images (default all)")
    parser.add_argument("--target", type=float, default=0.5, help="fraction of MACs to remove")
    parser.add_argument("--lr", type=float, default=0.05)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--data-dir", default=None, help="Fashion-MNIST idx files (default: Debian's)")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/held_out"))
    parser.add_argument("--quick", action="store_true", help="1 epoch on 2,000 images")
    args = parser.parse_args(argv)
    if args.quick:
        args.epochs, args.subset = 1, args.subset or 2000
    ds = data.load("fashion-mnist", args.data_dir, subset=args.subset, seed=args.seed)
    rows = [run(method, ds, args) for method in ("dense", "hesso")]
    text = table(rows)
    print(text)
    args.out.mkdir(parents=True, exist_ok=True)
    report = {"command": command_line(__file__, sys.argv[1:] if argv is None else argv)}
    report.update(machine=machine_info(), rows=rows)
    (args.out / "held_out.json").write_text(json.dumps(report, indent=2))
    (args.out / "held_out.md").write_text(
        f"# Held-out network on Fashion-MNIST\n\nCommand: `{report['command']}`\n\n"
        f"Machine: {report['machine']['summary']}\n\n{text}\n"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
