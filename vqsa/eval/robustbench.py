"""Results in RobustBench's layout for the common-corruptions leaderboard: a model-info JSON (``clean_acc``,
``corruptions_acc`` as two-decimal strings) and a row of the per-corruption, per-severity accuracy table
(``unaggregated_results.csv``: fractions, corruptions in RobustBench's order, severities 1-5).

``corruptions_acc`` is RobustBench's definition: the mean accuracy over the 15 common corruptions x 5 severities.
RobustBench evaluates the *first* N test images of each cell; vqsa's ``--limit`` draws a seeded subset instead, so
the footnote states which examples were used (``vqsa evaluate --first-n N`` follows RobustBench's convention).
"""
from __future__ import annotations

import csv
import io
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from .report import examples_set_text, protocol_text

if TYPE_CHECKING:
    from .results import EvalResults

#: The column order of RobustBench's CIFAR-10 corruptions table.
ROBUSTBENCH_ORDER = ("shot_noise", "motion_blur", "snow", "pixelate", "gaussian_noise", "defocus_blur", "brightness",
                     "fog", "zoom_blur", "frost", "glass_blur", "impulse_noise", "contrast", "jpeg_compression",
                     "elastic_transform")
_DATASETS = {"cifar10-c": "cifar10", "imagenet-c": "imagenet"}


def check_request(dataset: str, corruptions: Sequence[str], severities: Sequence[int], clean: bool) -> None:
    """Refuse, before any image is evaluated, an evaluation that cannot give a RobustBench entry."""
    if dataset not in _DATASETS:
        raise ValueError(f"--robustbench: RobustBench's corruptions leaderboard covers {', '.join(_DATASETS)}, not "
                         f"{dataset}")
    missing = sorted(set(ROBUSTBENCH_ORDER) - set(corruptions)) + [f"severity {s}" for s in range(1, 6)
                                                                   if s not in set(severities)]
    if missing:
        raise ValueError(f"--robustbench needs the 15 common corruptions at severities 1-5; missing: "
                         f"{', '.join(missing[:5])}")
    if not clean:
        raise ValueError("--robustbench needs the clean accuracy: drop --no-clean")


def _cell_accuracies(results: EvalResults) -> dict[tuple[str, int], float]:
    if results.dataset not in _DATASETS:
        raise ValueError(f"RobustBench's corruptions leaderboard covers {', '.join(_DATASETS)}, not "
                         f"{results.dataset}")
    cells = {(c.corruption, c.severity): c.correct / c.total for c in results.cells}
    missing = [f"{c}/{s}" for c in ROBUSTBENCH_ORDER for s in range(1, 6) if (c, s) not in cells]
    if missing:
        raise ValueError(f"RobustBench's corruptions accuracy needs the 15 common corruptions at severities 1-5; "
                         f"{len(missing)} cell(s) missing (e.g. {', '.join(missing[:3])})")
    if results.clean is None:
        raise ValueError("RobustBench's entry needs the clean accuracy: evaluate with the clean images")
    return cells


def model_info(results: EvalResults, **fields: Any) -> dict[str, Any]:
    """RobustBench's model-info dict of ``results``; ``fields`` (``name``, ``link``, ``authors``, ``venue``,
    ``architecture``, ...) override the defaults taken from the results."""
    cells = _cell_accuracies(results)
    corruptions_acc = 100 * sum(cells[(c, s)] for c in ROBUSTBENCH_ORDER for s in range(1, 6)) / 75
    info: dict[str, Any] = {
        "link": "", "name": results.label(), "authors": "", "additional_data": False, "number_forward_passes": 1,
        "dataset": _DATASETS[results.dataset], "venue": "",
        "architecture": str(results.model.get("architecture") or results.model.get("name") or ""), "eps": None,
        "clean_acc": f"{results.clean_accuracy:.2f}", "reported": "", "corruptions_acc": f"{corruptions_acc:.2f}",
        "footnote": (f"vqsa evaluation: {examples_set_text(results.examples)}; {results.source}; protocol: "
                     f"{protocol_text(results)}"),
    }
    info.update(fields)
    return info


def unaggregated_csv(results: EvalResults, name: str | None = None) -> str:
    """RobustBench's ``unaggregated_results.csv`` layout (two header rows, then one row of fractions) for
    ``results``."""
    cells = _cell_accuracies(results)
    columns = [(c, s) for c in ROBUSTBENCH_ORDER for s in range(1, 6)]
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(["", *(c for c, _ in columns)])
    writer.writerow(["", *(s for _, s in columns)])
    writer.writerow([name or results.label(), *(f"{cells[k]:.4f}" for k in columns)])
    return buf.getvalue()

