"""What a healthy codebook buys: fine-tuning vs the paper-faithful VQSA vs VQSA with a healthy codebook, on CIFAR-10.

Rows (configs in configs/): ``finetune`` (no codebook), ``paper`` (concat + SA, uniform(0, 3) init, loss-updated
codebook: the paper's settings, which collapse), ``healthy`` (the same model with ``codebook_preset: healthy``:
k-means++ init on backbone features of a pass over the training data + dead-code restarts from recent features) and,
on request, ``healthy_ema`` (the same with EMA codebook updates). Training on clean + the 15 common corruptions of the corruption
engine (known), evaluation on clean + all 19 (the 4 held-out ones are unknown), CIFAR-10-C parameters (profile cifar).
Per run: clean / known / unknown error, codebook usage on the test images (codes used, perplexity, dead codes) and
during training (the run's usage summary: last-epoch perplexity, restarted codes, epochs flagged as collapsed), and
the clean/corrupted code agreement with its chance baseline and kappa. Mean +- std over seeds, with the exact
command, hardware, time and versions, in ``--out`` (default docs/results/codebook_study/).

The run, measurement and plotting machinery is benchmarks/reproduce_table1.py's (imported, not copied), with its
scale knobs and resume rules: a finished (row, seed) (its ``measured.json`` exists) is skipped, an interrupted run
resumes from its ``checkpoint_last.pt``, a run folder made with other settings is refused.

    # the study as configured (3 seeds x 3 rows; a GPU is advised)
    python benchmarks/codebook_study.py --data-root $VQSA_DATA --amp
    # add the EMA variant
    python benchmarks/codebook_study.py --data-root $VQSA_DATA --amp --rows finetune,paper,healthy,healthy_ema
    # smoke run on a CPU (minutes)
    python benchmarks/codebook_study.py --data-root $VQSA_DATA --out /tmp/cb_smoke --seeds 0 --epochs 1 \\
        --train-subset 256 --test-subset 64 --backbone cifar_resnet8 --severities 3 --agreement-images 64
"""
from __future__ import annotations

import argparse
import datetime
import importlib.util
import json
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
_spec = importlib.util.spec_from_file_location("reproduce_table1", Path(__file__).with_name("reproduce_table1.py"))
t1 = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(t1)

ROWS = {  # row id -> (config file, label)
    "finetune": ("cifar10_r18_finetune.yaml", "fine-tune (no codebook)"),
    "paper": ("cifar10_r18_concat_sa.yaml", "VQSA, paper codebook (uniform init)"),
    "healthy": ("cifar10_r18_concat_sa_healthy.yaml", "VQSA, healthy codebook (k-means + restarts)"),
    "healthy_ema": ("cifar10_r18_concat_sa_healthy_ema.yaml", "VQSA, healthy codebook, EMA updates"),
}
DEFAULT_ROWS = ("finetune", "paper", "healthy")
MEASURED = t1.MEASURED
# Scalars averaged over seeds, in table order.
SCALARS = ("clean_err", "known_err", "unknown_err", "clean_acc", "known_acc", "unknown_acc", "codes_used",
           "dead_codes", "perplexity", "agreement", "agreement_chance", "agreement_kappa", "train_perplexity",
           "train_fraction_used", "restarted_codes", "collapsed", "train_time_s")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    t1.add_study_arguments(p, ROWS, DEFAULT_ROWS, "docs/results/codebook_study",
                           "any other config override, applied to every row (codebook keys would break finetune: "
                           "run the codebook rows separately with --rows)")
    return t1.check_study_arguments(p, p.parse_args(argv), ROWS)


def overrides(args: argparse.Namespace, row: str, seed: int, runs_dir: Path) -> dict[str, Any]:
    """reproduce_table1's overrides; with one of vqsa's CIFAR backbones (no ``cifar_stem``) the row's other model
    kwargs (its codebook preset) are kept."""
    import yaml

    ov = t1.overrides(args, row, seed, runs_dir)
    if "model.kwargs" in ov and not any(k == "model.kwargs" for k, _ in args.set):
        kwargs = yaml.safe_load((ROOT / "configs" / ROWS[row][0]).read_text())["model"].get("kwargs") or {}
        ov["model.kwargs"] = {k: v for k, v in kwargs.items() if k != "cifar_stem"}
    return ov


def run_one(args: argparse.Namespace, row: str, seed: int, runs_dir: Path) -> dict[str, Any]:
    """Train (or resume, or skip) one (row, seed) and measure it; the measurement is cached in the run folder."""
    from vqsa.train.config import load_config
    from vqsa.utils.io import atomic_write_json

    ov = overrides(args, row, seed, runs_dir)
    cfg = load_config(ROOT / "configs" / ROWS[row][0], ov)
    run_dir = cfg.run_dir()
    done = t1.train_or_skip(cfg, row, seed)
    if done is not None:
        return done
    m = t1.measure(run_dir, cfg, args)
    result = {"row": row, "seed": seed, "config": ROWS[row][0], "overrides": ov, **m,
              "clean_err": None if m["clean_acc"] is None else 100.0 - m["clean_acc"]}
    usage = json.loads((run_dir / "summary.json").read_text()).get("codebook")
    if usage is not None:
        size = int(m["model_config"]["codebook_size"])
        result.update(dead_codes=size - m["codes_used"], train_perplexity=usage["final_perplexity"],
                      train_fraction_used=usage["final_fraction_used"], restarted_codes=usage["restarted_codes"],
                      collapsed=float(bool(usage["collapsed_epochs"])), training_usage=usage)
    atomic_write_json(run_dir / MEASURED, result)
    return result


def aggregate(results: list[dict[str, Any]], rows: list[str]) -> dict[str, Any]:
    """Mean and sample std over seeds of every scalar and per-corruption error, per row."""
    table: dict[str, Any] = {}
    for row in rows:
        runs = [r for r in results if r["row"] == row]
        corrs = list(dict.fromkeys(c for r in runs for c in r["per_corruption_err"]))
        table[row] = {
            "label": ROWS[row][1], "seeds": [r["seed"] for r in runs],
            **{k: t1._stats([r.get(k) for r in runs]) for k in SCALARS},
            "per_corruption_err": {c: t1._stats([r["per_corruption_err"].get(c) for r in runs]) for c in corrs},
        }
    return table


def markdown(table: dict[str, Any], meta: dict[str, Any]) -> str:
    """The results and codebook tables as Markdown."""
    pm = t1._pm
    lines = ["# Codebook study on CIFAR-10", "", f"Command: `{meta['command']}`  ", f"Hardware: {meta['hardware']}  ",
             f"Wall time: {meta['wall_time_s'] / 60:.1f} min for the runs done in this invocation; started "
             f"{meta['started']}, finished {meta['finished']}  ", f"Versions: {meta['versions']}  ",
             f"Scale: {meta['scale']}", "",
             "Mean +- sample std over the n seeds, errors in %, on the test subset. Known = the 15 training "
             "corruptions, unknown = the 4 held out (speckle noise, gaussian blur, spatter, saturate), CIFAR-10-C "
             "parameters.", "",
             "| row | n | clean err | known err | unknown err |", "|---|---|---|---|---|"]
    for t in table.values():
        lines.append(f"| {t['label']} | {t['clean_err']['n']} | {pm(t['clean_err'])} | {pm(t['known_err'])} | "
                     f"{pm(t['unknown_err'])} |")
    lines += ["", "Codebook. On the test images (clean + the 19 corruptions at severity "
              f"{meta['agreement_severity']}, {meta['agreement_images']} images): codes used, dead codes, "
              "perplexity; same code = clean and corrupted version on the same code, chance = that agreement "
              "expected from code usage alone, kappa = (same - chance) / (1 - chance). During training (last epoch's "
              "training batches): perplexity, fraction of codes used, codes restarted in all, and the share of seeds "
              "whose usage fell below the collapse thresholds (vqsa.train.monitor).", "",
              "| row | codes used | dead | perplexity | same code (%) | chance (%) | kappa | train perplexity "
              "| train used (%) | restarted | collapsed |", "|---|---|---|---|---|---|---|---|---|---|---|"]
    for t in table.values():
        if t["codes_used"]["mean"] is None:
            continue
        used = t["train_fraction_used"]
        used_pct = {**used, "mean": 100 * used["mean"] if used["mean"] is not None else None,
                    "std": 100 * used["std"] if used["std"] is not None else None}
        lines.append(f"| {t['label']} | {pm(t['codes_used'], 1)} | {pm(t['dead_codes'], 1)} | "
                     f"{pm(t['perplexity'], 1)} | {pm(t['agreement'], 1)} | {pm(t['agreement_chance'], 1)} | "
                     f"{pm(t['agreement_kappa'])} | {pm(t['train_perplexity'], 1)} | {pm(used_pct, 1)} | "
                     f"{pm(t['restarted_codes'], 0)} | {pm(t['collapsed'])} |")
    return "\n".join(lines + t1.per_corruption_lines(table)) + "\n"


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    from vqsa.utils.io import atomic_write_json, atomic_write_text

    out = Path(args.out) if args.out else ROOT / "docs" / "results" / "codebook_study"
    started, t0 = datetime.datetime.now(datetime.timezone.utc), time.perf_counter()
    command = t1.study_command(argv)
    results = [run_one(args, row, seed, out / "runs") for row in args.rows for seed in args.seeds]
    table = aggregate(results, args.rows)
    meta = t1.study_meta(args, command, started, t0)
    atomic_write_json(out / "codebook_study.json", {"meta": meta, "table": table, "runs": results})
    atomic_write_text(out / "codebook_study.md", markdown(table, meta))
    t1.plot(table, out / "codebook_study.png", f"Codebook study on CIFAR-10: mean +- std over seeds {args.seeds}")
    print(markdown(table, meta))
    print(f"wrote {out / 'codebook_study.md'}, {out / 'codebook_study.json'}, {out / 'codebook_study.png'}",
          file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
