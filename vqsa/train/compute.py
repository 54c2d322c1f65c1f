"""How a training run uses the machine: torch threads, DataLoader workers, autocast precision, memory format and
where the training corruptions run.

Config values left to ``auto`` (``null``) are chosen from the hardware:

- ``corruption.corrupt_on``: the batched engine in the training process (``device``) when the training set is in
  memory (CIFAR-10 arrays), so no worker competes with the model for the cores; the CPU engine in DataLoader
  workers (``cpu``) for image folders, which need workers to decode anyway.
- ``data.workers``: none for in-memory data corrupted in the training process; for image folders up to 8 on CUDA,
  half the cores on the CPU. Never more than the cores this process may use.
- ``threads``: on the CPU, the cores the workers leave free (divided between the processes of a torchrun job).
- ``amp``: on the CPU, bfloat16 autocast when the CPU has native bfloat16 instructions (AVX512-BF16 or AMX) *and*
  a probe of the model's own training step is at least 10 % faster than float32 (the probe's rates are recorded,
  and kept per machine and model in ``~/.cache/vqsa/precision_probe.json`` so that later runs agree); float32
  otherwise. On CUDA ``auto`` keeps float32 (``amp: true`` turns autocast on).

The codebook's nearest-code search and losses stay in float32 under autocast (see ``vqsa.layers.vq``).
"""
from __future__ import annotations

import contextlib
import copy
import hashlib
import json
import logging
import os
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from vqsa.utils.io import atomic_write_json
from vqsa.utils.meta import cpu_name, usable_cpus
from vqsa.version import __version__

logger = logging.getLogger(__name__)

PRECISIONS = {"float32": None, "bfloat16": torch.bfloat16, "float16": torch.float16}
#: bf16 must beat fp32 by this factor in the probe to be chosen (a margin over timing noise).
BF16_MIN_SPEEDUP = 1.1
_PROBE_CACHE: dict[tuple, dict[str, float]] = {}


@dataclass(frozen=True)
class ComputePlan:
    """The resolved execution settings of one training process (recorded in the run's summary and checkpoint)."""

    device: str
    threads: int
    workers: int
    precision: str
    channels_last: bool
    corrupt_on: str
    probe: dict[str, float] = field(default_factory=dict)

    @property
    def autocast_dtype(self) -> torch.dtype | None:
        return PRECISIONS[self.precision]

    def autocast(self) -> contextlib.AbstractContextManager:
        """The forward pass's autocast context (a null context in float32)."""
        dtype = self.autocast_dtype
        return torch.autocast(self.device, dtype=dtype) if dtype is not None else contextlib.nullcontext()

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def describe(self) -> str:
        """One line: ``compute: cpu, 2 threads, 0 workers, bfloat16 autocast (probe: ...), channels_last, ...``."""
        precision = "float32" if self.precision == "float32" else f"{self.precision} autocast"
        if self.probe:
            precision += " (probe, images/s: " + ", ".join(f"{k} {v:.0f}" for k, v in self.probe.items()) + ")"
        engine = ("batched engine in the training process" if self.corrupt_on == "device"
                  else "CPU engine in the DataLoader workers")
        return (f"compute: {self.device}, {self.threads} thread(s), {self.workers} DataLoader worker(s), {precision}, "
                f"{'channels_last' if self.channels_last else 'contiguous'} memory format, corruptions by the {engine}")


def cpu_has_native_bf16() -> bool:
    """Whether this CPU has bfloat16 instructions (AVX512-BF16 or AMX) that make bf16 autocast fast."""
    cpu = torch.cpu
    return any(getattr(cpu, name, lambda: False)() for name in ("_is_avx512_bf16_supported", "_is_amx_tile_supported"))


def resolve_corrupt_on(corrupt_on: str, in_memory: bool) -> str:
    """``auto`` -> ``device`` (batched engine in the training process) for in-memory data, else ``cpu``."""
    if corrupt_on != "auto":
        return corrupt_on
    return "device" if in_memory else "cpu"


def resolve_workers(workers: int | None, device: torch.device, corrupt_on: str, in_memory: bool, cpus: int) -> int:
    """DataLoader workers: the configured number, or none for in-memory data corrupted in this process, else up to
    8 on CUDA / half the cores on the CPU."""
    if workers is not None:
        return workers
    if in_memory and corrupt_on == "device":
        return 0
    return min(8, cpus) if device.type == "cuda" else max(1, cpus // 2)


def probe_step_rates(
    model: nn.Module, step: Callable[[nn.Module, torch.Tensor], torch.Tensor], batch: torch.Tensor,
    dtypes: tuple[str, ...], *, repeats: int = 2,
) -> dict[str, float]:
    """Training-step rates (images/s) of a copy of ``model`` on ``batch`` under each precision in ``dtypes``.

    ``step(model, x)`` returns the loss to back-propagate. The copy leaves the model, its buffers and the global
    random state untouched; one warm-up step per precision, then the best of ``repeats`` timed steps.
    """
    rates: dict[str, float] = {}
    with torch.random.fork_rng(devices=[]):
        probe = copy.deepcopy(model).train()
        params = [p for p in probe.parameters() if p.requires_grad]
        for name in dtypes:
            dtype = PRECISIONS[name]
            best = float("inf")
            for i in range(repeats + 1):
                t0 = time.perf_counter()
                with torch.autocast(batch.device.type, dtype=dtype) if dtype else contextlib.nullcontext():
                    loss = step(probe, batch)
                grads = torch.autograd.grad(loss, params, allow_unused=True)
                del grads
                if i:
                    best = min(best, time.perf_counter() - t0)
            rates[name] = len(batch) / best
    return rates


def choose_precision(
    amp: bool | None, amp_dtype: str, device: torch.device, probe: Callable[[tuple[str, ...]], dict[str, float]],
) -> tuple[str, dict[str, float]]:
    """``(precision, probe rates)``: ``amp: false`` -> float32; ``true`` -> ``amp_dtype``; ``null`` (auto) -> on a
    CPU with native bf16, bfloat16 when ``probe`` measures it at least :data:`BF16_MIN_SPEEDUP` x faster."""
    if amp is False:
        return "float32", {}
    if amp is True:
        return amp_dtype, {}
    if device.type != "cpu" or not cpu_has_native_bf16():
        return "float32", {}
    rates = probe(("float32", "bfloat16"))
    faster = rates["bfloat16"] >= BF16_MIN_SPEEDUP * rates["float32"]
    return ("bfloat16" if faster else "float32"), rates


def plan_compute(
    *, device: torch.device, threads: int | None, workers: int | None, amp: bool | None, amp_dtype: str,
    channels_last: bool, corrupt_on: str, in_memory: bool, world: int,
    probe: Callable[[tuple[str, ...]], dict[str, float]], saved: dict[str, Any] | None = None,
) -> ComputePlan:
    """Resolve the ``auto`` settings (see the module docstring) and set torch's CPU threads. ``saved``: the plan
    recorded in a checkpoint, whose precision a resumed run keeps, so that it continues with the same arithmetic."""
    cpus = max(1, usable_cpus() // max(1, world))
    where = resolve_corrupt_on(corrupt_on, in_memory)
    n_workers = resolve_workers(workers, device, where, in_memory, cpus)
    n_threads = threads or (max(1, cpus - n_workers) if device.type == "cpu" else torch.get_num_threads())
    if device.type == "cpu":
        torch.set_num_threads(n_threads)  # before the probe, which must time the step as it will run
    if saved and saved.get("precision") in PRECISIONS and amp is None:
        precision, rates = saved["precision"], dict(saved.get("probe") or {})
    else:
        precision, rates = choose_precision(amp, amp_dtype, device, probe)
    return ComputePlan(device.type, n_threads, n_workers, precision, channels_last, where, rates)


def probe_cache_file() -> Path | None:
    """Where probe results persist between runs: ``$VQSA_CACHE_DIR`` (set but empty: nowhere), else
    ``$XDG_CACHE_HOME/vqsa`` or ``~/.cache/vqsa``."""
    folder = os.environ.get("VQSA_CACHE_DIR")
    if folder == "":
        return None
    if folder is None:
        folder = os.path.join(os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache"),
                              "vqsa")
    return Path(folder) / "precision_probe.json"


def cached_probe(key: tuple, probe: Callable[[tuple[str, ...]], dict[str, float]]):
    """``probe`` memoised per ``key`` (model config, batch shape, device, memory format), torch threads, CPU model
    and torch version: within this process, and on disk (:func:`probe_cache_file`), so that later runs on this
    machine choose the same precision instead of timing again (delete the file to measure anew)."""

    def run(dtypes: tuple[str, ...]) -> dict[str, float]:
        full = (*key, dtypes, torch.get_num_threads(), cpu_name(), torch.__version__, __version__)
        if full in _PROBE_CACHE:
            return dict(_PROBE_CACHE[full])
        path, digest = probe_cache_file(), hashlib.sha256(repr(full).encode()).hexdigest()
        stored = _read_cache(path)
        entry = stored.get(digest)
        if isinstance(entry, dict) and all(isinstance(entry.get(d), (int, float)) for d in dtypes):
            rates = {d: float(entry[d]) for d in dtypes}
            logger.info(f"compute: precision probe of this model and machine read from {path}")
        else:
            rates = probe(dtypes)
            if path is not None:
                try:
                    atomic_write_json(path, {**stored, digest: rates})
                except OSError as e:  # a read-only home must not stop a run
                    logger.debug(f"could not store the precision probe in {path}: {e}")
        _PROBE_CACHE[full] = rates
        return dict(rates)

    return run


def _read_cache(path: Path | None) -> dict[str, Any]:
    if path is None or not path.is_file():
        return {}
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as e:
        logger.warning(f"{path}: unreadable precision-probe cache ({e}); measuring again")
        return {}
    return data if isinstance(data, dict) else {}
