"""Per-corruption accuracy bar charts like the paper's Fig. 4 (matplotlib Agg canvas, written atomically)."""
from __future__ import annotations

import os
from collections.abc import Sequence
from typing import TYPE_CHECKING

from vqsa import metrics
from vqsa.utils.io import atomic_save_figure

if TYPE_CHECKING:
    from .results import EvalResults


def plot_corruption_accuracy(
    runs: Sequence[EvalResults], path: str | os.PathLike, labels: Sequence[str] | None = None
) -> None:
    """Grouped bars of mean top-1 accuracy per corruption (one group per corruption, one bar per run), clean
    accuracy as dashed lines; held-out corruptions are shaded."""
    import matplotlib
    import numpy as np
    from matplotlib.figure import Figure  # no pyplot: no global backend state, Agg canvas for PNG

    if not runs:
        raise ValueError("no results to plot")
    labels = list(labels) if labels is not None else [r.label() for r in runs]
    corrs = list(dict.fromkeys(c for r in runs for c in r.eval_corruptions))
    accs = [r.corruption_accuracy() for r in runs]
    x = np.arange(len(corrs))
    width = 0.8 / len(runs)
    fig = Figure(figsize=(max(6.0, 0.55 * len(corrs) * max(1, len(runs) ** 0.5) + 2), 4.2))
    ax = fig.subplots()
    colors = matplotlib.colormaps["tab10"].colors
    for i, (lab, acc) in enumerate(zip(labels, accs)):
        vals = [acc.get(c, np.nan) for c in corrs]
        ax.bar(x - 0.4 + width * (i + 0.5), vals, width, label=lab, color=colors[i % len(colors)])
        if runs[i].clean_accuracy is not None:
            ax.axhline(runs[i].clean_accuracy, color=colors[i % len(colors)], ls="--", lw=1)
    for j, c in enumerate(corrs):
        if c in metrics.UNKNOWN_CORRUPTIONS:
            ax.axvspan(j - 0.5, j + 0.5, color="0.92", zorder=0)
    ax.set_xticks(x, [c.replace("_", " ") for c in corrs], rotation=45, ha="right")
    ax.set_ylabel("top-1 accuracy (%)")
    ax.set_ylim(0, 100)
    ax.set_xlim(-0.5, len(corrs) - 0.5)
    datasets = ", ".join(dict.fromkeys(r.dataset for r in runs))
    ax.set_title(f"{datasets}: accuracy per corruption (dashed: clean; shaded: held-out)", fontsize=10)
    ax.legend(fontsize=8, loc="best")
    fig.tight_layout()
    atomic_save_figure(fig, path)
