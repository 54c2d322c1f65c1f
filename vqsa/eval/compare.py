"""Side-by-side tables of one or more evaluations, in the layout of the paper's Tables 3 and 4."""
from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from vqsa import metrics

from .results import EvalResults


def _fmt(v: float | None) -> str:
    return "n/a" if v is None else f"{v:.2f}"


def _table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    align = "|" + "|".join("---" if i == 0 else "---:" for i in range(len(header))) + "|"
    lines = ["| " + " | ".join(header) + " |", align]
    return lines + ["| " + " | ".join(r) + " |" for r in rows]


def unique_labels(runs: Sequence[EvalResults], names: Sequence[str] | None = None) -> list[str]:
    """Row labels: ``names`` when given, else each run's model label, made unique with a #k suffix."""
    if names is not None:
        if len(names) != len(runs):
            raise ValueError(f"{len(names)} names for {len(runs)} results")
        return list(names)
    labels = [r.label() for r in runs]
    return [f"{lab} #{i + 1}" if labels.count(lab) > 1 else lab for i, lab in enumerate(labels)]


def markdown_tables(runs: Sequence[EvalResults], names: Sequence[str] | None = None) -> str:
    """Markdown: Table 3 (clean, known, unknown accuracy, mCE), Table 4 (the 4 held-out corruptions) and a
    per-corruption accuracy table (severities as columns for one run, runs as columns for several)."""
    if not runs:
        raise ValueError("nothing to compare: no results given")
    labels = unique_labels(runs, names)
    out = ["## Summary (Table 3 layout; top-1 accuracy and errors in %; known = the 15 common corruptions, "
           "unknown = the 4 held-out ones, over those evaluated)", ""]
    out += _table(
        ["model", "dataset", "clean acc", "known acc", "unknown acc", "mCE", "rel. mCE", "mean err"],
        [[lab, r.dataset, _fmt(r.clean_accuracy), _fmt(r.known_accuracy), _fmt(r.unknown_accuracy), _fmt(r.mce),
          _fmt(r.relative_mce), _fmt(r.mean_error)] for lab, r in zip(labels, runs)],
    )
    if any(c in r.eval_corruptions for r in runs for c in metrics.UNKNOWN_CORRUPTIONS):
        out += ["", "## Held-out corruptions (Table 4 layout; top-1 accuracy %)", ""]
        accs = [r.corruption_accuracy() for r in runs]
        out += _table(["model", *metrics.UNKNOWN_CORRUPTIONS],
                      [[lab, *(_fmt(a.get(c)) for c in metrics.UNKNOWN_CORRUPTIONS)] for lab, a in zip(labels, accs)])
    corrs = list(dict.fromkeys(c for r in runs for c in r.eval_corruptions))
    if corrs:
        out += ["", "## Per corruption (top-1 accuracy %, mean over severities; CE = AlexNet-normalised error)", ""]
        if len(runs) == 1:
            r = runs[0]
            errs, ce, sevs = r.errors(), r.ce(), r.severities
            rows = [[c, *(_fmt(None if s not in errs[c] else 100 * (1 - errs[c][s])) for s in sevs),
                     _fmt(r.corruption_accuracy()[c]), *([_fmt(ce.get(c))] if r.baseline else [])] for c in corrs]
            out += _table(["corruption", *(f"s{s}" for s in sevs), "mean", *(["CE"] if r.baseline else [])], rows)
        else:
            accs = [r.corruption_accuracy() for r in runs]
            out += _table(["corruption", *labels], [[c, *(_fmt(a.get(c)) for a in accs)] for c in corrs])
    out += ["", "## Notes", ""]
    for lab, r in zip(labels, runs):
        n = r.clean.total if r.clean else (r.cells[0].total if r.cells else 0)
        out.append(f"- **{lab}**: {r.dataset}, {r.source}; {n} examples per cell.")
        out += [f"  - {k}: {v}" for k, v in r.metric_notes().items()]
        if r.overlap:
            out.append(f"  - trained on evaluated corruptions: {', '.join(r.overlap)}")
        out += [f"  - skipped {s['corruption']}/{s['severity']}: {s['reason']}" for s in r.skipped]
        out += [f"  - {note}" for note in r.notes]
    return "\n".join(out) + "\n"


def compare(
    paths_or_results: Sequence[str | os.PathLike | EvalResults],
    out_dir: str | os.PathLike | None = None,
    names: Sequence[str] | None = None,
) -> str:
    """Load several results, return the Markdown comparison; with ``out_dir`` also write compare.md and a grouped
    per-corruption bar chart compare.png."""
    runs = [r if isinstance(r, EvalResults) else EvalResults.from_json(r) for r in paths_or_results]
    text = markdown_tables(runs, names)
    if out_dir is not None:
        from vqsa.utils.io import atomic_write_text

        from .plots import plot_corruption_accuracy

        out = Path(out_dir)
        atomic_write_text(out / "compare.md", text)
        if any(r.cells for r in runs):
            plot_corruption_accuracy(runs, out / "compare.png", labels=unique_labels(runs, names))
    return text
