"""Shared pieces of the two-process (gloo) codebook tests (imported by the spawned workers too)."""
from __future__ import annotations

import torch
import torch.distributed as dist


def same_on_all_ranks(t: torch.Tensor) -> bool:
    """True on every rank when ``t`` is bit-identical on all ranks (a collective)."""
    ref = t.detach().clone()
    dist.broadcast(ref, 0)
    ok = torch.tensor(int(torch.equal(ref, t.detach())))
    dist.all_reduce(ok, op=dist.ReduceOp.MIN)
    return bool(ok)


def ddp_sgd_steps(model: torch.nn.Module, batches: list[torch.Tensor]) -> None:
    """One SGD step (lr 0.1) of the DDP-wrapped ``model`` per batch on logits.sum() + aux_loss, then release DDP."""
    ddp = torch.nn.parallel.DistributedDataParallel(model)
    opt = torch.optim.SGD(ddp.parameters(), lr=0.1)
    for x in batches:
        out = ddp(x, return_aux=True)
        (out.logits.sum() + out.aux_loss).backward()
        opt.step(), opt.zero_grad()
    del ddp  # release DDP's reducer (and its gloo work) before the process group goes away
    dist.barrier()
