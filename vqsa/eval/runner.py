"""Streaming evaluation: one DataLoader over all cells, exact correct/total counts per cell, reduced over ranks.

Every cell (clean, then corruption x severity) is concatenated into one index space; each rank takes the indices
``rank, rank + world, ...`` (no padding, so nothing is counted twice, unlike ``DistributedSampler``), counts correct
predictions per cell, and one ``all_reduce`` sums the counts. Images travel as uint8 and are scaled to [0, 1] on the
device: the model contract is inputs in [0, 1] with normalisation inside the model.
"""
from __future__ import annotations

import datetime
import os
import warnings
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset, Sampler

from vqsa.data.cifar import ArrayDataset
from vqsa.data.corrupted import EvalImages
from vqsa.metrics import top1_correct
from vqsa.utils import distributed as dist
from vqsa.utils.meta import git_sha, machine, versions

from .datasets import EvalPlan, build_plan, resolve_corruptions
from .results import CLEAN, CellCount, EvalResults


class CellStream(Dataset):
    """All cells of a plan as one dataset of ``(uint8 CHW image, label, cell id)``; with ``limit`` each cell keeps
    the same seeded random subset of ``limit`` items (paired across cells of equal size)."""

    def __init__(self, plan: EvalPlan, limit: int | None = None, seed: int = 0) -> None:
        if limit is not None and (not isinstance(limit, int) or limit < 1):
            raise ValueError(f"limit must be a positive integer or None, got {limit!r}")
        self.plan = plan
        self.indices: list[np.ndarray | None] = []
        for cell in plan.cells:
            n = len(cell.images)
            if n == 0:
                raise ValueError(f"{plan.dataset} cell {cell.corruption}/{cell.severity} has no images")
            keep = None if limit is None or limit >= n else np.sort(np.random.default_rng(seed).permutation(n)[:limit])
            self.indices.append(keep)  # None: the whole cell (no 50k-entry index array per cell)
        self.offsets = np.concatenate([[0], np.cumsum([self._size(i) for i in range(len(plan.cells))])])

    def __len__(self) -> int:
        return int(self.offsets[-1])

    def _size(self, cell: int) -> int:
        keep = self.indices[cell]
        return len(self.plan.cells[cell].images) if keep is None else len(keep)

    def cell_size(self, cell: int) -> int:
        return int(self.offsets[cell + 1] - self.offsets[cell])

    def __getitem__(self, k: int) -> tuple[torch.Tensor, int, int]:
        cell = int(np.searchsorted(self.offsets, k, side="right") - 1)
        i, keep = int(k - self.offsets[cell]), self.indices[cell]
        image, label = self.plan.cells[cell].images[i if keep is None else int(keep[i])]
        return image, label, cell


class ShardSampler(Sampler[int]):
    """Indices ``rank, rank + world_size, ...`` of ``range(n)``: an exact partition, shards differ by at most one."""

    def __init__(self, n: int, rank: int = 0, world_size: int = 1) -> None:
        if not 0 <= rank < world_size:
            raise ValueError(f"rank {rank} outside world size {world_size}")
        self.n, self.rank, self.world_size = n, rank, world_size

    def __iter__(self) -> Iterator[int]:
        return iter(range(self.rank, self.n, self.world_size))

    def __len__(self) -> int:
        return len(range(self.rank, self.n, self.world_size))


def _device_of(model: Callable[..., torch.Tensor], device: str | torch.device | None) -> torch.device:
    if device is not None:
        return torch.device(device)
    if isinstance(model, nn.Module):
        for t in (*model.parameters(), *model.buffers()):
            return t.device
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def _forward(model: Callable[..., torch.Tensor], x: torch.Tensor, amp: bool, device: torch.device) -> torch.Tensor:
    with torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp):
        out = model(x)
    if not isinstance(out, torch.Tensor):
        raise TypeError(f"the model must return a logits Tensor, got {type(out).__name__} (wrap models that return "
                        "tuples or output objects)")
    if out.ndim != 2 or out.shape[0] != x.shape[0]:
        raise ValueError(f"the model must return logits of shape (batch, classes); got {tuple(out.shape)} for a "
                         f"batch of {x.shape[0]}")
    return out


def _check_label_space(plan: EvalPlan, model: Callable[..., torch.Tensor], amp: bool, device: torch.device) -> None:
    image, _ = plan.cells[0].images[0]
    logits = _forward(model, image.unsqueeze(0).to(device).float().div_(255), amp, device)
    n = logits.shape[1]
    if n != plan.num_classes:
        what = {10: "CIFAR-10", 1000: "ImageNet-1k"}.get(n, f"{n}-class")
        raise ValueError(f"label-space mismatch: the model outputs {n} classes (a {what} model?) but {plan.dataset} "
                         f"labels index {plan.num_classes} classes")


def evaluate(
    model: Callable[[torch.Tensor], torch.Tensor],
    dataset: str | ArrayDataset | EvalImages = "cifar10-c",
    data_root: str | os.PathLike | None = None,
    corruptions: str | Sequence[str] | None = None,
    severities: int | Sequence[int] = (1, 2, 3, 4, 5),
    *,
    clean: bool = True,
    batch_size: int = 128,
    num_workers: int = 4,
    amp: bool = False,
    limit: int | None = None,
    on_the_fly: bool | None = None,
    seed: int = 0,
    profile: str = "auto",
    jpeg_quality: int | None = None,
    allow_missing: bool = False,
    device: str | torch.device | None = None,
    train_corruptions: str | Sequence[str] | None = None,
    model_info: dict[str, Any] | None = None,
    progress: bool = True,
) -> EvalResults:
    """Evaluate a classifier on clean and corrupted images; returns exact counts and the derived metrics.

    Works on any callable mapping float images in [0, 1], shape (B, 3, H, W), to logits (B, C): a vqsa model, or a
    torchvision/timm model wrapped with :func:`vqsa.eval.with_normalization`. An ``nn.Module`` is put in eval mode for
    the run (and restored after). Under ``torchrun`` each rank evaluates its shard and the counts are summed exactly.

    Args:
        model: the classifier.
        dataset: ``cifar10``, ``cifar10-c``, ``imagenet``, ``imagenet-c``, ``imagenet-r``, ``imagenet-a``, or a
            :class:`vqsa.data.ArrayDataset` of uint8 images (corrupted on the fly), or an ``EvalImages``.
        data_root: data folder (``$VQSA_DATA`` when None); not needed for in-memory datasets.
        corruptions: names or groups (``common``, ``validation``, ``all``...); default all 19 for ``-c`` datasets.
        severities: severities to evaluate (1..5).
        clean: also evaluate the clean images (needed for clean error and relative mCE).
        batch_size / num_workers: DataLoader settings; corruption runs in the workers.
        amp: bfloat16 autocast.
        limit: evaluate the same seeded random subset of this many images in every cell (RobustBench's
            ``n_examples``); metrics on a subset are estimates.
        on_the_fly / seed / profile / jpeg_quality: see :func:`vqsa.eval.datasets.build_plan`.
        allow_missing: skip missing released cells (recorded in ``results.skipped``) instead of raising.
        device: where the model runs (an ``nn.Module`` is moved there); default: the model's device.
        train_corruptions: corruptions the model was trained on; overlap with the evaluated ones warns and is recorded.
        model_info: description recorded in the results (name, checkpoint, config...).
        progress: tqdm progress bar on rank 0.

    Example:
        >>> res = vqsa.evaluate(model, "cifar10-c", data_root="data", corruptions="common", limit=1000)
        >>> res.mean_error, res.clean_error; res.save("runs/eval")
    """
    if not callable(model):
        raise TypeError(f"model must be callable (an nn.Module or a function), got {type(model).__name__}")
    if isinstance(model, nn.parallel.DistributedDataParallel):
        model = model.module  # DDP's forward may broadcast buffers: a collective that uneven shards would deadlock
    if not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
    plan = build_plan(dataset, data_root, corruptions, severities, clean=clean, on_the_fly=on_the_fly, seed=seed,
                      profile=profile, jpeg_quality=jpeg_quality, allow_missing=allow_missing)
    train = resolve_corruptions(train_corruptions) if train_corruptions is not None else None
    evaluated = [c.corruption for c in plan.cells if c.corruption != CLEAN]
    overlap = [c for c in dict.fromkeys(evaluated) if train and c in train]
    if overlap:
        warnings.warn(f"the model was trained on {len(overlap)} of the evaluated corruptions ({', '.join(overlap)}): "
                      "their results measure robustness to seen corruptions, not generalisation", stacklevel=2)
    dev = _device_of(model, device)
    if isinstance(model, nn.Module) and device is not None:
        model.to(dev)
    was_training = isinstance(model, nn.Module) and model.training
    if isinstance(model, nn.Module):
        model.eval()
    try:
        with torch.inference_mode():
            correct, total = _run(plan, model, dev, batch_size, num_workers, amp, limit, seed, progress)
    finally:
        if was_training:
            model.train()
    counts = [CellCount(c.corruption, c.severity, int(k), int(n)) for c, k, n in zip(plan.cells, correct, total)]
    info = dict(model_info or {})
    if isinstance(model, nn.Module):
        info.setdefault("name", getattr(model, "model_config", {}).get("name") or type(model).__name__)
        info.setdefault("num_params", sum(p.numel() for p in model.parameters()))
    return EvalResults(
        dataset=plan.dataset, source=plan.source, baseline=plan.baseline,
        clean=next((c for c in counts if c.corruption == CLEAN), None),
        cells=[c for c in counts if c.corruption != CLEAN], skipped=plan.skipped, model=info,
        data={**plan.data, "limit": limit,
              "class_subset": None if plan.class_subset is None else len(plan.class_subset)},
        train_corruptions=train, notes=plan.notes,
        meta={"versions": versions(), "git_sha": git_sha(), "machine": machine(),
              "world_size": dist.get_world_size(), "batch_size": batch_size, "amp": amp, "device": str(dev),
              "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")},
    )


def _run(plan: EvalPlan, model: Callable[..., torch.Tensor], device: torch.device, batch_size: int, num_workers: int,
         amp: bool, limit: int | None, seed: int, progress: bool) -> tuple[list[int], list[int]]:
    stream = CellStream(plan, limit, seed)
    _check_label_space(plan, model, amp, device)
    sampler = ShardSampler(len(stream), dist.get_rank(), dist.get_world_size())
    loader = DataLoader(stream, batch_size=batch_size, sampler=sampler, num_workers=num_workers,
                        pin_memory=device.type == "cuda", persistent_workers=False)
    n_cells = len(plan.cells)
    counts = torch.zeros(2, n_cells, dtype=torch.int64, device=device)  # row 0 correct, row 1 total
    subset = plan.class_subset.to(device) if plan.class_subset is not None else None
    from tqdm.auto import tqdm

    bar = tqdm(total=len(stream), desc=f"eval {plan.dataset}", unit="img", dynamic_ncols=True,
               disable=not progress or not dist.is_main_process())
    with bar:
        for images, labels, cells in loader:
            x = images.to(device, non_blocking=True).float().div_(255)
            labels, cells = labels.to(device, non_blocking=True), cells.to(device, non_blocking=True)
            ok = top1_correct(_forward(model, x, amp, device), labels, subset)
            counts[0].index_add_(0, cells, ok.long())
            counts[1].index_add_(0, cells, torch.ones_like(cells))
            bar.update(len(labels) * dist.get_world_size())
    dist.all_reduce_sum(counts)
    correct, total = counts.cpu().tolist()
    expected = [stream.cell_size(i) for i in range(n_cells)]
    if total != expected:
        raise RuntimeError(f"evaluated counts {total} differ from the cell sizes {expected}")
    return correct, total
