"""Counting the aten ops a call dispatches: a CPU-measurable proxy for the engine's launch overhead on a GPU.

In eager PyTorch every dispatched op costs a few microseconds of host time (a kernel launch on a GPU), so for the
small per-corruption groups of a mixed batch the number of ops, not the arithmetic, bounds the throughput. Used by
``benchmarks/corruptions_batched_ops.py`` and by the test that keeps per-sample Python loops out of the engine.
"""
from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass

from torch.utils._python_dispatch import TorchDispatchMode

VIEW_OPS = frozenset({
    "alias", "as_strided", "chunk", "detach", "expand", "permute", "reshape", "select", "slice", "split",
    "squeeze", "t", "transpose", "unbind", "unsqueeze", "view", "_unsafe_view",
})
"""Metadata-only ops (no kernel, no allocation): not counted."""
HOST_DATA_OPS = frozenset({"lift_fresh"})
"""A tensor made from host data (``torch.tensor``): on an accelerator, a host-to-device copy follows."""
READ_OPS = frozenset({"_local_scalar_dense", "equal", "is_nonzero", "nonzero", "allclose"})
"""Ops that read a value back to the host: on an accelerator each waits for the device to drain."""


@dataclass
class OpCount:
    """Ops dispatched by one call: ``ops`` counts every op except views (``by_name`` itemises them)."""

    by_name: Counter

    @property
    def ops(self) -> int:
        return sum(self.by_name.values())

    @property
    def host_data(self) -> int:
        return sum(self.by_name[n] for n in HOST_DATA_OPS)

    @property
    def reads(self) -> int:
        return sum(self.by_name[n] for n in READ_OPS)


class _Counter(TorchDispatchMode):
    def __init__(self) -> None:
        super().__init__()
        self.by_name: Counter = Counter()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        name = func.overloadpacket.__name__
        if name not in VIEW_OPS:
            self.by_name[name] += 1
        return func(*args, **(kwargs or {}))


def count_ops(fn: Callable[[], object]) -> OpCount:
    """Run ``fn()`` and count the aten ops it dispatches (views excluded). Ops on the host's own data that never
    reach the dispatcher (``.tolist()``, ``.numpy()``, ``.cpu()`` of CPU tensors) are not seen."""
    with _Counter() as mode:
        fn()
    return OpCount(mode.by_name)
