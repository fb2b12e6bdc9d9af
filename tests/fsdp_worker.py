"""One rank of the FSDP2 test: a model sharded with ``fully_shard`` (gloo, CPU) trained by a zigprune
optimizer; with ``reference`` instead of a rank, the same training in one process on both ranks' data."""

import os
import sys

import torch
import torch.distributed as dist
from torch import nn

import zigprune as zp

STEPS = 30


def model() -> nn.Module:
    """Uneven dim-0 shards (7 and 5 rows), an empty shard (the transposed conv's weight has one input
    row) and a group slice along dim 1 (its output channels)."""
    torch.manual_seed(0)
    return nn.Sequential(
        nn.ConvTranspose2d(1, 7, 3, padding=1), nn.BatchNorm2d(7), nn.ReLU(),
        nn.Conv2d(7, 5, 3, padding=1), nn.BatchNorm2d(5), nn.ReLU(),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(1), nn.Linear(5, 10),
    )  # fmt: skip


def optimizer(name: str, space: zp.GroupSpace) -> torch.optim.Optimizer:
    if name == "HESSO":
        return zp.HESSO(space, lr=0.05, momentum=0.9, target=0.4, total_steps=STEPS, periods=3)
    if name == "DHSPG":
        return zp.DHSPG(space, lr=0.05, momentum=0.9, target=0.4, total_steps=STEPS)
    return zp.HSPG(space, lr=0.05, momentum=0.9, lmbda=0.1, total_steps=STEPS)


def batches(rank: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
    g = torch.Generator().manual_seed(100 + rank)
    return [
        (torch.randn(16, 1, 8, 8, generator=g), torch.randint(0, 10, (16,), generator=g))
        for _ in range(STEPS)
    ]


def rank_main(rank: int, world: int, port: str, names: str, out: str) -> None:
    """Each optimizer of ``names`` (comma-separated) in turn, in one process group; ``out`` has a
    ``{name}`` field for the file of each."""
    from torch.distributed.device_mesh import init_device_mesh

    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=port)
    dist.init_process_group("gloo", rank=rank, world_size=world)
    mesh = init_device_mesh("cpu", (world,))
    for name in names.split(","):
        train_sharded(rank, mesh, name, out.format(name=name))
    dist.barrier()  # both ranks done before gloo tears down (else one may abort on exit)
    dist.destroy_process_group()
    os._exit(0)  # skip gloo's static destructors, which can abort an exiting process (SIGABRT)


def train_sharded(rank: int, mesh: object, name: str, out: str) -> None:
    from torch.distributed.fsdp import fully_shard

    net = model()
    space = zp.analyze(net, torch.randn(2, 1, 8, 8))
    for layer in net:
        if any(True for _ in layer.parameters(recurse=False)):
            fully_shard(layer, mesh=mesh)
    fully_shard(net, mesh=mesh)
    opt = optimizer(name, space)
    for x, y in batches(rank):
        opt.zero_grad()
        nn.functional.cross_entropy(net(x), y).backward()
        opt.step()
    zero = space.zero_groups()
    params = [p.full_tensor().detach() for p in net.parameters()]
    torch.save({"params": params, "zero": zero}, out)


def reference(name: str, out: str) -> None:
    """Gradients averaged over the ranks, as FSDP does: the mean of the two ranks' losses, each batch
    forwarded on its own (BatchNorm statistics per rank)."""
    net = model()
    space = zp.analyze(net, torch.randn(2, 1, 8, 8))
    opt = optimizer(name, space)
    for pairs in zip(batches(0), batches(1), strict=True):
        opt.zero_grad()
        (sum(nn.functional.cross_entropy(net(x), y) for x, y in pairs) / 2).backward()
        opt.step()
    torch.save({"params": [p.detach() for p in net.parameters()], "zero": space.zero_groups()}, out)


if __name__ == "__main__":
    if sys.argv[1] == "reference":
        for name in sys.argv[2].split(","):
            reference(name, sys.argv[3].format(name=name))
    else:
        rank_main(int(sys.argv[1]), int(sys.argv[2]), sys.argv[3], sys.argv[4], sys.argv[5])
