"""Reproduce the paper's Table 1 ablation (and Table 2's cost columns) on CIFAR-10 with the library's own APIs.

Five rows, each a config in configs/: fine-tune (no codebook), replace, add, concat, concat + SA (the full method);
ResNet-18 with the CIFAR stem; training on clean + the 15 common corruptions (known), evaluation on clean + all 19
(the 4 held-out ones are "unknown"), CIFAR-10-C parameters. Every (row, seed) run is a ``vqsa.train`` run folder under
``<out>/runs/``; then the script measures, per run, the cost (parameters and FLOPs from ``vqsa.analysis``, training
images/s from the run's metrics) and the codebook (usage, clean/corrupted code agreement and its chance baseline from
``vqsa.analysis.codebook``), and writes the table (mean +- std over seeds) with plots and the exact command, hardware,
time and versions.

    # the study as configured (3 seeds x 5 rows; a GPU is advised)
    python benchmarks/reproduce_table1.py --data-root $VQSA_DATA --amp
    # a smoke run on a laptop CPU (minutes): tiny backbone, subsets, one seed, two rows, one severity
    python benchmarks/reproduce_table1.py --data-root $VQSA_DATA --out /tmp/table1_smoke --rows finetune,concat_sa \\
        --seeds 0 --epochs 1 --train-subset 256 --test-subset 64 --backbone cifar_resnet8 --severities 3

Resumable: a finished (row, seed) (its ``measured.json`` exists) is skipped; an interrupted training run resumes from
its ``checkpoint_last.pt``. Rerunning with the same arguments only fills what is missing and rewrites the table.
"""
from __future__ import annotations

import argparse
import datetime
import json
import logging
import math
import shlex
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
ROWS = {  # row id -> (config file, label in the paper's Table 1)
    "finetune": ("cifar10_r18_finetune.yaml", "fine-tune (no codebook)"),
    "replace": ("cifar10_r18_replace.yaml", "codebook, replace"),
    "add": ("cifar10_r18_add.yaml", "codebook, add"),
    "concat": ("cifar10_r18_concat.yaml", "codebook, concat"),
    "concat_sa": ("cifar10_r18_concat_sa.yaml", "codebook, concat + SA"),
}
MEASURED = "measured.json"
# Scalars averaged over seeds (name -> unit), in table order.
SCALARS = {
    "clean_acc": "%", "known_err": "%", "known_acc": "%", "unknown_acc": "%", "unknown_err": "%",
    "codes_used": "codes", "perplexity": "", "agreement": "%", "agreement_chance": "%", "agreement_kappa": "",
    "params_m": "M", "gflops": "GFLOPs", "train_img_s": "img/s", "train_time_s": "s",
}


def add_study_arguments(p: argparse.ArgumentParser, rows: dict, default_rows: tuple[str, ...], out_default: str,
                        set_help: str) -> None:
    """The arguments shared by the CIFAR-10 study scripts: data, rows, seeds, scale knobs and run options."""
    p.add_argument("--data-root", default=None, help="folder with cifar10/ (default $VQSA_DATA)")
    p.add_argument("--out", default=None, help=f"output folder (default {out_default})")
    p.add_argument("--rows", default=",".join(default_rows), help=f"comma-separated subset of {','.join(rows)}")
    p.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    s = p.add_argument_group("scale knobs (default: the configs' values)")
    s.add_argument("--epochs", type=int, default=None)
    s.add_argument("--train-subset", type=int, default=None, help="training images (configs: 15000)")
    s.add_argument("--test-subset", type=int, default=None, help="test images evaluated per cell (configs: 3000)")
    s.add_argument("--backbone", default=None,
                   help="swap ResNet-18 for another backbone, e.g. cifar_resnet20 (vqsa's CIFAR ResNets have their "
                        "own 32-px stem, so cifar_stem is dropped for them)")
    s.add_argument("--batch-size", type=int, default=None)
    s.add_argument("--severities", nargs="+", type=int, default=[1, 2, 3, 4, 5], help="evaluated severities")
    s.add_argument("--agreement-severity", type=int, default=3, help="severity of the code-agreement measure")
    s.add_argument("--agreement-images", type=int, default=1000, help="test images for the code agreement")
    s.add_argument("--set", nargs=2, action="append", default=[], metavar=("KEY", "VALUE"), help=set_help)
    r = p.add_argument_group("run")
    r.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    r.add_argument("--amp", action="store_true", default=None,
                   help="force bfloat16 autocast (default: vqsa train's choice, bf16 on CPUs where it is faster)")
    r.add_argument("--workers", type=int, default=None,
                   help="DataLoader workers (default: vqsa train's choice for the machine)")


def check_study_arguments(p: argparse.ArgumentParser, args: argparse.Namespace, rows: dict) -> argparse.Namespace:
    """Validate what ``add_study_arguments`` parsed (``p.error`` on bad values); ``args.rows`` becomes a list."""
    chosen = [r.strip() for r in args.rows.split(",") if r.strip()]
    bad = [r for r in chosen if r not in rows]
    if bad or not chosen:
        p.error(f"--rows: unknown row(s) {bad}; choose from {', '.join(rows)}")
    args.rows = chosen
    for key in ("epochs", "train_subset", "test_subset", "batch_size", "agreement_images"):
        if getattr(args, key) is not None and getattr(args, key) < 1:
            p.error(f"--{key.replace('_', '-')} must be >= 1")
    if any(not 1 <= s <= 5 for s in args.severities + [args.agreement_severity]):
        p.error("severities must be in 1..5")
    if len(set(args.seeds)) != len(args.seeds):
        p.error("--seeds has duplicates")
    return args


def study_command(argv: list[str] | None) -> str:
    """The command line that ran this study, shell-quoted."""
    return "python " + " ".join(shlex.quote(a) for a in [sys.argv[0], *(sys.argv[1:] if argv is None else argv)])


def study_meta(args: argparse.Namespace, command: str, started: datetime.datetime, t0: float) -> dict[str, Any]:
    """What a study's results file records: command, hardware, versions, times, settings and the scale used."""
    from vqsa.utils.meta import git_sha, machine, versions

    knobs = {k: getattr(args, k) for k in ("epochs", "train_subset", "test_subset", "backbone", "batch_size")}
    changed = {k: v for k, v in knobs.items() if v is not None}
    return {
        "command": command, "hardware": hardware(), "machine": machine(), "versions": versions(),
        "git_sha": git_sha(), "started": started.isoformat(timespec="seconds"),
        "finished": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "wall_time_s": time.perf_counter() - t0, "rows": args.rows, "seeds": args.seeds,
        "severities": args.severities, "agreement_severity": args.agreement_severity,
        "agreement_images": args.agreement_images, "extra_overrides": [list(kv) for kv in args.set],
        "scale": ("as in the configs (ResNet-18, 15,000 train / 3,000 test images, 15 epochs)" if not changed
                  else "REDUCED from the configs: " + ", ".join(f"{k}={v}" for k, v in changed.items())),
    }


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_study_arguments(p, ROWS, tuple(ROWS), "docs/results/table1_<tag>",
                        "any other config override, e.g. --set model.kwargs '{cifar_stem: true, init: kmeans}'")
    p.add_argument("--tag", default=None, help="name of the default output folder (default: from the scale knobs)")
    return check_study_arguments(p, p.parse_args(argv), ROWS)


def default_tag(args: argparse.Namespace) -> str:
    parts = [args.backbone or "resnet18"]
    for key, short in (("epochs", "e"), ("train_subset", "tr"), ("test_subset", "te")):
        if getattr(args, key) is not None:
            parts.append(f"{short}{getattr(args, key)}")
    parts.append(f"s{len(args.seeds)}")
    return "_".join(parts)


def overrides(args: argparse.Namespace, row: str, seed: int, runs_dir: Path) -> dict[str, Any]:
    """Config overrides of one (row, seed) run."""
    import yaml

    from vqsa.models import list_models

    ov: dict[str, Any] = {"name": f"{row}_seed{seed}", "output_dir": str(runs_dir), "seed": seed,
                          "device": args.device, "amp": args.amp, "data.workers": args.workers,
                          "eval.severities": list(args.severities)}
    if args.data_root:
        ov["data.root"] = args.data_root
    for key, dotted in (("epochs", "epochs"), ("train_subset", "data.train_subset"),
                        ("test_subset", "data.val_subset"), ("batch_size", "batch_size")):
        if getattr(args, key) is not None:
            ov[dotted] = getattr(args, key)
    if args.backbone:
        ov["model.name"] = args.backbone
        if args.backbone in list_models(source="vqsa"):
            ov["model.kwargs"] = {}
    for key, value in args.set:
        ov[key] = yaml.safe_load(value)
    return ov


def training_speed(run_dir: Path) -> tuple[float | None, float | None]:
    """(training images/s averaged over epochs, total training seconds) from the run's ``metrics.jsonl`` (summed
    per epoch, so a resumed run counts every epoch once)."""
    path = run_dir / "metrics.jsonl"
    if not path.is_file():
        return None, None
    records = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    speeds = [r["images_per_s"] for r in records if r.get("images_per_s")]
    times = [r["epoch_time_s"] for r in records if r.get("epoch_time_s") is not None]
    return (float(np.mean(speeds)) if speeds else None), (float(np.sum(times)) if times else None)


def measure(run_dir: Path, cfg: Any, args: argparse.Namespace, results_dir: Path | None = None) -> dict[str, Any]:
    """Accuracy, cost and codebook figures of one finished run (its evaluation in ``results_dir``, default the run
    folder)."""
    from vqsa import metrics
    from vqsa.analysis import count_flops, count_params
    from vqsa.analysis.codebook import analyze_codebook
    from vqsa.analysis.features import seeded_subset
    from vqsa.eval import EvalResults
    from vqsa.models import load_model
    from vqsa.train.inputs import build_train_data

    res = EvalResults.from_json(results_dir or run_dir)
    acc = res.corruption_accuracy()
    model = load_model(run_dir / "model.safetensors").eval()
    side = int(model.pretrained_cfg["input_size"][-1])
    params, flops = count_params(model, by="module"), count_flops(model, (1, 3, side, side))
    img_s, train_s = training_speed(run_dir)
    out: dict[str, Any] = {
        "clean_acc": res.clean_accuracy, "known_err": res.mean_error, "known_acc": res.known_accuracy,
        "unknown_acc": res.unknown_accuracy,
        "unknown_err": None if res.unknown_accuracy is None else 100.0 - res.unknown_accuracy,
        "per_corruption_err": {c: 100.0 - acc[c] for c in metrics.CORRUPTION_NAMES if c in acc},
        "params": params, "flops": flops, "params_m": params["total"] / 1e6, "gflops": flops["total"] / 1e9,
        "train_img_s": img_s, "train_time_s": train_s,
        "eval_images_per_cell": res.to_dict()["n_examples"]["per_cell"], "model_config": model.model_config,
    }
    if model.vq is not None:
        val = build_train_data(cfg).val_arrays
        idx = seeded_subset(len(val), args.agreement_images, cfg.seed)
        cb = analyze_codebook(model, val.images, corruptions=list(metrics.CORRUPTION_NAMES), indices=idx,
                              severity=args.agreement_severity, run_dir=run_dir, seed=cfg.seed,
                              profile=cfg.eval.profile)
        overall = cb["agreement"]["overall"]
        out.update(codes_used=cb["usage"]["all"]["codes_used"], perplexity=cb["usage"]["all"]["perplexity"],
                   agreement=100 * overall["agreement"], agreement_chance=100 * overall["chance"],
                   agreement_kappa=overall["kappa"], codebook=cb)
    return out


def check_same_settings(run_dir: Path, cfg: Any) -> None:
    """Refuse to resume or reuse a run folder made with other settings (run-only keys aside)."""
    import yaml

    from vqsa.train.config import flatten

    path = run_dir / "config.yaml"
    if not path.is_file():
        return
    from vqsa.train.config import TrainConfig

    ignore = {"data.workers", "device"}
    defaults = flatten(TrainConfig().to_dict())  # a key added to vqsa after the run was made has its default there
    saved = {**defaults, **flatten(yaml.safe_load(path.read_text()))}
    wanted = flatten(cfg.to_dict())
    diff = sorted(k for k in saved.keys() | wanted.keys() if k not in ignore and saved.get(k) != wanted.get(k))
    if diff:
        raise ValueError(f"{run_dir} was made with other settings ({', '.join(diff)} differ): pass another --out, "
                         "or delete that run folder to redo it")


def train_or_skip(cfg: Any, row: str, seed: int) -> dict[str, Any] | None:
    """The stored record of an already measured run; else train (or resume) the run and return None."""
    from vqsa.train.checkpointing import CHECKPOINT_NAME
    from vqsa.train.engine import train

    run_dir = cfg.run_dir()
    check_same_settings(run_dir, cfg)
    if (run_dir / MEASURED).is_file():
        print(f"[{row} seed {seed}] done already, skipped", file=sys.stderr)
        return json.loads((run_dir / MEASURED).read_text())
    if not ((run_dir / "summary.json").is_file() and (run_dir / "results.json").is_file()):
        resume = True if (run_dir / CHECKPOINT_NAME).is_file() else None
        print(f"[{row} seed {seed}] {'resuming' if resume else 'training'} in {run_dir}", file=sys.stderr)
        train(cfg, resume=resume)
    return None


def run_one(args: argparse.Namespace, row: str, seed: int, runs_dir: Path) -> dict[str, Any]:
    """Train (or resume, or skip) one (row, seed) and measure it; the measurement is cached in the run folder."""
    from vqsa.train.config import load_config
    from vqsa.utils.io import atomic_write_json

    ov = overrides(args, row, seed, runs_dir)
    cfg = load_config(ROOT / "configs" / ROWS[row][0], ov)
    run_dir = cfg.run_dir()
    done = train_or_skip(cfg, row, seed)
    if done is not None:
        return done
    result = {"row": row, "seed": seed, "config": ROWS[row][0], "overrides": ov, **measure(run_dir, cfg, args)}
    atomic_write_json(run_dir / MEASURED, result)
    return result


def _stats(values: list[float | None]) -> dict[str, float | int | None]:
    vals = [v for v in values if v is not None and math.isfinite(v)]
    if not vals:
        return {"mean": None, "std": None, "n": 0}
    return {"mean": float(np.mean(vals)), "std": float(np.std(vals, ddof=1)) if len(vals) > 1 else None,
            "n": len(vals)}


def aggregate(results: list[dict[str, Any]], rows: list[str]) -> dict[str, Any]:
    """Mean and sample std over seeds of every scalar and per-corruption error, per row."""
    table: dict[str, Any] = {}
    for row in rows:
        runs = [r for r in results if r["row"] == row]
        if not runs:
            continue
        corrs = list(dict.fromkeys(c for r in runs for c in r["per_corruption_err"]))
        table[row] = {
            "label": ROWS[row][1], "seeds": [r["seed"] for r in runs],
            **{k: _stats([r.get(k) for r in runs]) for k in SCALARS},
            "per_corruption_err": {c: _stats([r["per_corruption_err"].get(c) for r in runs]) for c in corrs},
        }
    return table


def _pm(s: dict[str, Any], digits: int = 2) -> str:
    if s["mean"] is None:
        return "-"
    return f"{s['mean']:.{digits}f}" + (f" +- {s['std']:.{digits}f}" if s["std"] is not None else "")


def markdown(table: dict[str, Any], meta: dict[str, Any]) -> str:
    """The results table, the cost table and the per-corruption errors as Markdown."""
    lines = [f"# Table 1 on CIFAR-10 ({meta['tag']})", "",
             f"Command: `{meta['command']}`  ", f"Hardware: {meta['hardware']}  ",
             f"Wall time: {meta['wall_time_s'] / 60:.1f} min for the runs done in this invocation; "
             f"started {meta['started']}, finished {meta['finished']}  ",
             *([f"Compute of all the runs in the table: {meta['compute_s'] / 60:.1f} min (training and evaluation, "
                "summed over runs, whenever they ran)  "] if meta.get("compute_s") else []),
             f"Scale: {meta['scale']}", "",
             "Mean +- sample std over the n seeds. Errors and accuracies in %, on the test subset, in the paper's "
             "Table 1 units (accuracy on clean images, error on the known corruptions); "
             "known = the 15 training corruptions (plain mean error, CIFAR-10-C convention), unknown = the 4 held "
             "out. Agreement: clean and corrupted (severity "
             f"{meta['agreement_severity']}, all 19) versions of a test image on the same code; chance = the "
             "agreement expected from code usage alone; kappa = (agreement - chance) / (1 - chance).", "",
             "| row | n | clean acc ↑ | known err ↓ | unknown acc ↑ | codes used | same code | chance | kappa |",
             "|---|---|---|---|---|---|---|---|---|"]
    for t in table.values():
        lines.append(f"| {t['label']} | {t['clean_acc']['n']} | {_pm(t['clean_acc'])} | {_pm(t['known_err'])} | "
                     f"{_pm(t['unknown_acc'])} | {_pm(t['codes_used'], 1)} | {_pm(t['agreement'], 1)} | "
                     f"{_pm(t['agreement_chance'], 1)} | {_pm(t['agreement_kappa'])} |")
    lines += ["", "Cost (Table 2's columns): parameters and FLOPs of one forward pass at 32 px "
              "(torch.utils.flop_counter, 1 multiply-add = 2 FLOPs), training throughput including data loading "
              "and on-the-fly corruption.", "",
              "| row | params (M) | GFLOPs | train img/s | train time (s) |", "|---|---|---|---|---|"]
    for t in table.values():
        lines.append(f"| {t['label']} | {_pm(t['params_m'], 3)} | {_pm(t['gflops'], 4)} | "
                     f"{_pm(t['train_img_s'], 0)} | {_pm(t['train_time_s'], 0)} |")
    return "\n".join(lines + per_corruption_lines(table)) + "\n"


def per_corruption_lines(table: dict[str, dict[str, Any]]) -> list[str]:
    """The Markdown table of error per corruption (rows) and study row (columns), mean +- std."""
    corrs = list(dict.fromkeys(c for t in table.values() for c in t["per_corruption_err"]))
    lines = ["", "Error per corruption (%, mean over the evaluated severities):", "",
             "| corruption | " + " | ".join(t["label"] for t in table.values()) + " |",
             "|---" * (len(table) + 1) + "|"]
    for c in corrs:
        cells = [_pm(t["per_corruption_err"][c], 1) if c in t["per_corruption_err"] else "-" for t in table.values()]
        lines.append(f"| {c} | " + " | ".join(cells) + " |")
    return lines


def plot(table: dict[str, Any], path: Path, title: str) -> None:
    """Per-corruption error bars (mean +- std over seeds) and clean / known / unknown summary bars, per row."""
    import matplotlib
    from matplotlib.figure import Figure

    from vqsa import metrics
    from vqsa.utils.io import atomic_save_figure

    rows = list(table.values())
    corrs = list(dict.fromkeys(c for t in rows for c in t["per_corruption_err"]))
    colours = matplotlib.colormaps["tab10"].colors
    fig = Figure(figsize=(max(9.0, 0.6 * len(corrs) + 4), 7.5))
    top, bottom = fig.subplots(2, 1, gridspec_kw={"height_ratios": [3, 2]})
    width = 0.8 / len(rows)
    x = np.arange(len(corrs))
    for i, t in enumerate(rows):
        stats = [t["per_corruption_err"].get(c, {"mean": None, "std": None}) for c in corrs]
        top.bar(x - 0.4 + width * (i + 0.5), [s["mean"] if s["mean"] is not None else np.nan for s in stats], width,
                yerr=[s["std"] or 0 for s in stats], color=colours[i % 10], label=t["label"], capsize=1.5)
    for j, c in enumerate(corrs):
        if c in metrics.UNKNOWN_CORRUPTIONS:
            top.axvspan(j - 0.5, j + 0.5, color="0.92", zorder=0)
    top.set_xticks(x, [c.replace("_", " ") for c in corrs], rotation=40, ha="right", fontsize=8)
    top.set_xlim(-0.5, len(corrs) - 0.5)
    top.set_ylabel("error (%)")
    top.set_title("error per corruption (shaded: held out in training)", fontsize=9)
    top.legend(fontsize=7, ncol=min(5, len(rows)))
    keys = [("clean_acc", "clean acc"), ("known_acc", "known acc"), ("unknown_acc", "unknown acc")]
    xs = np.arange(len(keys))
    for i, t in enumerate(rows):
        bottom.bar(xs - 0.4 + width * (i + 0.5), [t[k]["mean"] if t[k]["mean"] is not None else np.nan
                                                  for k, _ in keys],
                   width, yerr=[t[k]["std"] or 0 for k, _ in keys], color=colours[i % 10], capsize=2)
    bottom.set_xticks(xs, [name for _, name in keys])
    bottom.set_ylabel("accuracy (%)")
    bottom.set_title("accuracy on clean, known (15 training corruptions) and unknown (4 held out)", fontsize=9)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    atomic_save_figure(fig, path)


def hardware() -> str:
    from vqsa.utils.meta import machine

    import torch

    m = machine()
    gpu = m.get("gpu") or "no GPU"
    return f"{m['processor']}, {m['cpu_count']} CPU threads, {gpu}; torch threads {torch.get_num_threads()}"


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")  # vqsa.train's progress lines
    from vqsa.utils.io import atomic_write_json, atomic_write_text

    args.tag = args.tag or default_tag(args)
    out = Path(args.out) if args.out else ROOT / "docs" / "results" / f"table1_{args.tag}"
    runs_dir = out / "runs"
    started, t0 = datetime.datetime.now(datetime.timezone.utc), time.perf_counter()
    command = study_command(argv)
    results = [run_one(args, row, seed, runs_dir) for row in args.rows for seed in args.seeds]
    table = aggregate(results, args.rows)
    meta = {"tag": args.tag, **study_meta(args, command, started, t0)}
    atomic_write_json(out / "table1.json", {"meta": meta, "table": table, "runs": results})
    atomic_write_text(out / "table1.md", markdown(table, meta))
    plot(table, out / "table1.png", f"Table 1 on CIFAR-10, {args.tag}: mean +- std over seeds {args.seeds}")
    print(markdown(table, meta))
    print(f"wrote {out / 'table1.md'}, {out / 'table1.json'}, {out / 'table1.png'}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
