"""Thin torch.distributed helpers. Every collective goes through here so that code is a no-op when not distributed.

Launch with ``torchrun``: ``init_distributed()`` reads the standard ``RANK``/``WORLD_SIZE``/``LOCAL_RANK``
variables that torchrun sets; there is no home-made launcher.
"""
from __future__ import annotations

import datetime
import os
import pickle
from collections.abc import Callable
from typing import Any, TypeVar

import torch
import torch.distributed as dist

T = TypeVar("T")


def is_distributed() -> bool:
    """True when a process group is initialised (decided at call time, never cached)."""
    return dist.is_available() and dist.is_initialized()


def get_rank() -> int:
    return dist.get_rank() if is_distributed() else 0


def get_world_size() -> int:
    return dist.get_world_size() if is_distributed() else 1


def is_main_process() -> bool:
    return get_rank() == 0


def init_distributed(backend: str | None = None) -> torch.device:
    """Initialise the process group from torchrun's environment when present; return this process's device.

    Without ``WORLD_SIZE`` > 1 in the environment nothing is initialised and the CUDA device 0 (or the CPU) is returned.
    """
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if world_size > 1 and not is_distributed():
        local_rank = int(os.environ.get("LOCAL_RANK", "0"))
        if backend is None:
            backend = "nccl" if torch.cuda.is_available() else "gloo"
        if torch.cuda.is_available():
            torch.cuda.set_device(local_rank)
        dist.init_process_group(backend=backend)
    if torch.cuda.is_available():
        return torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
    return torch.device("cpu")


def all_reduce_sum(t: torch.Tensor) -> torch.Tensor:
    """Sum ``t`` over all ranks in place (no-op when not distributed) and return it."""
    if is_distributed():
        dist.all_reduce(t, op=dist.ReduceOp.SUM)
    return t


def broadcast(t: torch.Tensor, src: int = 0) -> torch.Tensor:
    """Broadcast ``t`` from ``src`` in place (no-op when not distributed) and return it."""
    if is_distributed():
        dist.broadcast(t, src=src)
    return t


#: How long the ranks wait for ``broadcast_object`` (and so for ``run_on_rank0``'s file-system work on rank 0).
#: Listing ImageNet-C on a network file system can outlast the default group's timeout (10 minutes under NCCL).
OBJECT_TIMEOUT = datetime.timedelta(hours=2)
_object_group: tuple[Any, Any] | None = None  # (the default group it was made for, the gloo group)


def _objects_group() -> Any:
    """A gloo group over all ranks, with ``OBJECT_TIMEOUT``, for object collectives: host-side pickles stay in host
    memory (no device copies), and a long wait for rank 0 does not trip the default group's watchdog. Made on first
    use (every rank reaches it together, inside a collective) and remade for a new default group. The default group
    when gloo is not built in. Gloo connects the ranks over TCP: on clusters where the host name resolves to a
    loopback address, set ``GLOO_SOCKET_IFNAME`` to the network interface (as for any gloo group)."""
    global _object_group
    world = dist.group.WORLD
    if not dist.is_gloo_available():
        return world
    if _object_group is None or _object_group[0] is not world:
        _object_group = (world, dist.new_group(backend="gloo", timeout=OBJECT_TIMEOUT))
    return _object_group[1]


def broadcast_object(obj: Any, src: int = 0) -> Any:
    """``obj`` of rank ``src`` on every rank (pickled); a collective that waits up to ``OBJECT_TIMEOUT``.

    Returns ``obj`` itself when not distributed.
    """
    if not is_distributed():
        return obj
    box = [obj if get_rank() == src else None]
    dist.broadcast_object_list(box, src=src, group=_objects_group())
    return box[0]


def all_gather_object(obj: Any) -> list[Any]:
    """Every rank's ``obj``, in rank order (pickled between ranks); ``[obj]`` when not distributed."""
    if not is_distributed():
        return [obj]
    out: list[Any] = [None] * get_world_size()
    dist.all_gather_object(out, obj, group=_objects_group())
    return out


def run_on_rank0(fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """``fn(*args, **kwargs)`` computed on rank 0 only and broadcast to every rank; a collective.

    For file-system work (listing dataset folders) that every rank needs but that should hit the file system once.
    An exception raised on rank 0 (or a result that cannot be pickled) is raised on every rank, so no rank is left
    waiting. Rank 0 raises the original exception; the others an unpickled copy (same type and message), or a
    RuntimeError quoting it when it does not survive pickling. A plain call when not distributed. Pickle only
    travels between the ranks of one job, which trust each other (``broadcast_object_list`` pickles too); nothing
    read from a file is unpickled.
    """
    if not is_distributed():
        return fn(*args, **kwargs)
    if get_rank() != 0:
        ok, value = pickle.loads(broadcast_object(None))
        if ok:
            return value
        value.add_note("(raised on rank 0 and broadcast to every rank)")
        raise value
    try:
        result = fn(*args, **kwargs)
        payload = pickle.dumps((True, result), protocol=pickle.HIGHEST_PROTOCOL)
    except Exception as e:
        broadcast_object(_pickled_error(e))
        raise
    broadcast_object(payload)
    return result


def _pickled_error(e: Exception) -> bytes:
    try:
        payload = pickle.dumps((False, e), protocol=pickle.HIGHEST_PROTOCOL)
        pickle.loads(payload)  # some exceptions pickle but cannot be rebuilt
        return payload
    except Exception:  # noqa: BLE001 - whatever fails, the other ranks must still get an error
        return pickle.dumps((False, RuntimeError(f"rank 0 raised {type(e).__name__}: {e}")))


def barrier() -> None:
    if is_distributed():
        dist.barrier()


def all_gather_cat(t: torch.Tensor) -> torch.Tensor:
    """Concatenate ``t`` from every rank along dim 0, in rank order; a collective (call it on every rank).

    The first dimension may differ between ranks (0 included); the other dimensions and the dtype must match.
    Returns ``t`` itself when not distributed.
    """
    if not is_distributed():
        return t
    world = get_world_size()
    size = torch.tensor([t.shape[0]], dtype=torch.int64, device=t.device)
    sizes = [torch.zeros_like(size) for _ in range(world)]
    dist.all_gather(sizes, size)
    counts = [int(s) for s in sizes]
    padded = torch.cat([t, t.new_zeros((max(counts) - t.shape[0], *t.shape[1:]))]).contiguous()
    parts = [torch.empty_like(padded) for _ in range(world)]
    dist.all_gather(parts, padded)
    return torch.cat([p[:n] for p, n in zip(parts, counts)])
