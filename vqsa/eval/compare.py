"""Side-by-side tables of one or more evaluations, in the layout of the paper's Tables 3 and 4."""
from __future__ import annotations

import os
import warnings
from collections.abc import Sequence
from pathlib import Path

from vqsa.utils.io import atomic_write_text

from .plots import plot_corruption_accuracy
from .report import comparability_warnings, markdown_tables, unique_labels
from .results import EvalResults

__all__ = ["compare", "comparability_warnings", "markdown_tables", "unique_labels"]


def compare(
    paths_or_results: Sequence[str | os.PathLike | EvalResults],
    out_dir: str | os.PathLike | None = None,
    names: Sequence[str] | None = None,
) -> str:
    """Load several results, return the Markdown comparison; with ``out_dir`` also write compare.md and a grouped
    per-corruption bar chart compare.png. Differences that make the runs not directly comparable (example sets,
    sources, profiles, numbers of examples, severities, corruptions) are listed at the top of the Markdown and
    issued as ``UserWarning``s."""
    runs = [r if isinstance(r, EvalResults) else EvalResults.from_json(r) for r in paths_or_results]
    text = markdown_tables(runs, names)
    for caveat in comparability_warnings(runs, unique_labels(runs, names)):
        warnings.warn(f"results not directly comparable: {caveat}", stacklevel=2)
    if out_dir is not None:
        out = Path(out_dir)
        atomic_write_text(out / "compare.md", text)
        if any(r.cells for r in runs):
            plot_corruption_accuracy(runs, out / "compare.png", labels=unique_labels(runs, names))
    return text
