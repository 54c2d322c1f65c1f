"""``vqsa compare``: several results.json side by side (Table 3 / Table 4 layout, grouped bars per corruption)."""
from __future__ import annotations

import argparse


def add_parser(subparsers: argparse._SubParsersAction, name: str, help: str) -> argparse.ArgumentParser:
    p = subparsers.add_parser(name, help=help, description=help)
    p.add_argument("results", nargs="+", help="results.json files (or folders holding one)")
    p.add_argument("--names", nargs="+", default=None, help="row labels, one per results file")
    p.add_argument("--out", default=None, help="folder for compare.md and compare.png")
    p.add_argument("--debug", action="store_true", help="show tracebacks")
    return p


def run(args: argparse.Namespace) -> int:
    from vqsa.eval.compare import compare

    from pathlib import Path

    print(compare(args.results, out_dir=args.out, names=args.names))
    if args.out:
        written = [str(p) for p in (Path(args.out) / "compare.md", Path(args.out) / "compare.png") if p.is_file()]
        print("wrote " + ", ".join(written))
    return 0
