"""Which images an evaluation runs on: the clean set plus one cell per (corruption, severity), from released files
or generated on the fly, with the label space and the class subset they are scored in."""
from __future__ import annotations

import os
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from vqsa import metrics
from vqsa.corruptions import check_severities
from vqsa.corruptions import resolve_corruptions as _resolve_corruption_names
from vqsa.corruptions.writers import MANIFEST_NAME, read_manifest
from vqsa.data.cifar import CIFAR10_CLASSES, ArrayDataset, find_cifar10, load_cifar10
from vqsa.data.corrupted import ArrayImages, CorruptedImages, EvalImages, FolderImages, cifar10_c, imagenet_c, load_npy
from vqsa.data.imagenet_subsets import subset_indices, subset_wnids, wnid_to_index
from vqsa.data.paths import resolve_data_root
from vqsa.utils import distributed as dist

from .results import summarize_cells

DATASETS = ("cifar10", "cifar10-c", "imagenet", "imagenet-c", "imagenet-r", "imagenet-a")
_DIR_NAMES = {
    "cifar10-c": ("CIFAR-10-C", "cifar10-c", "cifar10_c", "CIFAR10-C"),
    "imagenet-c": ("imagenet-c", "ImageNet-C", "imagenet_c"),
    "imagenet-r": ("imagenet-r", "ImageNet-R", "imagenet_r"),
    "imagenet-a": ("imagenet-a", "ImageNet-A", "imagenet_a"),
}


@dataclass
class Cell:
    """One evaluated cell: ``corruption == "clean"`` and ``severity == 0`` for the clean images."""

    corruption: str
    severity: int
    images: EvalImages


@dataclass
class EvalPlan:
    """Everything the runner iterates over, and how to describe it in the results."""

    dataset: str
    source: str
    baseline: str | None
    num_classes: int
    cells: list[Cell]
    class_subset: torch.Tensor | None = None
    skipped: list[dict[str, Any]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    data: dict[str, Any] = field(default_factory=dict)
    # which examples the cells hold: ``reference`` names them (the clean set, evaluated or not; None when unknown),
    # ``reference_ids[i]`` is the index of reference item i in ``index_space`` (None: i itself), e.g. the CIFAR-10
    # test indices of a CIFAR-10-C written with ``vqsa corrupt --limit``
    reference: EvalImages | None = None
    reference_ids: np.ndarray | None = None
    index_space: str | None = None
    index_space_size: int | None = None
    # set when item i of the clean cell is not the image of row i of the corrupted cells (same set, another order):
    # harmless for full cells, a warning when a subset is evaluated
    unpaired: str | None = None


def resolve_corruptions(spec: str | Sequence[str] | None, default: Sequence[str] = ()) -> list[str]:
    """:func:`vqsa.corruptions.resolve_corruptions` as a list, with None giving ``default``."""
    return list(default) if spec is None else list(_resolve_corruption_names(spec))


def resolve_severities(severities: int | Sequence[int]) -> list[int]:
    """Sorted severities, checked by :func:`vqsa.corruptions.check_severities`."""
    return sorted(check_severities(severities))


def _find_dir(root: Path, names: Sequence[str], ok) -> Path | None:
    for cand in (*(root / n for n in names), root):
        if cand.is_dir() and ok(cand):
            return cand
    return None


def _has_wnid_dirs(path: Path) -> bool:
    index = wnid_to_index()
    with os.scandir(path) as entries:  # closed even when any() stops early
        return any(e.name in index and e.is_dir() for e in entries)


def _imagenet_val(root: Path) -> FolderImages | None:
    path = _find_dir(root, ("imagenet/val", "ImageNet/val", "val", "imagenet"), _has_wnid_dirs)
    return FolderImages(path, resize=256, crop=224, label_space="imagenet") if path else None


def _cifar10_test(root: Path) -> ArrayImages | None:
    try:
        find_cifar10(root)
    except FileNotFoundError:
        return None
    return _array_images(load_cifar10(root, "test"))


def _array_images(ds: ArrayDataset) -> ArrayImages:
    return ArrayImages(ds.images, ds.labels, len(ds.classes), ds.source)


def _array_name(ds: ArrayDataset) -> str:
    """How reports name an in-memory set: ``cifar10`` for CIFAR-10 images, else ``array``."""
    return "cifar10" if tuple(ds.classes) == CIFAR10_CLASSES else "array"


def build_plan(
    dataset: str | ArrayDataset | EvalImages,
    data_root: str | os.PathLike | None = None,
    corruptions: str | Sequence[str] | None = None,
    severities: int | Sequence[int] = (1, 2, 3, 4, 5),
    *,
    clean: bool = True,
    on_the_fly: bool | None = None,
    seed: int = 0,
    profile: str = "auto",
    jpeg_quality: int | None = None,
    allow_missing: bool = False,
) -> EvalPlan:
    """Resolve a dataset spec into cells.

    Args:
        dataset: a name in ``DATASETS``, a :class:`vqsa.data.ArrayDataset` (uint8 images, e.g. a CIFAR subset in
            memory) or any :class:`vqsa.data.corrupted.EvalImages`; the last two are corrupted on the fly.
        data_root: folder holding the data (``$VQSA_DATA`` when None); each benchmark is looked for in the root
            itself or in its usual sub-folder (``CIFAR-10-C``, ``imagenet-c``, ``imagenet/val``, ...).
        corruptions: names or groups; default all 19 for ``-c`` datasets, none for clean ones.
        on_the_fly: True generates corrupted images from the clean set; False requires released files; None uses the
            released files when found and falls back to on-the-fly generation with a warning.
        seed / profile / jpeg_quality: of on-the-fly corruption (``jpeg_quality=85``: the released files' JPEG step).
        allow_missing: skip (and record) missing or empty released cells instead of raising.

    Under a process group this is a collective for ImageNet-family names: rank 0 lists the folders and broadcasts the
    plan (or its error) to the other ranks, so a tree is scanned once however many ranks run.
    """
    sevs = resolve_severities(severities)
    if isinstance(dataset, (ArrayDataset, EvalImages)):
        base = _array_images(dataset) if isinstance(dataset, ArrayDataset) else dataset
        names = resolve_corruptions(corruptions)
        baseline = "alexnet" if base.num_classes == 1000 and names else None
        name = _array_name(dataset) if isinstance(dataset, ArrayDataset) else type(dataset).__name__
        return _otf_plan(name, base, names, sevs, clean, seed, profile, jpeg_quality, baseline, {"root": None})
    if not isinstance(dataset, str):
        raise TypeError(f"dataset must be a name, an ArrayDataset or an EvalImages, got {type(dataset).__name__}")
    if dataset not in DATASETS:
        raise ValueError(f"unknown dataset {dataset!r}; expected one of {', '.join(DATASETS)}")
    args = (dataset, data_root, corruptions, sevs, clean, on_the_fly, seed, profile, jpeg_quality, allow_missing)
    # CIFAR files have fixed names (nothing to list) and are memory-mapped: every rank opens its own (a broadcast
    # plan would pickle the arrays themselves)
    plan, messages = _named_plan(*args) if dataset.startswith("cifar") else dist.run_on_rank0(_named_plan, *args)
    for message in messages:
        warnings.warn(message, stacklevel=3)
    return plan


def _named_plan(dataset: str, data_root: str | os.PathLike | None, corruptions: str | Sequence[str] | None,
                sevs: list[int], clean: bool, on_the_fly: bool | None, seed: int, profile: str,
                jpeg_quality: int | None, allow_missing: bool) -> tuple[EvalPlan, list[str]]:
    """The plan of a dataset name, and the warnings to emit (on every rank, by the caller)."""
    root = resolve_data_root(data_root, required=True)
    assert root is not None
    info: dict[str, Any] = {"root": str(root)}
    names = resolve_corruptions(corruptions, metrics.CORRUPTION_NAMES if dataset.endswith("-c") else ())
    if dataset in ("cifar10", "cifar10-c"):
        released = _find_dir(root, _DIR_NAMES["cifar10-c"], lambda p: (p / "labels.npy").is_file())
        clean_set, baseline = _cifar10_test(root), None
        base_name = f"CIFAR-10 test ({clean_set.description})" if clean_set else "CIFAR-10 test (cifar10/test.npz)"
    elif dataset in ("imagenet", "imagenet-c"):
        released = _find_dir(root, _DIR_NAMES["imagenet-c"],
                             lambda p: any((p / c).is_dir() for c in metrics.CORRUPTION_NAMES))
        clean_set, baseline = _imagenet_val(root), "alexnet"
        base_name = f"ImageNet val ({clean_set.root})" if clean_set else "ImageNet val (imagenet/val/<wnid>/)"
    else:
        path = _find_dir(root, _DIR_NAMES[dataset], _has_wnid_dirs)
        if path is None:
            raise FileNotFoundError(f"no {dataset} under {str(root)!r}: expected <root>/{_DIR_NAMES[dataset][0]}/"
                                    "<wnid>/<images>")
        clean_set, baseline, base_name, released = _subset_folder(dataset, path), "alexnet", dataset, None
    if not dataset.endswith("-c") or on_the_fly or (on_the_fly is None and released is None):
        if clean_set is None:
            raise FileNotFoundError(f"no {base_name} under {str(root)!r}"
                                    + (f" and no released {dataset}" if dataset.endswith("-c") else ""))
        messages: list[str] = []
        if dataset.endswith("-c") and not on_the_fly and names:
            messages.append(f"no released {dataset} under {root}; corrupting {base_name} on the fly (seed {seed}, "
                            f"profile {profile})")
        plan = _otf_plan(dataset, clean_set, names, sevs, clean, seed, profile, jpeg_quality,
                         baseline if names else None, info)
        if dataset in ("imagenet-r", "imagenet-a"):
            plan.class_subset = subset_indices(dataset)
            plan.baseline = None
        return plan, messages
    if released is None:
        raise FileNotFoundError(f"no released {dataset} under {str(root)!r} (looked in the root and in "
                                f"{', '.join(_DIR_NAMES[dataset])}); pass --on-the-fly to generate it from {base_name}")
    full_clean, reference_ids = clean_set, None
    unpaired = None
    if dataset == "cifar10-c":
        clean_set, reference_ids, unpaired = _cifar10_c_clean(released, clean_set, clean)
    plan, more = _released_plan(dataset, released, clean_set if clean else None, names, sevs, baseline,
                                allow_missing, {**info, "released": str(released),
                                                "clean": clean_set.description if clean_set else None},
                                clean=clean)
    plan.reference = clean_set if clean_set is not None else plan.reference
    plan.reference_ids = reference_ids
    plan.unpaired = unpaired
    if plan.unpaired:
        plan.notes.append(plan.unpaired)
    if reference_ids is not None:  # indices into the full clean set (or the set the files were written from)
        source = (read_manifest(released) or {}).get("source")
        plan.index_space = full_clean.description if full_clean is not None else f"CIFAR-10 test ({source})"
        plan.index_space_size = len(full_clean) if full_clean is not None else None
    elif clean_set is not None:
        plan.index_space, plan.index_space_size = clean_set.description, len(clean_set)
    return plan, more


def _cifar10_c_clean(released: Path, clean_set: ArrayImages | None, clean: bool
                     ) -> tuple[ArrayImages | None, np.ndarray | None, str | None]:
    """The clean images the rows of a CIFAR-10-C folder were made from, their indices in the clean test set (None:
    all of it, in order) and, when the rows are the clean set in another order, why they are not paired.

    A folder written by ``vqsa corrupt --cifar10 --limit N`` holds N test images whose indices its manifest records:
    the clean set is cut down to them, so clean and corrupted cells hold the same images. A size or label mismatch
    that cannot be reconciled raises ValueError when the clean images are to be evaluated (``clean=True``); with
    ``clean=False`` it only leaves the examples unnamed.
    """
    labels = load_npy(released / "labels.npy")
    if labels.ndim != 1 or len(labels) % 5:
        raise ValueError(f"{released / 'labels.npy'}: expected 5 * n labels (severities 1..5), got {labels.shape}")
    n = len(labels) // 5
    path, manifest = released / MANIFEST_NAME, read_manifest(released)
    indices = manifest.get("indices") if manifest else None
    try:
        if indices is not None:
            idx = np.asarray(indices, dtype=np.int64)
            if idx.ndim != 1 or len(idx) != n or len(np.unique(idx)) != n:
                raise ValueError(f"{path} lists {len(idx)} test indices but the files in {released} hold {n} images "
                                 "per severity: the manifest does not describe these files")
            if clean_set is None:
                return None, idx, None
            if idx.min() < 0 or idx.max() >= len(clean_set):
                raise ValueError(f"{path} lists test indices up to {int(idx.max())} but the clean set "
                                 f"{clean_set.description} has {len(clean_set)} images: it is not the set the files "
                                 f"were written from ({manifest.get('source')})")
            if not np.array_equal(clean_set.labels[idx], np.asarray(labels[:n])):
                raise ValueError(f"the labels in {released / 'labels.npy'} differ from those of the clean set "
                                 f"{clean_set.description} at the {n} indices of {path}: the files were written from "
                                 f"another copy of CIFAR-10 ({manifest.get('source')})")
            subset = ArrayImages(clean_set.images[idx], clean_set.labels[idx], clean_set.num_classes,
                                 f"{clean_set.description} [the {n} test images listed in {path}]")
            return subset, idx, None
        if clean_set is None:
            return None, None, None
        if n != len(clean_set):
            raise ValueError(
                f"{released} holds {n} images per severity but the clean set {clean_set.description} has "
                f"{len(clean_set)}, and no manifest ({path.name}) says which test images they are: the clean error "
                "would be measured on other images than the corrupted cells. Pass --no-clean (clean=False) to "
                "evaluate the corrupted cells only, or write the set with `vqsa corrupt --cifar10 --limit N`, "
                "which records the indices")
    except ValueError:
        if clean:
            raise
        return None, None, None
    if not np.array_equal(clean_set.labels, np.asarray(labels[:n])):
        return clean_set, None, (
            f"the rows of {released} are not in the order of the clean set {clean_set.description} (their labels "
            "differ: the official CIFAR-10-C next to a re-ordered CIFAR-10 copy?): the full cells hold the same "
            "images, but row i of a corrupted file is not clean image i, so a --limit / --indices-from subset of "
            "the clean cell holds other images than that of the corrupted cells")
    return clean_set, None, None


def _subset_folder(dataset: str, path: Path) -> FolderImages:
    images = FolderImages(path, resize=256, crop=224, label_space="imagenet")
    extra = sorted(set(images.classes) - set(subset_wnids(dataset)))
    if extra:
        raise ValueError(f"{path}: {len(extra)} class folder(s) are not among the 200 {dataset} classes: "
                         f"{', '.join(extra[:5])}")
    return images


def _otf_plan(name: str, base: EvalImages, names: list[str], sevs: list[int], clean: bool, seed: int, profile: str,
              jpeg_quality: int | None, baseline: str | None, info: dict[str, Any]) -> EvalPlan:
    if len(base) == 0:
        raise ValueError(f"{base.description}: the evaluation set is empty")
    cells = [Cell("clean", 0, base)] if clean else []
    cells += [Cell(c, s, CorruptedImages(base, c, s, seed=seed, profile=profile, jpeg_quality=jpeg_quality))
              for c in names for s in sevs]
    if not cells:
        raise ValueError("nothing to evaluate: clean=False and no corruptions")
    source = f"on-the-fly, seed {seed}, profile {profile}" if names else "clean images"
    if names and jpeg_quality:
        source += f", JPEG q{jpeg_quality}"
    return EvalPlan(name, source, baseline, base.num_classes, cells,
                    data={**info, "clean": base.description, "on_the_fly": bool(names), "seed": seed,
                          "profile": profile, "jpeg_quality": jpeg_quality},
                    reference=base, index_space=base.description, index_space_size=len(base))


def _released_plan(name: str, root: Path, clean_set: EvalImages | None, names: list[str], sevs: list[int],
                   baseline: str | None, allow_missing: bool, info: dict[str, Any], clean: bool = True
                   ) -> tuple[EvalPlan, list[str]]:
    cells = [Cell("clean", 0, clean_set)] if clean_set is not None else []
    notes = [] if clean_set is not None or not clean else [
        f"no clean set found next to {root}: clean error not evaluated"]
    skipped: list[dict[str, Any]] = []
    messages: list[str] = []
    file_lists: dict[tuple[str, ...], tuple[str, ...]] = {}
    for c in names:
        for s in sevs:
            try:
                images = cifar10_c(root, c, s) if name.startswith("cifar") else imagenet_c(root, c, s, file_lists)
                if len(images) == 0:
                    raise ValueError(f"{name} cell {c} severity {s} under {root} has no images")
            except (FileNotFoundError, ValueError) as e:
                skipped.append({"corruption": c, "severity": s, "reason": str(e)})
                continue
            cells.append(Cell(c, s, images))
    if skipped and not allow_missing:
        raise FileNotFoundError(f"{len(skipped)} {name} cell(s) missing or unusable (use --allow-missing to skip "
                                "them):\n  " + "\n  ".join(summarize_cells(skipped)))
    if skipped:
        messages.append(f"skipped {len(skipped)} missing or unusable {name} cell(s): "
                        + "; ".join(summarize_cells(skipped, max_lines=1)))
    if not cells:
        raise ValueError(f"nothing to evaluate in {root}: every requested cell is missing")
    if clean_set is not None:
        other = sorted({len(c.images) for c in cells if c.corruption != "clean"} - {len(clean_set)})
        if other:
            message = (f"the {name} cells under {root} hold {', '.join(map(str, other))} images but the clean set "
                       f"{clean_set.description} holds {len(clean_set)}: clean and corrupted errors are measured on "
                       "different images (a partial copy of the release?)")
            messages.append(message)
            notes.append(message)
    num_classes = 10 if name.startswith("cifar") else 1000
    first = next((c.images for c in cells if c.corruption != "clean"), None)
    # ImageNet-C file names are the val file names: without the val folder, a cell names the examples as well
    reference = clean_set if clean_set is not None else (first if not name.startswith("cifar") else None)
    plan = EvalPlan(name, f"released files in {root}", baseline, num_classes, cells, skipped=skipped, notes=notes,
                    data={**info, "on_the_fly": False}, reference=reference,
                    index_space=reference.description if reference is not None else None,
                    index_space_size=len(reference) if reference is not None else None)
    return plan, messages
