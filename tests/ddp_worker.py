"""One rank of the DDP test: train digits_cnn with HESSO under DistributedDataParallel (gloo, CPU)."""

import os
import sys

import torch
import torch.distributed as dist
from torch import nn

import zigprune as zp
from zigprune import models


def main(rank: int, world: int, port: str, out: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=port)
    dist.init_process_group("gloo", rank=rank, world_size=world)
    torch.manual_seed(0)
    model = models.create("digits_cnn")
    space = zp.analyze(model, torch.randn(2, 1, 8, 8))
    ddp = nn.parallel.DistributedDataParallel(model)
    opt = zp.HESSO(space, lr=0.05, momentum=0.9, target=0.5, total_steps=30, periods=3)
    g = torch.Generator().manual_seed(100 + rank)
    for _ in range(30):
        x, y = torch.randn(16, 1, 8, 8, generator=g), torch.randint(0, 10, (16,), generator=g)
        opt.zero_grad()
        nn.functional.cross_entropy(ddp(x), y).backward()
        opt.step()
    torch.save({"params": [p.detach() for p in model.parameters()], "zero": space.zero_groups()}, out)
    dist.barrier()  # both ranks done before gloo tears down (else one may abort on exit)
    dist.destroy_process_group()
    os._exit(0)  # skip gloo's static destructors, which can abort an exiting process (SIGABRT)


if __name__ == "__main__":
    main(int(sys.argv[1]), int(sys.argv[2]), sys.argv[3], sys.argv[4])
