"""``EvalResults``: the exact counts of an evaluation, the metrics derived from them, and their files.

Only counts are stored as the source of truth (``correct`` / ``total`` per (corruption, severity) cell, plus clean);
every rate is recomputed from them, so a results file read back with :meth:`EvalResults.from_json` gives the same
numbers. Rates are in percent; ``results.json`` holds numbers as JSON numbers (never strings) and ``null`` where a
metric is undefined, with a note saying why.
"""
from __future__ import annotations

import csv
import io
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from vqsa import metrics
from vqsa.utils.io import atomic_write_json, atomic_write_text

from .plots import plot_corruption_accuracy
from .report import markdown_tables, summarize_cells

__all__ = ["CLEAN", "CellCount", "EvalResults", "is_run_folder", "summarize_cells"]

FORMAT = "vqsa-eval-results"
FORMAT_VERSION = 1
CLEAN = "clean"


@dataclass(frozen=True)
class CellCount:
    """Exact counts of one evaluated cell; ``corruption == "clean"`` and ``severity == 0`` for clean images."""

    corruption: str
    severity: int
    correct: int
    total: int

    @property
    def accuracy(self) -> float:
        return 100.0 * self.correct / self.total

    @property
    def error(self) -> float:
        return 100.0 - self.accuracy


@dataclass
class EvalResults:
    """Counts of one evaluation plus everything needed to interpret them.

    Attributes:
        dataset: the benchmark name (``cifar10-c``, ``imagenet-c``, ...).
        source: where the corrupted images come from (released files, or ``on-the-fly, seed S, profile P``).
        baseline: ``"alexnet"`` when mCE is AlexNet-normalised (ImageNet), None for the plain mean (CIFAR).
        clean: counts on clean images (None when not evaluated).
        cells: counts per (corruption, severity).
        skipped: cells not evaluated, with the reason (``--allow-missing``).
        model / data: descriptions recorded as given.
        train_corruptions: corruptions the model was trained on (None when unknown).
        notes: free-text remarks (e.g. why a metric is null).
        meta: versions, git SHA, machine, world size, settings.
    """

    dataset: str
    source: str
    baseline: str | None
    clean: CellCount | None
    cells: list[CellCount]
    skipped: list[dict[str, Any]] = field(default_factory=list)
    model: dict[str, Any] = field(default_factory=dict)
    data: dict[str, Any] = field(default_factory=dict)
    train_corruptions: list[str] | None = None
    notes: list[str] = field(default_factory=list)
    meta: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.baseline not in (None, "alexnet"):
            raise ValueError(f"baseline must be 'alexnet' or None, got {self.baseline!r}")
        seen = set()
        for c in self.cells + ([self.clean] if self.clean else []):
            if c.total <= 0 or not 0 <= c.correct <= c.total:
                raise ValueError(f"cell {c.corruption}/{c.severity}: correct={c.correct} total={c.total} is invalid")
            if (c.corruption, c.severity) in seen:
                raise ValueError(f"cell {c.corruption}/{c.severity} appears twice")
            seen.add((c.corruption, c.severity))

    # ---- derived metrics (percent) ------------------------------------------------------------------------------
    @property
    def eval_corruptions(self) -> list[str]:
        """Evaluated corruptions in evaluation order."""
        return list(dict.fromkeys(c.corruption for c in self.cells))

    @property
    def severities(self) -> list[int]:
        return sorted({c.severity for c in self.cells})

    @property
    def overlap(self) -> list[str]:
        """Evaluated corruptions the model was also trained on."""
        train = set(self.train_corruptions or ())
        return [c for c in self.eval_corruptions if c in train]

    def errors(self) -> dict[str, dict[int, float]]:
        """corruption -> {severity: error as a fraction} (the input form of :mod:`vqsa.metrics`)."""
        out: dict[str, dict[int, float]] = {}
        for c in self.cells:
            out.setdefault(c.corruption, {})[c.severity] = 1.0 - c.correct / c.total
        return out

    @property
    def clean_error(self) -> float | None:
        return self.clean.error if self.clean else None

    @property
    def clean_accuracy(self) -> float | None:
        return self.clean.accuracy if self.clean else None

    def corruption_accuracy(self) -> dict[str, float]:
        """Mean top-1 accuracy (%) over the evaluated severities of each corruption (the bars of the paper's Fig. 4)."""
        return {c: 100.0 * (1.0 - sum(e.values()) / len(e)) for c, e in self.errors().items()}

    def ce(self) -> dict[str, float]:
        """AlexNet-normalised CE (%) of each corruption evaluated at all 5 severities (empty without a baseline)."""
        if self.baseline is None:
            return {}
        full = self._full_corruptions()
        errs = self.errors()
        known = [c for c in full if c in metrics.ALEXNET_ERRORS]
        return metrics.corruption_errors({c: _by_severity(errs[c]) for c in known}, corruptions=known) if known else {}

    def _full_corruptions(self) -> list[str]:
        errs = self.errors()
        return [c for c in errs if sorted(errs[c]) == list(range(1, metrics.NUM_SEVERITIES + 1))]

    def _group_accuracy(self, group: tuple[str, ...] | list[str]) -> float | None:
        acc = self.corruption_accuracy()
        vals = [acc[c] for c in group if c in acc]
        return sum(vals) / len(vals) if vals else None

    @property
    def known_accuracy(self) -> float | None:
        """Mean accuracy over the evaluated ones of the 15 common corruptions (Table 3 "known")."""
        return self._group_accuracy(metrics.KNOWN_CORRUPTIONS)

    @property
    def unknown_accuracy(self) -> float | None:
        """Mean accuracy over the evaluated ones of the 4 held-out corruptions (Table 3 "unknown")."""
        return self._group_accuracy(metrics.UNKNOWN_CORRUPTIONS)

    @property
    def seen_accuracy(self) -> float | None:
        """Mean accuracy over evaluated corruptions that were in the training list (None if the list is unknown)."""
        return self._group_accuracy(self.overlap) if self.train_corruptions is not None else None

    @property
    def unseen_accuracy(self) -> float | None:
        """Mean accuracy over evaluated corruptions that were not in the training list."""
        if self.train_corruptions is None:
            return None
        return self._group_accuracy([c for c in self.eval_corruptions if c not in set(self.train_corruptions)])

    @property
    def unseen_mean_error(self) -> float | None:
        """Mean error (%) over evaluated corruptions that were not in the training list (None if it is unknown)."""
        acc = self.unseen_accuracy
        return None if acc is None else 100.0 - acc

    @property
    def unseen_mce(self) -> float | None:
        """Mean AlexNet-normalised CE (%) over the unseen ones of the corruptions that have a CE (ImageNet-C)."""
        if self.train_corruptions is None:
            return None
        ce = {c: v for c, v in self.ce().items() if c not in set(self.train_corruptions)}
        return sum(ce.values()) / len(ce) if ce else None

    @property
    def protocol(self) -> str:
        """Which protocol the numbers follow: ``unseen`` (no evaluated corruption was in training, as ImageNet-C's
        authors and RobustBench require), ``seen`` (some were, as in the paper's Table 1), or ``unknown``."""
        if self.train_corruptions is None:
            return "unknown"
        return "seen" if self.overlap else "unseen"

    def _mce_status(self) -> tuple[bool, str | None]:
        if not self.cells:
            return False, ("no corrupted images were evaluated (clean images only): mCE and corruption errors do "
                           "not apply")
        if self.baseline is None:
            if self.dataset.startswith("cifar"):
                return False, (f"{self.dataset} has no AlexNet baseline; the plain mean corruption error (mean_error) "
                               "is the metric (CIFAR-10-C convention)")
            return False, (f"{self.dataset} has no AlexNet baseline (AlexNet corruption errors are published for "
                           "ImageNet-C only); the plain mean corruption error (mean_error) is the metric")
        full = set(self._full_corruptions())
        missing = [c for c in metrics.KNOWN_CORRUPTIONS if c not in full]
        if missing:
            return False, ("mCE is only comparable over all 15 common corruptions at severities 1-5; "
                           f"{len(missing)} of 15 missing or incomplete: " + ", ".join(missing))
        return True, None

    @property
    def mce(self) -> float | None:
        ok, _ = self._mce_status()
        return metrics.mce(self._known_by_severity()) if ok else None

    @property
    def relative_mce(self) -> float | None:
        ok, _ = self._mce_status()
        if not ok or self.clean is None:
            return None
        return metrics.relative_mce(self._known_by_severity(), self.clean.error / 100.0)

    def _known_by_severity(self) -> dict[str, list[float]]:
        errs = self.errors()
        return {c: _by_severity(errs[c]) for c in metrics.KNOWN_CORRUPTIONS}

    @property
    def mean_error(self) -> float | None:
        """Plain mean error (%) over the evaluated common corruptions (all evaluated corruptions if none is common)."""
        names = self._mean_error_corruptions()
        if not names:
            return None
        return metrics.mean_error({c: _mean(e) for c, e in self.errors().items()}, names)

    def _mean_error_corruptions(self) -> list[str]:
        common = [c for c in self.eval_corruptions if c in metrics.KNOWN_CORRUPTIONS]
        return common or self.eval_corruptions

    def metric_notes(self) -> dict[str, str]:
        """Why each null or partial metric is what it is."""
        out = {}
        ok, why = self._mce_status()
        if not ok and why:
            out["mce"] = why
        if ok and self.clean is None:
            out["relative_mce"] = "relative mCE needs the clean error, which was not evaluated"
        names = self._mean_error_corruptions()
        complete = set(names) == set(metrics.KNOWN_CORRUPTIONS) and set(self._full_corruptions()) >= set(names)
        if names and not complete:
            which = "the 15 common corruptions" if set(names) == set(metrics.KNOWN_CORRUPTIONS) else (
                f"{len(names)} corruption(s) ({', '.join(names)})")
            out["mean_error"] = f"over {which} at severities {self.severities}, not the 15 x 5 of the standard protocol"
        return out

    def summary(self) -> dict[str, Any]:
        """The headline numbers (percent; None where undefined)."""
        return {
            "clean_error": self.clean_error, "clean_accuracy": self.clean_accuracy,
            "mce": self.mce, "relative_mce": self.relative_mce, "mean_error": self.mean_error,
            "known_accuracy": self.known_accuracy, "unknown_accuracy": self.unknown_accuracy,
            "seen_accuracy": self.seen_accuracy, "unseen_accuracy": self.unseen_accuracy,
            "unseen_mean_error": self.unseen_mean_error, "unseen_mce": self.unseen_mce, "protocol": self.protocol,
            "baseline": self.baseline, "notes": self.metric_notes(),
        }

    # ---- serialisation --------------------------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        """JSON-able dict: summary, per-corruption and per-cell tables, descriptions and metadata."""
        acc, ce = self.corruption_accuracy(), self.ce()
        errs = self.errors()
        n_cells = {c.total for c in self.cells}
        return {
            "format": FORMAT, "format_version": FORMAT_VERSION, "units": "percent (correct/total are counts)",
            "dataset": self.dataset, "source": self.source,
            "summary": self.summary(),
            "per_corruption": {
                c: {"accuracy": acc[c], "error": 100.0 - acc[c], "ce": ce.get(c), "severities": sorted(errs[c]),
                    "seen_in_training": None if self.train_corruptions is None else c in set(self.train_corruptions)}
                for c in self.eval_corruptions
            },
            "clean": _cell_dict(self.clean) if self.clean else None,
            "table": [_cell_dict(c) for c in self.cells],
            "n_examples": {
                "clean": self.clean.total if self.clean else 0,
                "per_cell": n_cells.pop() if len(n_cells) == 1 else None,
                "total": sum(c.total for c in self.cells) + (self.clean.total if self.clean else 0),
            },
            "eval_corruptions": self.eval_corruptions, "severities": self.severities,
            "train_corruptions": self.train_corruptions, "overlap": self.overlap if self.train_corruptions else [],
            "skipped": self.skipped, "model": self.model, "data": self.data, "notes": self.notes, "meta": self.meta,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> EvalResults:
        """Rebuild from :meth:`to_dict` output (metrics are recomputed from the counts)."""
        if not isinstance(d, dict) or d.get("format") != FORMAT:
            raise ValueError(f"not a vqsa evaluation results object (expected format {FORMAT!r})")
        if d.get("format_version", 0) > FORMAT_VERSION:
            raise ValueError(f"results format version {d['format_version']} is newer than this vqsa understands")
        try:
            cells = [CellCount(r["corruption"], int(r["severity"]), int(r["correct"]), int(r["total"]))
                     for r in d["table"]]
            clean = d.get("clean")
            return cls(
                dataset=d["dataset"], source=d["source"], baseline=d["summary"]["baseline"],
                clean=CellCount(CLEAN, 0, int(clean["correct"]), int(clean["total"])) if clean else None,
                cells=cells, skipped=list(d.get("skipped", [])), model=dict(d.get("model", {})),
                data=dict(d.get("data", {})), train_corruptions=d.get("train_corruptions"),
                notes=list(d.get("notes", [])), meta=dict(d.get("meta", {})),
            )
        except (KeyError, TypeError) as e:
            raise ValueError(f"malformed results object: {e!r}") from e

    @classmethod
    def from_json(cls, path: str | os.PathLike) -> EvalResults:
        """Read a ``results.json`` written by :meth:`save` (or its folder)."""
        path = Path(path)
        if path.is_dir():
            path = path / "results.json"
        try:
            data = json.loads(path.read_text())
        except FileNotFoundError:
            raise FileNotFoundError(f"results file {str(path)!r} does not exist") from None
        except json.JSONDecodeError as e:
            raise ValueError(f"{path}: not valid JSON: {e}") from e
        try:
            results = cls.from_dict(data)
        except ValueError as e:
            raise ValueError(f"{path}: {e}") from e
        if not results.model.get("label") and is_run_folder(path.parent):
            results.model["label"] = path.parent.resolve().name  # a training run's own results: its run name
        return results

    def to_csv(self) -> str:
        """One row per cell (clean first): corruption, severity, correct, total, error, accuracy."""
        buf = io.StringIO()
        w = csv.writer(buf, lineterminator="\n")
        w.writerow(["corruption", "severity", "correct", "total", "error", "accuracy"])
        for c in ([self.clean] if self.clean else []) + self.cells:
            w.writerow([c.corruption, c.severity, c.correct, c.total, f"{c.error:.4f}", f"{c.accuracy:.4f}"])
        return buf.getvalue()

    def label(self) -> str:
        """A short name for tables and legends: the run name when known, else the model name."""
        return str(self.model.get("label") or self.model.get("name") or "model")

    @property
    def examples(self) -> dict[str, Any] | None:
        """Which examples were evaluated (``data.examples``): ``n``, ``indices`` (None: all ``of_size`` items of
        ``of``), ``of`` (the set the indices index), ``of_size``, ``sha256`` (fingerprint of the example set,
        independent of order; None when unknown) and ``identity`` (what the fingerprint hashes)."""
        ex = self.data.get("examples")
        return ex if isinstance(ex, dict) else None

    def examples_text(self) -> str:
        """How many examples, e.g. ``200 examples per cell`` or ``10000 clean examples, 200 per corrupted cell``."""
        cell_ns = sorted({c.total for c in self.cells})
        per_cell = "/".join(map(str, cell_ns))
        if self.clean is None:
            return f"{per_cell} examples per cell"
        if not self.cells or cell_ns == [self.clean.total]:
            return f"{self.clean.total} examples per cell"
        return f"{self.clean.total} clean examples but {per_cell} per corrupted cell"

    def to_markdown(self) -> str:
        """Paper-style Markdown: Table 3 row, Table 4 row, and the per-corruption accuracy table."""
        return markdown_tables([self])

    def save(self, out_dir: str | os.PathLike, plot: bool = True) -> dict[str, Path]:
        """Write results.json, results.csv, results.md (and results.png) into ``out_dir`` atomically."""
        out = Path(out_dir)
        paths = {"json": out / "results.json", "csv": out / "results.csv", "md": out / "results.md"}
        atomic_write_json(paths["json"], self.to_dict())
        atomic_write_text(paths["csv"], self.to_csv())
        atomic_write_text(paths["md"], self.to_markdown())
        if plot and self.cells:
            paths["png"] = out / "results.png"
            plot_corruption_accuracy([self], paths["png"])
        return paths


def is_run_folder(path: Path) -> bool:
    """A ``vqsa train`` run folder (it holds config.yaml or summary.json)."""
    return (path / "config.yaml").is_file() or (path / "summary.json").is_file()


def _cell_dict(c: CellCount) -> dict[str, Any]:
    return {"corruption": c.corruption, "severity": c.severity, "correct": c.correct, "total": c.total,
            "error": c.error, "accuracy": c.accuracy}


def _by_severity(errs: dict[int, float]) -> list[float]:
    return [errs[s] for s in range(1, metrics.NUM_SEVERITIES + 1)]


def _mean(errs: dict[int, float]) -> float:
    return sum(errs.values()) / len(errs)
