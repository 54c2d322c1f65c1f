"""Noise corruptions, batched: gaussian, shot, impulse and speckle noise (same distributions as the CPU engine).

Every op has the signature ``op(x, sevs, table, gen, profile)``: ``x`` a float32 batch (N, 3, H, W) in [0, 1],
``sevs`` the per-sample severities (host list), ``table`` the 5 per-severity parameters of the profile; it returns
float32 values in [0, 255] (before the uint8 truncation).
"""
from __future__ import annotations

import torch

from ._ops import column, per_sample


def gaussian_noise(x: torch.Tensor, sevs: list[int], table: tuple, gen: torch.Generator | None,
                   profile: str) -> torch.Tensor:
    """``x + N(0, c)`` per value, clipped."""
    c = column(per_sample(table, sevs, x.device))
    return (x + torch.randn(x.shape, generator=gen, device=x.device) * c).clamp_(0, 1).mul_(255)


def shot_noise(x: torch.Tensor, sevs: list[int], table: tuple, gen: torch.Generator | None,
               profile: str) -> torch.Tensor:
    """Poisson photon noise ``Poisson(x c) / c``, clipped."""
    c = column(per_sample(table, sevs, x.device))
    return (torch.poisson(x * c, generator=gen) / c).clamp_(0, 1).mul_(255)


def impulse_noise(x: torch.Tensor, sevs: list[int], table: tuple, gen: torch.Generator | None,
                  profile: str) -> torch.Tensor:
    """Salt and pepper per value: replaced with probability ``c``, by 0 or 1 with probability 1/2 each.

    One uniform ``u`` per value decides both: ``u < c/2`` pepper, ``c/2 <= u < c`` salt.
    """
    c = column(per_sample(table, sevs, x.device))
    u = torch.rand(x.shape, generator=gen, device=x.device)
    out = torch.where(u < c, torch.ones_like(x), x)
    return torch.where(u < 0.5 * c, torch.zeros_like(x), out).mul_(255)


def speckle_noise(x: torch.Tensor, sevs: list[int], table: tuple, gen: torch.Generator | None,
                  profile: str) -> torch.Tensor:
    """Multiplicative noise ``x + x N(0, c)``, clipped."""
    c = column(per_sample(table, sevs, x.device))
    return (x + x * torch.randn(x.shape, generator=gen, device=x.device) * c).clamp_(0, 1).mul_(255)


OPS = {
    "gaussian_noise": gaussian_noise,
    "shot_noise": shot_noise,
    "impulse_noise": impulse_noise,
    "speckle_noise": speckle_noise,
}
