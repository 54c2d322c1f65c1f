"""``vqsa compare``: several results.json side by side (Table 3 / Table 4 layout, grouped bars per corruption).

Results that differ in their example sets, corruption sources, profiles, numbers of examples, severities or
corruptions are flagged: a warning on stderr and a section at the top of the tables.
"""
from __future__ import annotations

import argparse
import logging
import warnings

logger = logging.getLogger(__name__)


def add_parser(subparsers: argparse._SubParsersAction, name: str, help_: str) -> argparse.ArgumentParser:
    p = subparsers.add_parser(name, help=help_, description=help_)
    p.add_argument("results", nargs="+", help="results.json files (or folders holding one)")
    p.add_argument("--names", nargs="+", default=None,
                   help="row labels, one per results file (default: the run name, else the model name)")
    p.add_argument("--out", default=None, help="folder for compare.md and compare.png")
    p.add_argument("--debug", action="store_true", help="show tracebacks")
    return p


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from vqsa.eval.compare import compare

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        text = compare(args.results, out_dir=args.out, names=args.names)
    for w in caught:
        if issubclass(w.category, UserWarning):
            logger.warning(f"vqsa compare: warning: {w.message}")
        else:
            warnings.showwarning(w.message, w.category, w.filename, w.lineno)
    print(text)
    if args.out:
        written = [str(p) for p in (Path(args.out) / "compare.md", Path(args.out) / "compare.png") if p.is_file()]
        print("wrote " + ", ".join(written))
    return 0
