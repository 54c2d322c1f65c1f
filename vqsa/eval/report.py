"""Markdown reports of evaluations: the paper's Table 3 and 4 layouts, per-corruption tables, notes, and the
reasons why several results may not be comparable. Reads :class:`~vqsa.eval.results.EvalResults` through its
attributes only, so results and reports do not import each other.
"""
from __future__ import annotations

import re
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from vqsa import metrics

if TYPE_CHECKING:
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


def examples_set_text(ex: dict[str, Any] | None) -> str:
    """Which examples a results record holds, e.g. ``all 10000 images of CIFAR-10 test, fingerprint ...``."""
    if not ex:
        return "not recorded"
    of = f" of {ex.get('of')}" if ex.get("of") else ""
    size = ex.get("of_size")
    how = f"all {size}" if ex.get("indices") is None and ex.get("n") == size else f"{ex.get('n')}" + (
        f" of the {size}" if size else "")
    sha = ex.get("sha256")
    return f"{how} images{of}" + (f", fingerprint {sha[:12]}" if sha else "")


def protocol_text(r: EvalResults) -> str:
    """The training protocol of a result in words: which evaluated corruptions it saw in training."""
    if r.protocol == "unknown":
        return "unknown (the corruptions seen in training were not recorded)"
    if r.protocol == "unseen":
        trained = f"trained on {len(r.train_corruptions)} corruption(s), none evaluated here" if r.train_corruptions \
            else "trained without corruptions"
        return f"every evaluated corruption unseen in training ({trained})"
    unseen = [c for c in r.eval_corruptions if c not in set(r.overlap)]
    return (f"{len(r.overlap)} evaluated corruption(s) seen in training ({', '.join(r.overlap)}); unseen: "
            + (", ".join(unseen) or "none"))


def comparability_warnings(runs: Sequence[EvalResults], labels: Sequence[str] | None = None) -> list[str]:
    """Why several results may not be comparable: different example sets (fingerprints), corruption sources,
    profiles, numbers of examples, severities or corruptions. Empty when nothing differs (or for a single run)."""
    if len(runs) < 2:
        return []
    labels = list(labels) if labels is not None else unique_labels(runs)
    out: list[str] = []

    def show(values: Sequence[Any]) -> str:
        return "; ".join(f"{lab}: {v}" for lab, v in zip(labels, values))

    examples = [r.examples for r in runs]
    prints = [ex.get("sha256") if ex else None for ex in examples]
    if len({p for p in prints if p}) > 1:
        out.append("computed on different example sets (their fingerprints differ): "
                   + show([examples_set_text(ex) for ex in examples]))
    unknown = [lab for lab, p in zip(labels, prints) if not p]
    if unknown:
        out.append(f"cannot check that the example sets are the same: {', '.join(unknown)} record(s) no example "
                   "fingerprint (results written by an older vqsa, or without a clean set)")
    sources = [re.sub(r", profile [^,;]+", "", r.source) for r in runs]
    if len(set(sources)) > 1:
        out.append("different sources of corrupted images: " + show([r.source for r in runs]))
    otf = [(lab, r.data.get("profile")) for lab, r in zip(labels, runs) if r.cells and r.data.get("on_the_fly")]
    if len({p for _, p in otf}) > 1:
        out.append("different corruption profiles: " + "; ".join(f"{lab}: {p}" for lab, p in otf))
    clean_n = [r.clean.total if r.clean else None for r in runs]
    cell_n = [tuple(sorted({c.total for c in r.cells})) for r in runs]
    if len(set(clean_n)) > 1 or len({n for n in cell_n if n}) > 1:
        out.append("different numbers of examples: " + show([r.examples_text() for r in runs]))
    trained = [None if r.train_corruptions is None else tuple(sorted(r.train_corruptions)) for r in runs]
    if len(set(trained)) > 1:
        out.append("different training protocols (the corruptions seen in training differ, so seen and unseen "
                   "numbers are mixed): " + show([protocol_text(r) for r in runs]))
    sevs = [tuple(r.severities) for r in runs if r.cells]
    if len(set(sevs)) > 1:
        out.append("different severities: " + show([", ".join(map(str, r.severities)) or "none" for r in runs]))
    corrs = [tuple(sorted(r.eval_corruptions)) for r in runs]
    if len(set(corrs)) > 1:
        out.append("different corruptions evaluated (averages are over different sets): "
                   + show([f"{len(r.eval_corruptions)} corruption(s)" for r in runs]))
    return out


def markdown_tables(runs: Sequence[EvalResults], names: Sequence[str] | None = None) -> str:
    """Markdown: Table 3 (clean, known, unknown accuracy, mCE), Table 4 (the 4 held-out corruptions) and a
    per-corruption accuracy table (severities as columns for one run, runs as columns for several)."""
    if not runs:
        raise ValueError("nothing to compare: no results given")
    labels = unique_labels(runs, names)
    out: list[str] = []
    caveats = comparability_warnings(runs, labels)
    if caveats:
        out += ["## Comparability warnings", ""]
        out += [f"- {w}" for w in caveats] + [""]
    out += [("## Summary (Table 3 layout; top-1 accuracy and errors in %; known = the 15 common corruptions, "
             "unknown = the 4 held-out ones, over those evaluated)"), ""]
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
        with_ce = len(runs) == 1 and runs[0].baseline is not None
        out += ["", "## Per corruption (top-1 accuracy %, mean over severities"
                + ("; CE = AlexNet-normalised corruption error)" if with_ce else ")"), ""]
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
        arch = r.model.get("architecture")
        model = f" ({arch})" if arch and arch != lab else ""
        out.append(f"- **{lab}**{model}: {r.dataset}, {r.source}; {r.examples_text()}.")
        out.append(f"  - protocol: {protocol_text(r)}")
        if r.examples:
            out.append(f"  - examples: {examples_set_text(r.examples)}")
        out += [f"  - {k}: {v}" for k, v in r.metric_notes().items()]
        if len(r.skipped) <= 5:
            out += [f"  - skipped {s['corruption']}/{s['severity']}: {s['reason']}" for s in r.skipped]
        else:
            out += [f"  - skipped {len(r.skipped)} cells of {line}" if i == 0 else f"    {line}"
                    for i, line in enumerate(summarize_cells(r.skipped, max_lines=0))]
        out += [f"  - {note}" for note in r.notes]
    return "\n".join(out) + "\n"


def _severity_text(sevs: list[int]) -> str:
    if len(sevs) == 1:
        return f"severity {sevs[0]}"
    if sevs == list(range(sevs[0], sevs[-1] + 1)):
        return f"severities {sevs[0]}-{sevs[-1]}"
    return "severities " + ", ".join(map(str, sevs))


def summarize_cells(cells: list[dict[str, Any]], max_lines: int = 5) -> list[str]:
    """Short lines describing skipped / missing cells (dicts with corruption, severity, reason): their distinct
    reasons when there are at most ``max_lines``, else one line grouping the cells by corruption and an example."""
    reasons = list(dict.fromkeys(str(c.get("reason", "")) for c in cells))
    if len(reasons) <= max_lines:
        return reasons
    by_corruption: dict[str, list[int]] = {}
    for c in cells:
        by_corruption.setdefault(str(c["corruption"]), []).append(int(c["severity"]))
    groups: dict[tuple[int, ...], list[str]] = {}
    for name, sevs in by_corruption.items():
        groups.setdefault(tuple(sorted(set(sevs))), []).append(name)
    parts = [f"{_severity_text(list(sevs))} of {', '.join(names)}" for sevs, names in groups.items()]
    return [f"{len(by_corruption)} corruption(s), " + "; ".join(parts),
            f"e.g. {reasons[0]} (and {len(reasons) - 1} more like it)"]
