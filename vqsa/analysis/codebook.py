"""Codebook usage, and how often clean and corrupted versions of an image share a code, against chance.

The paper's claim is that clean and corrupted features are quantized into "the same discrete space". The direct
measure is the agreement ``P(code(clean x) == code(corrupted x))``. Agreement alone misleads: a collapsed codebook
(every image on one code) agrees 100 % while carrying no information. So each agreement comes with the agreement
expected by chance from the two code distributions alone, ``sum_k p_clean(k) * p_corrupted(k)`` (1 for a one-code
collapse, ~1/K for uniform use of K codes), and Cohen's kappa ``(agreement - chance) / (1 - chance)``: 0 when the
codes agree no more than chance, 1 for perfect agreement beyond it (undefined when chance is 1).
"""
from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from vqsa.layers.vq import usage_from_counts
from vqsa.utils.io import atomic_save_figure, atomic_write_json

from .features import corrupt_images, extract_features


def _check_indices(indices: np.ndarray, codebook_size: int, name: str = "indices") -> np.ndarray:
    indices = np.asarray(indices)
    if indices.ndim != 1 or not np.issubdtype(indices.dtype, np.integer):
        raise TypeError(f"{name} must be a 1-D integer array, got {indices.dtype} {indices.shape}")
    if isinstance(codebook_size, bool) or not isinstance(codebook_size, (int, np.integer)) or codebook_size < 1:
        raise ValueError(f"codebook_size must be a positive int, got {codebook_size!r}")
    if len(indices) and (indices.min() < 0 or indices.max() >= codebook_size):
        raise ValueError(f"{name} must lie in [0, {codebook_size})")
    return indices.astype(np.int64, copy=False)


def code_counts(indices: np.ndarray, codebook_size: int) -> np.ndarray:
    """Assignments per code, (codebook_size,) int64."""
    return np.bincount(_check_indices(indices, codebook_size), minlength=codebook_size)


def usage_stats(indices: np.ndarray, codebook_size: int) -> dict[str, Any]:
    """Perplexity, fraction and number of codes used, dead codes, and the share of the most used codes."""
    counts = code_counts(indices, codebook_size)
    if counts.sum() == 0:
        raise ValueError("no code assignments to summarise")
    u = usage_from_counts(torch.from_numpy(counts))
    top = np.sort(counts)[::-1] / counts.sum()
    return {
        "images": int(counts.sum()), "codebook_size": codebook_size, "perplexity": u.perplexity,
        "fraction_used": u.fraction_used, "codes_used": u.codes_used, "dead_codes": codebook_size - u.codes_used,
        "top1_share": float(top[0]), "top10_share": float(top[:10].sum()),
    }


def code_agreement(clean: np.ndarray, corrupted: np.ndarray, codebook_size: int) -> dict[str, float | int | None]:
    """Agreement of paired code indices, with its chance baseline and Cohen's kappa (see the module docstring)."""
    clean = _check_indices(clean, codebook_size, "clean indices")
    corrupted = _check_indices(corrupted, codebook_size, "corrupted indices")
    if clean.shape != corrupted.shape or len(clean) == 0:
        raise ValueError(f"need non-empty paired indices of equal length, got {len(clean)} and {len(corrupted)}")
    n = len(clean)
    agreement = float((clean == corrupted).mean())
    p = np.bincount(clean, minlength=codebook_size) / n
    q = np.bincount(corrupted, minlength=codebook_size) / n
    chance = float(min(1.0, p @ q))
    kappa = (agreement - chance) / (1.0 - chance) if chance < 1.0 - 1e-12 else None
    return {"n": n, "agreement": agreement, "chance": chance, "kappa": kappa}


def agreement_table(
    clean: np.ndarray, corrupted: dict[str, np.ndarray], codebook_size: int
) -> dict[str, dict[str, float | int | None]]:
    """:func:`code_agreement` per corruption, plus ``"overall"`` over all (clean, corrupted) pairs pooled."""
    if not corrupted:
        raise ValueError("no corrupted indices given")
    table = {name: code_agreement(clean, idx, codebook_size) for name, idx in corrupted.items()}
    table["overall"] = code_agreement(np.tile(clean, len(corrupted)), np.concatenate(list(corrupted.values())),
                                      codebook_size)
    return table


def read_usage_history(run_dir: str | os.PathLike) -> list[dict[str, float]]:
    """Per-epoch codebook usage logged by ``vqsa train`` (``metrics.jsonl``: ``codebook_perplexity``,
    ``codebook_used``); empty when the run has no such log or logs no usage (no codebook)."""
    path = Path(run_dir)
    path = path / "metrics.jsonl" if path.is_dir() else path.parent / "metrics.jsonl"
    if not path.is_file():
        return []
    history = []
    for n, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip():
            continue
        try:
            rec = json.loads(line)
        except json.JSONDecodeError as e:
            raise ValueError(f"{path}:{n}: not valid JSON: {e}") from e
        if isinstance(rec, dict) and rec.get("codebook_perplexity") is not None:
            history.append({"epoch": rec.get("epoch", n), "perplexity": float(rec["codebook_perplexity"]),
                            "fraction_used": float(rec.get("codebook_used") or 0.0)})
    return history


def plot_usage(counts: np.ndarray, stats: dict[str, Any], path: str | os.PathLike, title: str = "") -> None:
    """Rank-frequency plot of code usage (codes sorted by use, log scale) with the summary statistics."""
    from matplotlib.figure import Figure

    order = np.sort(counts)[::-1]
    used = order[order > 0]
    fig = Figure(figsize=(7, 4))
    ax = fig.subplots()
    ax.bar(np.arange(1, len(used) + 1), used, width=1.0, color="tab:blue")
    ax.set_xlim(0.5, max(len(used), 1) + 0.5)
    ax.set_yscale("log")
    ax.set_xlabel(f"code rank (used codes only; {stats['dead_codes']} of {len(counts)} never used)")
    ax.set_ylabel("images assigned")
    ax.set_title(f"{title}\nperplexity {stats['perplexity']:.1f}, {stats['codes_used']} codes used "
                 f"({100 * stats['fraction_used']:.1f} %), top code {100 * stats['top1_share']:.1f} % of images",
                 fontsize=9)
    fig.tight_layout()
    atomic_save_figure(fig, path)


def plot_history(history: Sequence[dict[str, float]], path: str | os.PathLike, title: str = "") -> None:
    """Perplexity and fraction of codes used per training epoch."""
    from matplotlib.figure import Figure

    epochs = [h["epoch"] for h in history]
    fig = Figure(figsize=(7, 3.6))
    ax = fig.subplots()
    ax.plot(epochs, [h["perplexity"] for h in history], "o-", color="tab:blue", label="perplexity")
    ax.set_xlabel("epoch")
    ax.set_ylabel("perplexity", color="tab:blue")
    ax2 = ax.twinx()
    ax2.plot(epochs, [100 * h["fraction_used"] for h in history], "s--", color="tab:orange", label="codes used")
    ax2.set_ylabel("codes used (%)", color="tab:orange")
    ax.set_title(f"{title}\ncodebook usage during training (training batches of each epoch)", fontsize=9)
    fig.tight_layout()
    atomic_save_figure(fig, path)


def plot_agreement(table: dict[str, dict[str, Any]], path: str | os.PathLike, title: str = "") -> None:
    """Bars: clean/corrupted code agreement per corruption; black ticks: the chance agreement from usage alone."""
    from matplotlib.figure import Figure

    names = list(table)
    x = np.arange(len(names))
    fig = Figure(figsize=(max(6.0, 0.45 * len(names) + 2), 4))
    ax = fig.subplots()
    ax.bar(x, [100 * table[n]["agreement"] for n in names], 0.7, color="tab:green", label="same code")
    ax.scatter(x, [100 * table[n]["chance"] for n in names], marker="_", s=300, color="k", zorder=3,
               label="chance (from usage)")
    ax.set_xticks(x, [n.replace("_", " ") for n in names], rotation=45, ha="right")
    ax.set_ylim(0, 105)
    ax.set_ylabel("clean and corrupted on the same code (%)")
    kappa = table["overall"]["kappa"] if "overall" in table else None
    ax.set_title(f"{title}\noverall kappa beyond chance: {'n/a (one code)' if kappa is None else f'{kappa:.2f}'}",
                 fontsize=9)
    ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    atomic_save_figure(fig, path)


def analyze_codebook(
    model: nn.Module,
    images: np.ndarray,
    *,
    corruptions: Sequence[str],
    severity: int = 3,
    indices: np.ndarray | None = None,
    run_dir: str | os.PathLike | None = None,
    out_dir: str | os.PathLike | None = None,
    seed: int = 0,
    profile: str = "auto",
    batch_size: int = 128,
    label: str | None = None,
) -> dict[str, Any]:
    """Code usage on clean and corrupted images, clean/corrupted agreement per corruption with its chance baseline,
    and the usage logged during training.

    Args:
        model: a VQSA classifier with a codebook.
        images: uint8 (N, H, W, 3) dataset; ``indices`` picks the evaluated rows (default: all).
        corruptions / severity: the corrupted versions compared with the clean ones.
        run_dir: the training run folder (its ``metrics.jsonl``), for usage over training.
        out_dir: when given, writes ``codebook.json``, ``codebook_usage.png``, ``codebook_agreement.png`` and, with
            a logged history, ``codebook_training.png``.
        label: the model's name in the figure titles (default: its backbone name).
    """
    vq = getattr(model, "vq", None)
    if vq is None:
        raise ValueError("the model has no codebook (vq=False): nothing to analyse")
    if not corruptions:
        raise ValueError("codebook agreement needs at least one corruption")
    k = int(vq.codebook_size)
    idx = np.arange(len(images)) if indices is None else np.asarray(indices, dtype=np.int64)
    clean = extract_features(model, images[idx], batch_size).indices
    corrupted = {c: extract_features(model, corrupt_images(images, c, severity, indices=idx, seed=seed,
                                                           profile=profile), batch_size).indices
                 for c in corruptions}
    all_corrupted = np.concatenate(list(corrupted.values()))
    history = read_usage_history(run_dir) if run_dir is not None else []
    result = {
        "model": getattr(model, "model_config", {}), "severity": severity, "corruptions": list(corruptions),
        "seed": seed, "profile": profile, "images": len(idx),
        "usage": {"clean": usage_stats(clean, k), "corrupted": usage_stats(all_corrupted, k),
                  "all": usage_stats(np.concatenate([clean, all_corrupted]), k)},
        "agreement": agreement_table(clean, corrupted, k),
        "training_history": history,
        "note": "agreement: fraction of images whose clean and corrupted versions get the same code; chance: "
                "sum_k p_clean(k) p_corrupted(k); kappa: (agreement - chance) / (1 - chance)",
    }
    if out_dir is not None:
        out = Path(out_dir)
        label = label or result["model"].get("name", type(model).__name__)
        plot_usage(code_counts(np.concatenate([clean, all_corrupted]), k), result["usage"]["all"],
                   out / "codebook_usage.png", f"{label}: clean + corrupted (severity {severity}) images")
        plot_agreement(result["agreement"], out / "codebook_agreement.png",
                       f"{label}: clean vs corrupted (severity {severity}), {len(idx)} images")
        if history:
            plot_history(history, out / "codebook_training.png", label)
        atomic_write_json(out / "codebook.json", result)
    return result
