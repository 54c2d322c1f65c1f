"""Evaluation: clean / corrupted / ImageNet-R/A accuracy, mCE and paper-style reports.

``evaluate(model, dataset, ...) -> EvalResults``; ``EvalResults.save(dir)`` writes results.json / .csv / .md / .png;
``compare([...])`` puts several results side by side. See docs/evaluation.md.
"""
from .compare import comparability_warnings, compare, markdown_tables
from .datasets import DATASETS, build_plan, resolve_corruptions
from .model import Normalized, load_for_eval, with_normalization
from .results import CellCount, EvalResults
from .runner import evaluate

__all__ = [
    "DATASETS", "CellCount", "EvalResults", "Normalized", "build_plan", "comparability_warnings", "compare",
    "evaluate", "load_for_eval", "markdown_tables", "resolve_corruptions", "with_normalization",
]
