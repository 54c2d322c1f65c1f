"""Self-attention over the two tokens (z_hat, z) of Eq. 8: ``z_sa = softmax(K Q^T / sqrt(2)) V``."""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


class TokenSelfAttention(nn.Module):
    """Single-head attention over a few d-dimensional tokens with learned d x d maps W_Q, W_K, W_V (no bias).

    As the authors: keys, queries and values are ``W x_t`` for each token x_t, W initialised kaiming-normal
    (fan-in d); each query attends over the keys with a softmax of ``q . k / sqrt(2)``, in training and in
    evaluation alike (the authors' test code drops the scale: a train/test mismatch we do not copy). The three maps
    are one (3d, d) weight ``qkv.weight`` = [W_Q; W_K; W_V], so the projection is a single matmul over all
    B x T tokens.

    Args:
        dim: token dimension d.
        scale: logit scale; default ``1 / sqrt(2)`` as Eq. 8 (two tokens).
    """

    def __init__(self, dim: int, scale: float | None = None) -> None:
        super().__init__()
        if isinstance(dim, bool) or not isinstance(dim, int) or dim < 1:
            raise ValueError(f"dim must be a positive int, got {dim!r}")
        self.dim = dim
        self.scale = 1.0 / math.sqrt(2.0) if scale is None else float(scale)
        self.qkv = nn.Linear(dim, 3 * dim, bias=False)
        for w in self.qkv.weight.data.chunk(3, dim=0):
            nn.init.kaiming_normal_(w)

    def extra_repr(self) -> str:
        return f"dim={self.dim}, scale={self.scale:.4f}"

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        """(B, T, d) -> (B, T, d)."""
        if isinstance(tokens, torch.Tensor) and (tokens.ndim != 3 or tokens.shape[-1] != self.dim):
            raise ValueError(f"expected tokens (B, T, {self.dim}), got shape {tuple(tokens.shape)}")
        q, k, v = F.linear(tokens, self.qkv.weight).chunk(3, dim=-1)
        attn = torch.softmax((q @ k.transpose(1, 2)) * self.scale, dim=-1)  # (B, T_query, T_key)
        return attn @ v
