"""``vqsa demo``: train a corruption-fine-tuned baseline and VQSA on the same small budget, compare them.

Both models use the same small CIFAR backbone, data, corruption draw (clean + the 15 common corruptions x 5
severities, stratified cycle), optimiser and epochs; the baseline has no codebook (Table 1 row 1), VQSA has the
codebook with concat fusion and self-attention (row 5). Both are then evaluated with ``vqsa.evaluate`` on a test
subset on clean images, the 15 known corruptions and the 4 held-out (unknown) ones, corrupted on the fly with the
CIFAR-10-C parameters. The report lands in ``<out>/report.md`` with plots; each model's run folder holds its
``results.json``, metrics and weights.

Data: CIFAR-10 from ``data_root`` / ``$VQSA_DATA``, else torchvision's download when online, else scikit-learn's
bundled digits (real, offline) with a printed note. The demo never fails for lack of data.
"""
from __future__ import annotations

import os
import socket
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from vqsa.data.cifar import ArrayDataset, load_cifar10
from vqsa.data.mixed import ArraySource
from vqsa.data.paths import resolve_data_root
from vqsa.utils.io import atomic_save_figure, atomic_write_text

MODELS = {"baseline": "fine-tune (no codebook)", "vqsa": "VQSA (concat + SA)"}


@dataclass(frozen=True)
class DemoBudget:
    """The knobs that set the demo's cost."""

    backbone: str
    train_images: int
    test_images: int
    epochs: int
    batch_size: int
    codebook_size: int
    eval_severities: tuple[int, ...]
    workers: int


FULL = DemoBudget("cifar_resnet20", 6000, 400, 4, 128, 128, (1, 3, 5), 1)
QUICK = DemoBudget("cifar_resnet8", 256, 100, 1, 64, 32, (3,), 0)


def _download_cifar10(timeout: float = 20.0) -> Path | None:
    """torchvision's CIFAR-10 download into ``~/.cache/vqsa``; None when offline."""
    from torchvision.datasets import CIFAR10

    target = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "vqsa"
    old = socket.getdefaulttimeout()
    socket.setdefaulttimeout(timeout)
    try:
        for train in (True, False):
            CIFAR10(str(target), train=train, download=True)
    except (OSError, RuntimeError, ValueError) as e:
        print(f"note: CIFAR-10 download failed ({type(e).__name__}: {e})", file=sys.stderr)
        return None
    finally:
        socket.setdefaulttimeout(old)
    return target


def load_demo_data(data_root: str | os.PathLike | None, download: bool) -> tuple[ArrayDataset, ArrayDataset, str]:
    """CIFAR-10 (train, test) from the data root, else downloaded, else the digits fallback; and a note."""
    from vqsa.train.data import DIGITS_NOTE, load_digits

    root = resolve_data_root(data_root)
    candidates = [root] if root is not None else []
    if not candidates and download:
        got = _download_cifar10()
        candidates += [got] if got is not None else []
    for cand in candidates:
        try:
            return load_cifar10(cand, "train"), load_cifar10(cand, "test"), "CIFAR-10"
        except FileNotFoundError:
            print(f"note: no CIFAR-10 under {cand}", file=sys.stderr)
    print(DIGITS_NOTE, file=sys.stderr)
    return load_digits("train"), load_digits("test"), DIGITS_NOTE.removeprefix("note: ")


def _config(name: str, budget: DemoBudget, out_dir: Path, seed: int, vq: bool, codebook: str):
    from vqsa.train.config import load_config

    model = {"model.vq": vq, "model.codebook_size": budget.codebook_size if vq else None}
    if vq:
        init = {"init_samples": min(4096, budget.train_images)} if codebook != "paper" else {}
        model["model.kwargs"] = {"codebook_preset": codebook, **init}
    return load_config(None, {
        "name": name, "output_dir": str(out_dir), "seed": seed, "epochs": budget.epochs,
        "batch_size": budget.batch_size, "log_every": 10, "model.name": budget.backbone, **model,
        "data.workers": budget.workers, "corruption.corruptions": "common", "corruption.profile": "cifar",
        "optim.lr": 2e-3, "optim.warmup_epochs": min(0.5, budget.epochs / 2), "eval.corruptions": "all",
        "eval.severities": list(budget.eval_severities), "eval.profile": "cifar", "eval.batch_size": 250,
    })


def run_demo(
    out_dir: str | os.PathLike = "runs/demo", *, data_root: str | os.PathLike | None = None, download: bool = True,
    quick: bool = False, seed: int = 0, codebook: str = "healthy",
) -> dict[str, Any]:
    """Train and evaluate both models, write ``report.md`` + plots into ``out_dir``; return the comparison rows.

    ``codebook``: the VQSA model's codebook preset, ``"healthy"`` (k-means init from training features + dead-code
    restarts) or ``"paper"`` (the paper's U(0, 3) init, which collapses to a few codes at this scale).
    """
    import torch

    budget = QUICK if quick else FULL
    threads = torch.get_num_threads()
    # Leave one core per DataLoader worker: oversubscribed OpenMP threads stall badly on small machines.
    torch.set_num_threads(max(1, min(threads, (os.cpu_count() or 1) - budget.workers)))
    try:
        return _run(Path(out_dir), budget, data_root, download, quick, seed, codebook)
    finally:
        torch.set_num_threads(threads)


def _run(out: Path, budget: DemoBudget, data_root, download: bool, quick: bool, seed: int,
         codebook: str) -> dict[str, Any]:
    from vqsa.eval.results import EvalResults
    from vqsa.train.data import TrainData
    from vqsa.train.engine import Trainer

    for name in MODELS:
        if (out / name / "checkpoint_last.pt").exists():
            raise ValueError(f"{out / name} holds a previous demo run; remove {out} or pass another --out")
    t0 = time.perf_counter()
    train, test, data_note = load_demo_data(data_root, download)
    train, test = train.subset(budget.train_images, seed=seed), test.subset(budget.test_images, seed=seed)
    data = TrainData(ArraySource(train), ArraySource(test), train.classes, 32, "cifar", test,
                     f"{train.source} ({len(train)} train, {len(test)} test images)")
    rows: dict[str, dict[str, Any]] = {}
    results: dict[str, EvalResults] = {}
    histories: dict[str, list[dict[str, Any]]] = {}
    for name, label in MODELS.items():
        print(f"== {label}", file=sys.stderr)
        t = time.perf_counter()
        trainer = Trainer(_config(name, budget, out, seed, vq=name == "vqsa", codebook=codebook), data=data)
        summary = trainer.fit()
        results[name] = EvalResults.from_json(out / name / "results.json")
        histories[name] = trainer.logger.history
        rows[name] = _row(label, results[name], summary, sum(p.numel() for p in trainer.model.parameters()),
                          time.perf_counter() - t)
        del trainer
    wall = time.perf_counter() - t0
    table = format_table(rows)
    print(table)
    _write_report(out, rows, results, histories, budget, data_note, data.description, wall, quick, codebook)
    print(f"report: {out / 'report.md'} ({wall:.0f} s)", file=sys.stderr)
    return {"rows": rows, "wall_time_s": wall, "data": data_note, "table": table}


def _row(label: str, r, summary: dict[str, Any], params: int, seconds: float) -> dict[str, Any]:
    def err(acc: float | None) -> float | None:
        return None if acc is None else 100.0 - acc

    return {
        "model": label, "clean_err": r.clean_error, "known_err": err(r.known_accuracy),
        "unknown_err": err(r.unknown_accuracy), "mean_corruption_err": r.mean_error,
        "codes_used": summary.get("codebook_used"), "codebook_perplexity": summary.get("codebook_perplexity"),
        "params": params, "seconds": seconds,
    }


def format_table(rows: dict[str, dict[str, Any]]) -> str:
    """The side-by-side Markdown table (errors in %, lower is better)."""
    head = "| model | clean err | known err | unknown err | mean corr. err | codes used | params | time (s) |"
    lines = [head, "|---|---:|---:|---:|---:|---:|---:|---:|"]

    def f(v: float | None, fmt: str = "{:.2f}") -> str:
        return "-" if v is None else fmt.format(v)

    for r in rows.values():
        lines.append(
            f"| {r['model']} | {f(r['clean_err'])} | {f(r['known_err'])} | {f(r['unknown_err'])} | "
            f"{f(r['mean_corruption_err'])} | {f(r['codes_used'], '{:.1%}')} | {r['params'] / 1e6:.2f} M | "
            f"{r['seconds']:.0f} |"
        )
    return "\n".join(lines)


def _plot_curves(histories: dict[str, list[dict[str, Any]]], path: Path) -> None:
    from matplotlib.figure import Figure

    fig = Figure(figsize=(9, 3.4))
    ax_loss, ax_acc = fig.subplots(1, 2)
    for name, hist in histories.items():
        epochs = [h["epoch"] for h in hist]
        ax_loss.plot(epochs, [h["train_ce"] for h in hist], marker="o", label=f"{MODELS[name]}: CE")
        if name == "vqsa":
            ax_loss.plot(epochs, [h["train_aux"] for h in hist], marker="x", ls="--", label="VQSA: L_vq + 0.25 L_cmt")
        ax_acc.plot(epochs, [100 * h.get("val_acc", float("nan")) for h in hist], marker="o", label=MODELS[name])
    ax_loss.set(xlabel="epoch", ylabel="training loss (corrupted + clean batches)")
    ax_acc.set(xlabel="epoch", ylabel="clean test accuracy (%)")
    for ax in (ax_loss, ax_acc):
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    atomic_save_figure(fig, path, dpi=110)


def _write_report(out: Path, rows, results, histories, budget: DemoBudget, data_note: str, data_desc: str,
                  wall: float, quick: bool, codebook: str) -> None:
    from vqsa.eval.compare import markdown_tables
    from vqsa.eval.plots import plot_corruption_accuracy

    labels = [MODELS[n] for n in results]
    plot_corruption_accuracy(list(results.values()), out / "corruption_accuracy.png", labels=labels)
    _plot_curves(histories, out / "training_curves.png")
    b = budget
    text = [
        "# vqsa demo: corruption fine-tuning vs VQSA on the same budget" + (" (--quick smoke run)" if quick else ""),
        "",
        f"- Data: {data_note}; {data_desc}.",
        f"- Both models: `{b.backbone}` from scratch, {b.epochs} epoch(s), batch {b.batch_size}, Adam lr 2e-3 with "
        "warm-up + cosine; every training image is clean or one of the 15 common corruptions x severities 1-5 "
        "(stratified cycle over the 16 x 5 grid, CIFAR-10-C parameters).",
        f"- VQSA: codebook n = {b.codebook_size} (preset `{codebook}`"
        + (": k-means init from training features, dead-code restarts" if codebook != "paper" else
           ": the paper's U(0, 3) init") + "), concat fusion + self-attention, loss CE + L_vq + 0.25 L_cmt.",
        f"- Evaluation (`vqsa.evaluate`): {b.test_images} test images, clean + 19 corruptions at severities "
        f"{list(b.eval_severities)}, generated on the fly (seeded); known = the 15 training corruptions, unknown = "
        "speckle_noise, gaussian_blur, spatter, saturate (never seen in training).",
        f"- Wall time: {wall:.0f} s for both trainings and evaluations.",
        "",
        "## Side by side (top-1 error %, lower is better)",
        "",
        format_table(rows),
        "",
        "![per-corruption accuracy](corruption_accuracy.png)",
        "",
        "![training curves](training_curves.png)",
        "",
        "Results files: [baseline/results.json](baseline/results.json), [vqsa/results.json](vqsa/results.json); "
        "metrics per epoch in `*/metrics.csv`; weights in `*/model.safetensors`.",
        "",
        "## How to read this",
        "",
        "This is a small-budget run on a CPU: differences of a point or two are within seed noise at this scale. "
        "A measured CIFAR-10 pilot (15 epochs, ResNet-18, 3 seeds) found the full method within noise of "
        "corruption fine-tuning, and a codebook that collapses to a few codes with the paper's initialisation "
        "(`vqsa demo --codebook paper` shows it): watch the *codes used* column. The paper's gains were measured "
        "with a pretrained ResNet-50 on ImageNet (`configs/imagenet_r50_vqsa.yaml`); see docs/training.md.",
        "",
        markdown_tables(list(results.values()), labels),
    ]
    atomic_write_text(out / "report.md", "\n".join(text))
