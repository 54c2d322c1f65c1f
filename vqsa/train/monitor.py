"""Codebook health during training: a warning when usage collapses, and the usage summary of a run.

The training loop logs, per epoch, the codebook usage of that epoch's training batches (``codebook_perplexity``,
``codebook_used`` = fraction of codes used, ``codebook_dead_codes``, ``codebook_restarts``). :func:`check_usage` looks
at the last epoch of that history and warns (:class:`CodebookCollapseWarning`, once per run) when usage is below the
thresholds; :func:`usage_summary` condenses the history for ``summary.json``. Both read only the logged history, so a
resumed run behaves as an uninterrupted one.
"""
from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any


class CodebookCollapseWarning(UserWarning):
    """Codebook usage fell below the monitor's thresholds: few codes carry all the features."""


@dataclass(frozen=True)
class UsageThresholds:
    """When usage counts as collapsed: fraction of codes used below ``min_fraction_used`` or perplexity below
    ``min_perplexity``, from the end of epoch ``start_epoch`` on.

    The perplexity threshold is capped at half the codebook size, so a small codebook used uniformly (perplexity =
    its size) is never flagged by construction.
    """

    min_fraction_used: float = 0.05
    min_perplexity: float = 10.0
    start_epoch: int = 1

    def __post_init__(self) -> None:
        if not 0 <= self.min_fraction_used <= 1:
            raise ValueError(f"min_fraction_used must lie in [0, 1], got {self.min_fraction_used!r}")
        if not self.min_perplexity >= 0:
            raise ValueError(f"min_perplexity must be >= 0, got {self.min_perplexity!r}")
        if isinstance(self.start_epoch, bool) or not isinstance(self.start_epoch, int) or self.start_epoch < 1:
            raise ValueError(f"start_epoch must be an int >= 1, got {self.start_epoch!r}")


def usage_problem(record: Mapping[str, Any], codebook_size: int,
                  thresholds: UsageThresholds = UsageThresholds()) -> str | None:
    """Why one epoch's usage counts as collapsed (a sentence), or None when it is healthy or not checked yet."""
    if isinstance(codebook_size, bool) or not isinstance(codebook_size, int) or codebook_size < 1:
        raise ValueError(f"codebook_size must be a positive int, got {codebook_size!r}")
    epoch = record.get("epoch")
    used, ppl = record.get("codebook_used"), record.get("codebook_perplexity")
    if used is None or ppl is None or epoch is None or epoch < thresholds.start_epoch:
        return None
    min_ppl = min(thresholds.min_perplexity, codebook_size / 2)
    reasons = []
    if used < thresholds.min_fraction_used:
        floor = 100 * thresholds.min_fraction_used
        reasons.append(f"{100 * used:.1f} % of the {codebook_size} codes used (< {floor:g} %)")
    if ppl < min_ppl:
        reasons.append(f"perplexity {ppl:.2f} (< {min_ppl:g})")
    return "; ".join(reasons) or None


def check_usage(history: Sequence[Mapping[str, Any]], codebook_size: int,
                thresholds: UsageThresholds = UsageThresholds()) -> str | None:
    """Check the last epoch of ``history``; warn (once per run: not if an earlier epoch was flagged already).

    Returns the problem found in the last epoch (None when healthy), whether or not it was warned about.
    """
    if not history:
        return None
    problem = usage_problem(history[-1], codebook_size, thresholds)
    if problem and not any(usage_problem(r, codebook_size, thresholds) for r in history[:-1]):
        warnings.warn(
            f"codebook collapse at epoch {history[-1]['epoch']}: {problem}. Few codes carry every feature, so the "
            "codebook adds little and clean/corrupted code agreement is trivial. Try codebook_preset: healthy "
            "(k-means init from features + dead-code restarts) or healthy_ema; see docs/codebook_health.md",
            CodebookCollapseWarning, stacklevel=2,
        )
    return problem


def usage_summary(history: Sequence[Mapping[str, Any]], codebook_size: int,
                  thresholds: UsageThresholds = UsageThresholds()) -> dict[str, Any]:
    """Usage over a run for its report: last epoch, minimum over the checked epochs, the epochs flagged."""
    logged = [r for r in history if r.get("codebook_perplexity") is not None]
    checked = [r for r in logged if r.get("epoch", 0) >= thresholds.start_epoch]
    last = logged[-1] if logged else {}
    return {
        "codebook_size": codebook_size,
        "final_perplexity": last.get("codebook_perplexity"),
        "final_fraction_used": last.get("codebook_used"),
        "final_dead_codes": last.get("codebook_dead_codes"),
        "restarted_codes": last.get("codebook_restarts"),
        "min_perplexity": min((r["codebook_perplexity"] for r in checked), default=None),
        "min_fraction_used": min((r["codebook_used"] for r in checked if r.get("codebook_used") is not None),
                                 default=None),
        "collapsed_epochs": [r["epoch"] for r in checked if usage_problem(r, codebook_size, thresholds)],
        "thresholds": asdict(thresholds),
    }
