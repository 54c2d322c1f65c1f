"""How the pooled feature z and its code z_hat are combined (Table 1 of the paper)."""
from __future__ import annotations

import torch
from torch import nn

#: ``none``: z alone (no codebook: the fine-tuned baseline); ``replace``: z_hat (standard VQ); ``add``: z + z_hat;
#: ``concat``: the tokens (z_hat, z), flattened to 2d features unless the self-attention consumes them first.
FUSION_MODES = ("none", "replace", "add", "concat")


class Fusion(nn.Module):
    """Combine z and z_hat (both (B, d)) according to ``mode``.

    ``concat`` returns the token stack (B, 2, d) in the authors' order (z_hat, z); the other modes return (B, d).
    """

    def __init__(self, mode: str) -> None:
        super().__init__()
        if mode not in FUSION_MODES:
            raise ValueError(f"fusion must be one of {FUSION_MODES}, got {mode!r}")
        self.mode = mode

    def extra_repr(self) -> str:
        return f"mode={self.mode!r}"

    def out_features(self, dim: int) -> int:
        """Width of the flattened fused feature for a d-dimensional z."""
        return 2 * dim if self.mode == "concat" else dim

    def forward(self, z: torch.Tensor, z_hat: torch.Tensor | None) -> torch.Tensor:
        if self.mode == "none":
            return z
        if z_hat is None:
            raise ValueError(f"fusion {self.mode!r} needs the quantized feature z_hat")
        if self.mode == "replace":
            return z_hat
        if self.mode == "add":
            return z + z_hat
        return torch.stack((z_hat, z), dim=1)
