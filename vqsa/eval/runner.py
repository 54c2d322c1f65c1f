"""Streaming evaluation: one DataLoader over all cells, exact correct/total counts per cell, reduced over ranks.

Every cell (clean, then corruption x severity) is concatenated into one index space; each rank takes the indices
``rank, rank + world, ...`` (no padding, so nothing is counted twice, unlike ``DistributedSampler``), counts correct
predictions per cell, and one ``all_reduce`` sums the counts. Images travel as uint8 and are scaled to [0, 1] on the
device: the model contract is inputs in [0, 1] with normalisation inside the model.
"""
from __future__ import annotations

import datetime
import hashlib
import logging
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
from vqsa.data.mixed import BadImageError
from vqsa.data.sampling import seeded_subset
from vqsa.metrics import top1_correct
from vqsa.utils import distributed as dist
from vqsa.utils.meta import git_sha, machine, versions

from .datasets import EvalPlan, build_plan, resolve_corruptions
from .progress import Progress, fingerprint, load_progress, model_digest, progress_path
from .results import CLEAN, CellCount, EvalResults

logger = logging.getLogger(__name__)

# what EvalImages.identity_digests hashes, by kind of reference set
_IDENTITY = {"ArrayImages": "pixels and label of each image",
             "FolderImages": "class folder / file name without suffix, and label, of each image"}


class CellStream(Dataset):
    """All cells of a plan as one dataset of ``(uint8 CHW image, label, cell id)``; with ``limit`` each cell keeps
    the same seeded random subset of ``limit`` items (paired across cells of equal size).

    ``positions`` (items of every cell of ``len(positions_of)`` images, e.g. from :func:`select_examples`) overrides
    the per-cell draw for those cells; a cell of another size then keeps its own ``limit`` draw, or raises when
    ``strict`` (explicitly requested examples must exist in every cell).
    """

    def __init__(self, plan: EvalPlan, limit: int | None = None, seed: int = 0, positions: np.ndarray | None = None,
                 positions_of: int | None = None, strict: bool = False) -> None:
        _check_limit(limit)
        self.plan = plan
        self.indices: list[np.ndarray | None] = []
        for cell in plan.cells:
            n = len(cell.images)
            if n == 0:
                raise ValueError(f"{plan.dataset} cell {cell.corruption}/{cell.severity} has no images")
            if positions is not None and n == positions_of:
                keep = positions
            elif positions is not None and strict:
                raise ValueError(f"{plan.dataset} cell {cell.corruption}/{cell.severity} holds {n} images, not the "
                                 f"{positions_of} the requested example indices refer to")
            else:
                keep = seeded_subset(n, limit, seed)
            self.indices.append(keep)  # None: the whole cell (no 50k-entry index array per cell)
        self.offsets = np.concatenate([[0], np.cumsum([self._size(i) for i in range(len(plan.cells))])])

    def __len__(self) -> int:
        return int(self.offsets[-1])

    def _size(self, cell: int) -> int:
        keep = self.indices[cell]
        return len(self.plan.cells[cell].images) if keep is None else len(keep)

    def cell_size(self, cell: int) -> int:
        return int(self.offsets[cell + 1] - self.offsets[cell])

    def __getitem__(self, k: int) -> tuple[torch.Tensor | None, int, int, str | None]:
        """``(uint8 CHW image, label, cell, None)``, or ``(None, -1, cell, problem)`` for an unreadable image."""
        cell = int(np.searchsorted(self.offsets, k, side="right") - 1)
        i, keep = int(k - self.offsets[cell]), self.indices[cell]
        try:
            image, label = self.plan.cells[cell].images[i if keep is None else int(keep[i])]
        except BadImageError as e:
            return None, -1, cell, str(e)
        return image, label, cell, None


def collate_cells(items: list[tuple[torch.Tensor | None, int, int, str | None]]) -> dict[str, Any]:
    """A batch of :class:`CellStream` items: the readable images stacked, and the unreadable ones as (cell, problem)."""
    good = [it for it in items if it[3] is None]
    return {"images": torch.stack([it[0] for it in good]) if good else None,
            "labels": torch.tensor([it[1] for it in good], dtype=torch.int64),
            "cells": torch.tensor([it[2] for it in good], dtype=torch.int64),
            "bad": [(it[2], it[3]) for it in items if it[3] is not None]}


def _check_limit(limit: object) -> None:
    if limit is not None and (not isinstance(limit, int) or isinstance(limit, bool) or limit < 1):
        raise ValueError(f"limit must be a positive integer or None, got {limit!r}")


def _reference_size(plan: EvalPlan) -> int | None:
    if plan.reference is not None:
        return len(plan.reference)
    return None if plan.reference_ids is None else len(plan.reference_ids)


def _seed_for(seed: int | None, indices: object) -> int:
    """``seed``, or the one recorded by the evaluation whose examples are repeated (else 0); a warning when an
    explicit seed differs from it for on-the-fly corruptions (other noise draws, other numbers)."""
    recorded = indices.data.get("seed") if isinstance(indices, EvalResults) else None
    if seed is None:
        return 0 if recorded is None else int(recorded)
    if recorded is not None and int(recorded) != seed and indices.data.get("on_the_fly"):
        warnings.warn(f"seed {seed} differs from the seed {recorded} of {indices.label()}: its on-the-fly "
                      "corruptions are drawn anew, so the numbers will differ (omit the seed to reuse it)",
                      stacklevel=3)
    return seed


def select_examples(
    plan: EvalPlan, limit: int | None = None, seed: int = 0,
    indices: Sequence[int] | np.ndarray | EvalResults | str | os.PathLike | None = None,
) -> tuple[np.ndarray | None, dict[str, Any], list[str]]:
    """Which items of the reference-sized cells to evaluate: ``(positions or None for all, the examples record
    written to results.json as data.examples, warnings)``.

    ``indices`` are indices in the plan's index space (the clean set; for a CIFAR-10-C written with ``vqsa corrupt
    --limit``, the CIFAR-10 test split), or an :class:`EvalResults` / results.json whose examples to evaluate again
    (their fingerprint must match). ``limit`` then keeps a seeded random subset of them.
    """
    n_ref = _reference_size(plan)
    ids = plan.reference_ids
    messages: list[str] = []
    expected, origin, origin_space, pos = None, None, None, None
    if isinstance(indices, (str, os.PathLike)):
        indices = EvalResults.from_json(indices)
    if isinstance(indices, EvalResults):
        recorded = indices.examples
        origin = f"the {recorded.get('n') if recorded else '?'} examples of {indices.label()} ({indices.dataset})"
        if not recorded:
            raise ValueError(f"{indices.label()}: its results record no example indices (written by an older vqsa); "
                             "cannot evaluate the same examples again")
        expected, wanted = recorded.get("sha256"), recorded.get("indices")
        origin_space = f"{recorded.get('of')} ({recorded.get('of_size')} images)"
        if wanted is None:  # all items of its index space
            if recorded.get("of_size") != plan.index_space_size:
                raise ValueError(f"{origin} are all {recorded.get('of_size')} images of {recorded.get('of')}, but "
                                 f"this evaluation indexes {plan.index_space_size} images ({plan.index_space})")
            wanted = None if ids is None else ids
        indices = wanted
        if indices is None:
            pos = None
    if indices is not None:
        if n_ref is None:
            raise ValueError(f"cannot select {plan.dataset} examples by index: there is no clean set to index "
                             "(evaluate with the clean set present)")
        req = np.asarray(indices, dtype=np.int64).reshape(-1)
        if len(req) == 0:
            raise ValueError("no example indices given")
        if len(np.unique(req)) != len(req):
            raise ValueError("the example indices contain duplicates")
        if ids is not None:
            lookup = {int(v): i for i, v in enumerate(ids)}
            missing = [int(v) for v in req if int(v) not in lookup]
            if missing:
                raise ValueError(f"{len(missing)} of the {len(req)} requested example indices (e.g. "
                                 f"{', '.join(map(str, missing[:5]))}) are not among the {n_ref} images of "
                                 f"{plan.dataset} ({plan.data.get('clean') or plan.index_space})")
            pos = np.sort(np.array([lookup[int(v)] for v in req], dtype=np.int64))
        else:
            if req.min() < 0 or req.max() >= n_ref:
                raise ValueError(f"example indices must be in 0..{n_ref - 1} ({plan.index_space}), got "
                                 f"{int(req.min())}..{int(req.max())}")
            pos = np.sort(req)
    if limit is not None:
        pool = len(pos) if pos is not None else n_ref
        small = sorted({len(c.images) for c in plan.cells if len(c.images) < limit and len(c.images) != n_ref})
        if pool is not None and pool < limit:
            what = f"the {pool} selected examples" if pos is not None else f"the {pool} images of {plan.dataset}"
        elif small:
            what = f"the {', '.join(map(str, small))} images of some {plan.dataset} cells"
        if (pool is not None and pool < limit) or small:
            messages.append(f"limit {limit} is larger than {what}: evaluating all of them, not {limit} "
                            "(n_examples in the results says how many)")
        if pool is not None and limit < pool:
            draw = seeded_subset(pool, limit, seed)
            pos = draw if pos is None else pos[draw]
    record: dict[str, Any] = {"n": None, "indices": None, "of": plan.index_space, "of_size": plan.index_space_size,
                              "sha256": None, "identity": None}
    if n_ref is not None:
        record["n"] = n_ref if pos is None else len(pos)
        if pos is not None:
            record["indices"] = (ids[pos] if ids is not None else pos).tolist()
        elif ids is not None:
            record["indices"] = ids.tolist()
        digests = plan.reference.identity_digests(pos) if plan.reference is not None else None
        if digests is not None:
            record["sha256"] = hashlib.sha256(b"".join(sorted(digests))).hexdigest()
            kind = type(getattr(plan.reference, "base", plan.reference)).__name__
            record["identity"] = "sha256 of the sorted sha256 digests of the " + _IDENTITY.get(kind, kind)
    if expected and record["sha256"] and expected != record["sha256"]:
        raise ValueError(f"{origin} are not the images selected here (example fingerprints {expected[:12]} there vs "
                         f"{record['sha256'][:12]} here): its indices index {origin_space}, this evaluation indexes "
                         f"{plan.index_space} ({plan.index_space_size} images)")
    if origin and not (expected and record["sha256"]):
        messages.append(f"cannot check that {origin} are the ones evaluated here: "
                        + ("this set" if expected else "the results") + " record(s) no example fingerprint")
    if origin:
        record["from"] = origin
    return pos, record, messages


class ShardSampler(Sampler[int]):
    """Indices ``rank, rank + world_size, ...`` of ``range(n)``: an exact partition, shards differ by at most one;
    ``start`` skips the first items of the shard (a resumed evaluation)."""

    def __init__(self, n: int, rank: int = 0, world_size: int = 1, start: int = 0) -> None:
        if not 0 <= rank < world_size:
            raise ValueError(f"rank {rank} outside world size {world_size}")
        self.n, self.rank, self.world_size, self.start = n, rank, world_size, start

    def __iter__(self) -> Iterator[int]:
        return iter(range(self.rank, self.n, self.world_size)[self.start:])

    def __len__(self) -> int:
        return len(range(self.rank, self.n, self.world_size)[self.start:])


def check_device(device: str | torch.device) -> torch.device:
    """``torch.device(device)``, or a clear ValueError when it names CUDA on a machine without it."""
    dev = torch.device(device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {str(device)!r} was asked for but CUDA is not available on this machine (torch "
                         f"{torch.__version__}, CUDA build {torch.version.cuda or 'none'}); use --device cpu")
    if dev.type == "cuda" and dev.index is not None and dev.index >= torch.cuda.device_count():
        raise ValueError(f"device {str(device)!r} was asked for but this machine has {torch.cuda.device_count()} "
                         "CUDA device(s)")
    return dev


def _device_of(model: Callable[..., torch.Tensor], device: str | torch.device | None) -> torch.device:
    if device is not None:
        return check_device(device)
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
    if not bool(torch.isfinite(out).all()):  # Python shows a warning once per call site
        warnings.warn("the model returned NaN or Inf logits: its errors count those images as misclassified (are "
                      "its weights finite? a diverged run, a damaged file)", UserWarning, stacklevel=3)
    return out


def _first_readable(plan: EvalPlan) -> torch.Tensor | None:
    for cell in plan.cells:
        for i in range(len(cell.images)):
            try:
                return cell.images[i][0]
            except BadImageError:
                continue
    return None


def _check_label_space(plan: EvalPlan, model: Callable[..., torch.Tensor], amp: bool, device: torch.device) -> None:
    image = _first_readable(plan)
    if image is None:
        return  # no readable image at all: the count check says so
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
    indices: Sequence[int] | np.ndarray | EvalResults | str | os.PathLike | None = None,
    on_the_fly: bool | None = None,
    seed: int | None = None,
    profile: str = "auto",
    jpeg_quality: int | None = None,
    allow_missing: bool = False,
    device: str | torch.device | None = None,
    train_corruptions: str | Sequence[str] | None = None,
    model_info: dict[str, Any] | None = None,
    progress: bool = True,
    skip_bad: bool = False,
    checkpoint_dir: str | os.PathLike | None = None,
    resume: bool = False,
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
            ``n_examples``); metrics on a subset are estimates. A limit larger than the set warns and evaluates all.
        indices: evaluate only these examples: indices into the clean set (for a CIFAR-10-C written with
            ``vqsa corrupt --limit``, CIFAR-10 test indices, as its manifest records them), or an ``EvalResults`` /
            results.json path whose examples to evaluate again (``vqsa evaluate --indices-from``; their fingerprint
            is checked). With ``limit`` too, a seeded random subset of them. The evaluated examples are recorded in
            ``results.data["examples"]`` (indices and a fingerprint of the example set).
        on_the_fly / seed / profile / jpeg_quality: see :func:`vqsa.eval.datasets.build_plan`. ``seed`` None is the
            seed recorded in ``indices``' results when they come from an evaluation, else 0, so that evaluating the
            same examples again also draws the same on-the-fly corruptions.
        allow_missing: skip missing released cells (recorded in ``results.skipped``) instead of raising.
        device: where the model runs (an ``nn.Module`` is moved there); default: the model's device.
        train_corruptions: corruptions the model was trained on; overlap with the evaluated ones warns and is recorded.
        model_info: description recorded in the results (``label``: the run name used in tables; ``name``,
            ``architecture``, checkpoint, config...).
        progress: tqdm progress bar on rank 0.
        skip_bad: exclude images that cannot be decoded, counted per cell and listed in ``results.data["excluded"]``
            (metrics are over the readable images); without it the first one stops the evaluation with an error
            naming the file.
        checkpoint_dir: save each rank's counts there after every finished cell (``eval_progress.rank*.json``);
            remove them with :func:`vqsa.eval.progress.clear_progress` once the results are saved.
        resume: continue from the progress in ``checkpoint_dir`` (it must come from the same model weights, cells,
            examples, seed, batch size, precision and world size); the final counts equal an uninterrupted run's.

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
    if isinstance(indices, (str, os.PathLike)):
        indices = EvalResults.from_json(indices)
    seed = _seed_for(seed, indices)
    plan = build_plan(dataset, data_root, corruptions, severities, clean=clean, on_the_fly=on_the_fly, seed=seed,
                      profile=profile, jpeg_quality=jpeg_quality, allow_missing=allow_missing)
    train = resolve_corruptions(train_corruptions) if train_corruptions is not None else None
    evaluated = [c.corruption for c in plan.cells if c.corruption != CLEAN]
    overlap = [c for c in dict.fromkeys(evaluated) if train and c in train]
    if overlap:
        warnings.warn(f"the model was trained on {len(overlap)} of the evaluated corruptions ({', '.join(overlap)}): "
                      "their results measure robustness to seen corruptions, not generalisation", stacklevel=2)
    _check_limit(limit)
    strict = indices is not None
    positions, examples, messages = select_examples(plan, limit, seed, indices)
    if plan.unpaired and positions is not None:
        messages.append(plan.unpaired)  # already a note; a warning only when a subset makes it matter
        examples["sha256"] = None  # the corrupted rows at these positions are other images than the clean ones
    notes = list(plan.notes)
    for message in messages:
        warnings.warn(message, stacklevel=2)
        if message not in notes:
            notes.append(message)
    dev = _device_of(model, device)
    if isinstance(model, nn.Module) and device is not None:
        model.to(dev)
    was_training = isinstance(model, nn.Module) and model.training
    if isinstance(model, nn.Module):
        model.eval()
    if resume and checkpoint_dir is None:
        raise ValueError("resume=True needs the checkpoint_dir holding the evaluation's progress")
    try:
        with torch.inference_mode():
            stream = CellStream(plan, limit, seed, positions, _reference_size(plan), strict)
            key = None
            if checkpoint_dir is not None:
                digest = model_digest(model)
                if resume and digest is None:
                    raise ValueError("resume=True needs an nn.Module model: the saved progress is matched to its "
                                     "weights")
                key = fingerprint({  # what decides the counts, and no path (a data root may be a temporary link)
                    "dataset": plan.dataset, "on_the_fly": plan.data.get("on_the_fly"),
                    "profile": plan.data.get("profile"), "examples": _examples_key(examples),
                    "cells": [(c.corruption, c.severity, stream.cell_size(i)) for i, c in enumerate(plan.cells)],
                    "limit": limit, "seed": seed, "batch_size": batch_size, "amp": amp, "device": dev.type,
                    "world": dist.get_world_size(), "model": digest})
            prog = _run(plan, stream, model, dev, batch_size, num_workers, amp, progress, skip_bad,
                        checkpoint_dir, key, resume)
    finally:
        if was_training:
            model.train()
    counts = [CellCount(c.corruption, c.severity, int(k), int(n))
              for c, k, n in zip(plan.cells, prog.correct, prog.total)]
    excluded = {f"{c.corruption}/{c.severity}": int(x) for c, x in zip(plan.cells, prog.excluded) if x}
    if excluded:
        notes.append(f"{sum(excluded.values())} unreadable image(s) excluded (skip_bad): the metrics are over the "
                     "readable images of each cell; data.excluded lists them")
    info = dict(model_info or {})
    if isinstance(model, nn.Module):
        arch = getattr(model, "model_config", {}).get("name") or type(model).__name__
        info.setdefault("name", arch)
        info.setdefault("architecture", arch)
        info.setdefault("num_params", sum(p.numel() for p in model.parameters()))
    return EvalResults(
        dataset=plan.dataset, source=plan.source, baseline=plan.baseline,
        clean=next((c for c in counts if c.corruption == CLEAN), None),
        cells=[c for c in counts if c.corruption != CLEAN], skipped=plan.skipped, model=info,
        data={**plan.data, "limit": limit,
              "class_subset": None if plan.class_subset is None else len(plan.class_subset), "examples": examples,
              "excluded": {"images": sum(excluded.values()), "per_cell": excluded, "files": prog.bad_files}},
        train_corruptions=train, notes=notes,
        meta={"versions": versions(), "git_sha": git_sha(), "machine": machine(),
              "world_size": dist.get_world_size(), "batch_size": batch_size, "amp": amp, "device": str(dev),
              "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")},
    )


def _run(plan: EvalPlan, stream: CellStream, model: Callable[..., torch.Tensor], device: torch.device,
         batch_size: int, num_workers: int, amp: bool, progress: bool, skip_bad: bool = False,
         checkpoint_dir: str | os.PathLike | None = None, key: str | None = None, resume: bool = False) -> Progress:
    """Count this rank's shard (from the saved position when resuming), save the counts after every finished cell,
    and sum them over ranks."""
    _check_label_space(plan, model, amp, device)
    rank, world, n_cells = dist.get_rank(), dist.get_world_size(), len(plan.cells)
    path = progress_path(checkpoint_dir, rank, world) if checkpoint_dir is not None else None
    prog = load_progress(path, key, n_cells) if resume and path is not None else None
    if prog is not None and any(prog.excluded) and not skip_bad:
        raise ValueError(f"{path}: the saved progress excluded {sum(prog.excluded)} unreadable image(s) "
                         "(--skip-bad); resume with --skip-bad, or start again without --resume")
    prog = prog or Progress(key or "", n_cells)
    sampler = ShardSampler(len(stream), rank, world, start=prog.position)
    loader = DataLoader(stream, batch_size=batch_size, sampler=sampler, num_workers=num_workers,
                        collate_fn=collate_cells, pin_memory=device.type == "cuda", persistent_workers=False)
    counts = torch.zeros(3, n_cells, dtype=torch.int64, device=device)  # rows: correct, total, excluded
    subset = plan.class_subset.to(device) if plan.class_subset is not None else None
    from tqdm.auto import tqdm

    bar = tqdm(total=len(stream), initial=prog.position * world, desc=f"eval {plan.dataset}", unit="img",
               dynamic_ncols=True, disable=not progress or not dist.is_main_process())
    shard = len(range(rank, len(stream), world))
    with bar:
        for batch in loader:
            first_cell = stream_cell(stream, sampler, prog.position)
            for cell, problem in batch["bad"]:
                if not skip_bad:
                    raise BadImageError(f"{problem} (pass --skip-bad, or skip_bad=True, to exclude unreadable images "
                                        "and count them)")
                logger.warning(f"skipped: {problem}")
                counts[2, cell] += 1
                prog.bad_files.append(problem)
            if batch["images"] is not None:
                x = batch["images"].to(device, non_blocking=True).float().div_(255)
                labels = batch["labels"].to(device, non_blocking=True)
                cells = batch["cells"].to(device, non_blocking=True)
                ok = top1_correct(_forward(model, x, amp, device), labels, subset)
                counts[0].index_add_(0, cells, ok.long())
                counts[1].index_add_(0, cells, torch.ones_like(cells))
            n = len(batch["labels"]) + len(batch["bad"])
            prog.position += n
            bar.update(n * world)
            if path is not None and prog.position < shard and stream_cell(stream, sampler, prog.position) != first_cell:
                _merge(prog, counts).save(path)  # a cell finished in this batch
                counts.zero_()
    _merge(prog, counts)
    if path is not None:
        prog.save(path)  # complete: a resume returns these counts at once; clear_progress removes the file
    totals = torch.tensor([prog.correct, prog.total, prog.excluded], dtype=torch.int64, device=device)
    dist.all_reduce_sum(totals)
    prog.correct, prog.total, prog.excluded = totals.cpu().tolist()
    if world > 1:
        prog.bad_files = [f for files in dist.all_gather_object(prog.bad_files) for f in files]
    expected = [stream.cell_size(i) for i in range(n_cells)]
    if [t + x for t, x in zip(prog.total, prog.excluded)] != expected:
        raise RuntimeError(f"evaluated counts {prog.total} (+ {prog.excluded} excluded) differ from the cell sizes "
                           f"{expected}")
    empty = [f"{c.corruption}/{c.severity}" for c, t in zip(plan.cells, prog.total) if t == 0]
    if empty:
        raise ValueError(f"{plan.dataset}: no readable image in cell(s) {', '.join(empty)}")
    return prog


def _examples_key(examples: dict[str, Any]) -> dict[str, Any]:
    """The path-free identity of an example selection: its size, fingerprint and a hash of its indices."""
    indices = examples.get("indices")
    return {"n": examples.get("n"), "of_size": examples.get("of_size"), "sha256": examples.get("sha256"),
            "indices": None if indices is None else hashlib.sha256(str(list(indices)).encode()).hexdigest()}


def stream_cell(stream: CellStream, sampler: ShardSampler, position: int) -> int:
    """The cell of the ``position``-th item of the rank's shard."""
    k = sampler.rank + position * sampler.world_size
    return int(np.searchsorted(stream.offsets, k, side="right") - 1)


def _merge(prog: Progress, counts: torch.Tensor) -> Progress:
    """Add the counts gathered since the last save to ``prog``."""
    correct, total, excluded = counts.cpu().tolist()
    prog.correct = [a + b for a, b in zip(prog.correct, correct)]
    prog.total = [a + b for a, b in zip(prog.total, total)]
    prog.excluded = [a + b for a, b in zip(prog.excluded, excluded)]
    return prog
