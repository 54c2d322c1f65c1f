"""``vqsa demo``: fine-tuned baseline vs VQSA on a small budget, evaluated on clean / known / unknown corruptions."""
from __future__ import annotations

import argparse


def add_parser(subparsers, name: str, help_: str) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        name, help=help_,
        description="Train a corruption-fine-tuned baseline and a VQSA model (concat + SA) on the same small budget, "
        "evaluate both on clean, known and unknown corruptions and write a Markdown report with plots "
        "(about 5 minutes on 2 CPU cores; --quick: under a minute). Data: CIFAR-10 from --data-root / $VQSA_DATA, "
        "else downloaded when online, else scikit-learn's digits.",
    )
    p.add_argument("--out", default="runs/demo", help="output folder (default: runs/demo)")
    p.add_argument("--data-root", default=None, help="folder with cifar10/{train,test}.npz or cifar-10-batches-py")
    p.add_argument("--no-download", action="store_true", help="never try to download CIFAR-10")
    p.add_argument("--quick", action="store_true", help="a < 60 s smoke version (tiny model, data and evaluation)")
    p.add_argument("--codebook", choices=("healthy", "healthy_ema", "paper"), default="healthy",
                   help="VQSA codebook preset: healthy (k-means init from features + dead-code restarts, default), "
                   "healthy_ema, or paper (U(0, 3) init; collapses to a few codes at this scale)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--debug", action="store_true", help="show full tracebacks")
    return p


def run(args: argparse.Namespace) -> int:
    from vqsa.demo import run_demo

    run_demo(args.out, data_root=args.data_root, download=not args.no_download, quick=args.quick, seed=args.seed,
             codebook=args.codebook)
    return 0
