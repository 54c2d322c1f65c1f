"""Model analysis. Submodules are imported lazily: ``count_params``/``count_flops`` do not pull in plotting."""
from __future__ import annotations

import importlib
from typing import Any

_LAZY = {
    "count_params": "vqsa.analysis.complexity",
    "count_flops": "vqsa.analysis.complexity",
    **dict.fromkeys(("analyze_tsne", "feature_metrics", "embed_tsne"), "vqsa.analysis.tsne"),
    **dict.fromkeys(("GradCAM", "analyze_gradcam", "overlay"), "vqsa.analysis.gradcam"),
    **dict.fromkeys(
        ("analyze_codebook", "code_agreement", "agreement_table", "usage_stats", "read_usage_history"),
        "vqsa.analysis.codebook",
    ),
    "extract_features": "vqsa.analysis.features",
}

__all__ = sorted(_LAZY)


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'vqsa.analysis' has no attribute {name!r}")
