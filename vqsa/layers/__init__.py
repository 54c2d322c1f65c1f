"""Backbone-agnostic building blocks of VQSA."""
from .attention import TokenSelfAttention
from .aux_loss import attach_aux_loss
from .fusion import FUSION_MODES, Fusion
from .normalize import InputNormalize
from .vq import CodebookUsage, LossBreakdown, VectorQuantizer, usage_from_counts

__all__ = [
    "FUSION_MODES",
    "CodebookUsage",
    "Fusion",
    "InputNormalize",
    "LossBreakdown",
    "TokenSelfAttention",
    "VectorQuantizer",
    "attach_aux_loss",
    "usage_from_counts",
]
