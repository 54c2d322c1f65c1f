"""Noise corruptions, batched: gaussian, shot, impulse and speckle noise (same distributions as the CPU engine).

Each op maps a float32 batch (N, 3, H, W) in [0, 1] to float32 values in [0, 255] (before the uint8 truncation).
"""
from __future__ import annotations

import torch


def gaussian_noise(x: torch.Tensor, c: float, gen: torch.Generator | None, profile: str) -> torch.Tensor:
    """``x + N(0, c)`` per value, clipped."""
    noise = torch.randn(x.shape, generator=gen, device=x.device)
    return (x + noise * c).clamp_(0, 1).mul_(255)


def shot_noise(x: torch.Tensor, c: float, gen: torch.Generator | None, profile: str) -> torch.Tensor:
    """Poisson photon noise ``Poisson(x c) / c``, clipped."""
    return (torch.poisson(x * c, generator=gen) / c).clamp_(0, 1).mul_(255)


def impulse_noise(x: torch.Tensor, c: float, gen: torch.Generator | None, profile: str) -> torch.Tensor:
    """Salt and pepper per value: replaced with probability ``c``, by 0 or 1 with probability 1/2 each.

    One uniform ``u`` per value decides both: ``u < c/2`` pepper, ``c/2 <= u < c`` salt.
    """
    u = torch.rand(x.shape, generator=gen, device=x.device)
    out = torch.where(u < c, torch.ones_like(x), x)
    return torch.where(u < 0.5 * c, torch.zeros_like(x), out).mul_(255)


def speckle_noise(x: torch.Tensor, c: float, gen: torch.Generator | None, profile: str) -> torch.Tensor:
    """Multiplicative noise ``x + x N(0, c)``, clipped."""
    noise = torch.randn(x.shape, generator=gen, device=x.device)
    return (x + x * noise * c).clamp_(0, 1).mul_(255)


OPS = {
    "gaussian_noise": gaussian_noise,
    "shot_noise": shot_noise,
    "impulse_noise": impulse_noise,
    "speckle_noise": speckle_noise,
}
