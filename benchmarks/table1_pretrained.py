"""Table 1 in the paper's setting on CIFAR-10: every row fine-tunes the shipped clean-pretrained backbone.

Each (row, seed) is a ``vqsa train`` run that starts from ``create_model("cifar_airnet", pretrained=True)`` and
fine-tunes on the full 50,000 training images, mixed clean and corrupted (the 15 common corruptions x severities
1-5, stratified cycle, CIFAR-10-C parameters), with the same optimiser, schedule and epochs for every row. It is
then evaluated with ``vqsa.evaluate`` on a CIFAR-10-C set written once by ``vqsa corrupt --cifar10`` (clean, the 15
known corruptions and the 4 unknown ones x 5 severities; all 10,000 test images, or the same seeded subset with
``--test-subset``), and its codebook measured as in ``benchmarks/reproduce_table1.py`` (whose measurement, table
and plot code this script imports).

    vqsa corrupt --cifar10 --data-root $VQSA_DATA --corruptions all --jobs 2 /data/cifar10-c
    python benchmarks/table1_pretrained.py --data-root $VQSA_DATA --cifar10-c /data/cifar10-c --seeds 0 1 2

Resumable: a finished (row, seed) is skipped; an interrupted run resumes from its checkpoint.
"""
from __future__ import annotations

import argparse
import contextlib
import datetime
import importlib.util
import json
import logging
import os
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

_spec = importlib.util.spec_from_file_location("reproduce_table1", Path(__file__).with_name("reproduce_table1.py"))
t1 = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(t1)

ROOT = Path(__file__).resolve().parents[1]
PAPER = {"codebook_preset": "paper"}
HEALTHY = {"codebook_preset": "healthy", "init_samples": 4096}
CONCAT_SA = {"model.fusion": "concat", "model.kwargs": PAPER}
ROWS: dict[str, tuple[dict[str, Any], str]] = {  # row id -> (config overrides, label)
    "finetune": ({"model.vq": False}, "fine-tune (no codebook)"),
    "replace": ({"model.fusion": "replace", "model.kwargs": PAPER}, "replace (paper codebook)"),
    "add": ({"model.fusion": "add", "model.kwargs": PAPER}, "add (paper codebook)"),
    "concat": ({"model.fusion": "concat", "model.attention": False, "model.kwargs": PAPER},
               "concat (paper codebook)"),
    "concat_sa": ({"model.fusion": "concat", "model.kwargs": PAPER}, "concat + SA, paper codebook"),
    "concat_sa_healthy": ({"model.fusion": "concat", "model.kwargs": HEALTHY}, "concat + SA, healthy codebook"),
}
# The one-seed ablation: concat + SA with the paper's codebook, one knob changed per row.
ABLATION: dict[str, tuple[dict[str, Any], str]] = {
    "sa_frozen": ({**CONCAT_SA, "optim.backbone_lr_scale": 0.0}, "concat + SA, frozen backbone"),
    "sa_backbone_lr0.1": ({**CONCAT_SA, "optim.backbone_lr_scale": 0.1}, "concat + SA, backbone lr x 0.1"),
    "sa_codes100": ({**CONCAT_SA, "model.codebook_size": 100}, "concat + SA, 100 codes"),
    "sa_codes10000": ({**CONCAT_SA, "model.codebook_size": 10000}, "concat + SA, 10,000 codes"),
    "sa_kmeans": ({**CONCAT_SA, "model.kwargs": {**PAPER, "init": "kmeans", "init_samples": 20000}},
                  "concat + SA, k-means init"),
    "sa_beta1": ({**CONCAT_SA, "model.commitment_weight": 1.0}, "concat + SA, commitment weight 1"),
    "sa_beta0.05": ({**CONCAT_SA, "model.commitment_weight": 0.05}, "concat + SA, commitment weight 0.05"),
    # Pairs: each step holds 128 images clean and corrupted, over one epoch: the same steps and images per step.
    "sa_pairs": ({**CONCAT_SA, "corruption.pairs": True, "batch_size": 128, "epochs_scale": 0.5},
                 "concat + SA, clean/corrupted pairs"),
    "finetune_2x": ({"model.vq": False, "epochs_scale": 2}, "fine-tune (no codebook), 2 x epochs"),
    "sa_2x": ({**CONCAT_SA, "epochs_scale": 2}, "concat + SA, paper codebook, 2 x epochs"),
}
ROWS.update(ABLATION)
# Table 5's protocol: no ImageNet-C corruption in training, only the baseline's own augmentation (every evaluated
# corruption is then unseen).
CLEAN = {"corruption.corruptions": []}
AUGMIX = {**CLEAN, "corruption.augment": "augmix"}
JSD = {**AUGMIX, "corruption.jsd": True}
TABLE5: dict[str, tuple[dict[str, Any], str]] = {
    "t5_vanilla": ({**CLEAN, "model.vq": False}, "vanilla fine-tune (clean images)"),
    "t5_vanilla_sa": ({**CLEAN, **CONCAT_SA}, "vanilla + VQSA"),
    "t5_augmix": ({**AUGMIX, "model.vq": False}, "AugMix"),
    "t5_augmix_sa": ({**AUGMIX, **CONCAT_SA}, "AugMix + VQSA"),
    "t5_augmix_jsd": ({**JSD, "model.vq": False}, "AugMix + JSD"),
    "t5_augmix_jsd_sa": ({**JSD, **CONCAT_SA}, "AugMix + JSD + VQSA"),
}
ROWS.update(TABLE5)
# Every row: the shipped backbone, the full training set, the fine-tuning optimiser of `vqsa demo` (SGD + Nesterov,
# lr 0.01, half an epoch of warm-up, cosine), which keeps the pretrained accuracy; the paper's Adam 1e-3 is a knob
# (--set optim.name adam --set optim.lr 1e-3 --set optim.nesterov false).
BASE: dict[str, Any] = {
    "model.name": "cifar_airnet", "model.pretrained": True, "model.codebook_size": 1000,
    "data.dataset": "cifar10", "batch_size": 256, "optim.name": "sgd", "optim.nesterov": True, "optim.lr": 0.01,
    "optim.momentum": 0.9, "optim.warmup_epochs": 0.5, "optim.scheduler": "cosine",
    "corruption.corruptions": "common", "corruption.profile": "cifar", "eval.enabled": False, "eval.val_every": 1,
    "amp": True,  # bf16 autocast for every row: the automatic choice is timed, and rows must not differ by it
}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data-root", default=None, help="folder with cifar10/ (default $VQSA_DATA)")
    p.add_argument("--cifar10-c", required=True, help="the CIFAR-10-C folder written by vqsa corrupt --cifar10")
    p.add_argument("--out", default=str(ROOT / "docs" / "results" / "table1_cifar10_pretrained"))
    p.add_argument("--runs", default=None, help="run folders (default OUT/runs)")
    p.add_argument("--rows", default=",".join(ROWS), help=f"comma-separated subset of {','.join(ROWS)}")
    p.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    p.add_argument("--epochs", type=int, default=4)
    p.add_argument("--test-subset", type=int, default=None, help="evaluate a seeded subset (default: all 10,000)")
    p.add_argument("--agreement-images", type=int, default=1000)
    p.add_argument("--set", nargs=2, action="append", default=[], metavar=("KEY", "VALUE"),
                   help="another config override for every row, e.g. --set optim.lr 3e-4")
    args = p.parse_args(argv)
    args.rows = [r.strip() for r in args.rows.split(",") if r.strip()]
    bad = [r for r in args.rows if r not in ROWS]
    if bad or not args.rows:
        p.error(f"--rows: unknown row(s) {bad}; choose from {', '.join(ROWS)}")
    args.severities, args.agreement_severity = [1, 2, 3, 4, 5], 3
    return args


@contextlib.contextmanager
def eval_root(data_root: str | None, cifar10_c: str) -> Iterator[str]:
    """A data root holding both the clean CIFAR-10 test set and the stored CIFAR-10-C set (two links in a temporary
    folder), so that ``vqsa.evaluate`` scores the clean images of the same subset too."""
    from vqsa.data.cifar import find_cifar10
    from vqsa.data.paths import resolve_data_root

    clean = find_cifar10(resolve_data_root(data_root, required=True))
    with tempfile.TemporaryDirectory() as tmp:
        os.symlink(clean.resolve(), os.path.join(tmp, "cifar10"))
        os.symlink(Path(cifar10_c).resolve(), os.path.join(tmp, "cifar10-c"))
        yield tmp


def eval_dir(run_dir: Path, test_subset: int | None) -> Path:
    """Where one run's evaluation on one test set lives (the full set and each subset apart)."""
    return run_dir / ("eval_full" if test_subset is None else f"eval_subset{test_subset}")


def run_one(args: argparse.Namespace, row: str, seed: int, runs_dir: Path) -> dict[str, Any]:
    """Fine-tune (or resume, or skip) one (row, seed), evaluate it on the stored CIFAR-10-C set, measure it."""
    import yaml

    import vqsa
    from vqsa.eval.progress import clear_progress
    from vqsa.models import load_model
    from vqsa.train.checkpointing import CHECKPOINT_NAME
    from vqsa.train.config import load_config
    from vqsa.train.engine import train
    from vqsa.utils.io import atomic_write_json

    row_ov = dict(ROWS[row][0])
    epochs = max(1, round(args.epochs * row_ov.pop("epochs_scale", 1)))
    ov = {**BASE, "epochs": epochs, **row_ov, "name": f"{row}_seed{seed}", "output_dir": str(runs_dir),
          "seed": seed}
    if args.data_root:
        ov["data.root"] = args.data_root
    for key, value in args.set:
        ov[key] = yaml.safe_load(value)
    cfg = load_config(None, ov)
    run_dir = cfg.run_dir()
    t1.check_same_settings(run_dir, cfg)
    out = eval_dir(run_dir, args.test_subset)
    if (out / t1.MEASURED).is_file():
        print(f"[{row} seed {seed}] done already, skipped", file=sys.stderr)
        return json.loads((out / t1.MEASURED).read_text())
    if not (run_dir / "summary.json").is_file():
        resume = True if (run_dir / CHECKPOINT_NAME).is_file() else None
        print(f"[{row} seed {seed}] {'resuming' if resume else 'training'} in {run_dir}", file=sys.stderr)
        train(cfg, resume=resume)
    eval_s = None
    if not (out / "results.json").is_file():
        model = load_model(run_dir / "model.safetensors")
        t = time.perf_counter()
        with eval_root(args.data_root, args.cifar10_c) as root:
            res = vqsa.evaluate(model, "cifar10-c", data_root=root, corruptions="all", batch_size=500,
                                num_workers=0, amp=True, limit=args.test_subset, seed=0,
                                train_corruptions=cfg.corruption.corruptions,
                                model_info={**model.model_config, "label": row},
                                checkpoint_dir=out, resume=any(out.glob("eval_progress.*")))
        res.save(out)
        clear_progress(out)
        eval_s = time.perf_counter() - t
        print(f"[{row} seed {seed}] evaluated in {eval_s:.0f} s", file=sys.stderr)
    result = {"row": row, "seed": seed, "overrides": ov, "eval_s": eval_s,
              **t1.measure(run_dir, cfg, args, results_dir=out)}
    atomic_write_json(out / t1.MEASURED, result)
    return result


def _history(run_dir: Path) -> list[dict[str, Any]]:
    """The per-epoch records of a run (training loss and accuracy, clean test accuracy)."""
    keep = ("epoch", "train_loss", "train_acc", "val_acc", "lr")
    lines = (run_dir / "metrics.jsonl").read_text().splitlines()
    return [{k: r[k] for k in keep if k in r} for r in map(json.loads, filter(None, lines))]


def plot_curves(curves: dict[str, list[list[dict[str, Any]]]], path: Path) -> None:
    """Clean test accuracy and training loss per epoch, each row's mean over its seeds."""
    import numpy as np
    from matplotlib.figure import Figure

    from vqsa.utils.io import atomic_save_figure

    fig = Figure(figsize=(9, 3.4))
    ax_acc, ax_loss = fig.subplots(1, 2)
    for row, runs in curves.items():
        n = min(len(h) for h in runs)
        epochs = [runs[0][i]["epoch"] for i in range(n)]
        label = f"{ROWS[row][1]} ({len(runs)} seed{'s' if len(runs) > 1 else ''})"
        ax_acc.plot(epochs, [100 * np.mean([h[i]["val_acc"] for h in runs]) for i in range(n)], marker="o",
                    label=label)
        ax_loss.plot(epochs, [np.mean([h[i]["train_loss"] for h in runs]) for i in range(n)], marker="o", label=label)
    ax_acc.set(xlabel="epoch", ylabel="clean test accuracy (%, 10,000 images)")
    ax_loss.set(xlabel="epoch", ylabel="training loss (CE + codebook terms)")
    for ax in (ax_acc, ax_loss):
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.tight_layout()
    atomic_save_figure(fig, path, dpi=110)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")  # vqsa.train's progress lines
    from vqsa.utils.io import atomic_write_json, atomic_write_text

    out = Path(args.out)
    runs_dir = Path(args.runs) if args.runs else out / "runs"
    started, t0 = datetime.datetime.now(datetime.timezone.utc), time.perf_counter()
    t1.ROWS.update({row: ("(overrides)", label) for row, (_, label) in ROWS.items()})
    results = [run_one(args, row, seed, runs_dir) for row in args.rows for seed in args.seeds]
    table = t1.aggregate(results, args.rows)
    meta = {"tag": "cifar_airnet pretrained, fine-tuned", "command": t1.study_command(argv),
            "hardware": t1.hardware(), "started": started.isoformat(timespec="seconds"),
            "finished": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            "wall_time_s": time.perf_counter() - t0, "agreement_severity": args.agreement_severity,
            "compute_s": sum((r.get("train_time_s") or 0) + (r.get("eval_s") or 0) for r in results),
            "scale": f"full training set, {args.epochs} fine-tuning epochs from the shipped backbone (rows marked "
                     "2 x train twice as long; the pairs row half as long, with twice the images per step), "
                     + (f"{args.test_subset} test images" if args.test_subset else "all 10,000 test images")
                     + " x 19 corruptions x 5 severities"}
    atomic_write_json(out / "table1.json", {"meta": meta, "table": table, "runs": results})
    atomic_write_text(out / "table1.md", t1.markdown(table, meta))
    t1.plot(table, out / "table1.png", f"Table 1, pretrained setting: mean +- std over seeds {args.seeds}")
    curves = {row: [_history(runs_dir / f"{row}_seed{seed}") for seed in args.seeds] for row in args.rows}
    atomic_write_json(out / "curves.json", curves)
    plot_curves(curves, out / "curves.png")
    print(t1.markdown(table, meta))
    print(f"wrote {out / 'table1.md'}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
