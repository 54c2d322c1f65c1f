"""Frost, batched: the reference's frost textures as device tensors, one random crop per image.

The textures come from the CPU engine's cached loader (:mod:`vqsa.corruptions._frost`: resized by the profile's
``FROST_SCALE``, enlarged only for images bigger than them); here they are zero-padded to a common size and stacked
once per (profile, texture sizes, device), so a batch picks its textures and crop offsets on the device with one
gather and no host synchronisation.
"""
from __future__ import annotations

import torch

from .._frost import FROST_FILES, frost_texture
from .._params import FROST_SCALE
from ._ops import per_sample_columns

_STACKS: dict[tuple, tuple[torch.Tensor, torch.Tensor]] = {}
_STACKS_MAX = 8


def texture_stack(profile: str, height: int, width: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """The 5 frost textures for ``height x width`` crops as one zero-padded (5, 3, Hmax, Wmax) uint8 RGB tensor on
    ``device``, with their (5, 2) sizes. Cached per (profile, texture sizes, device)."""
    textures = [frost_texture(i, FROST_SCALE[profile], height, width) for i in range(len(FROST_FILES))]
    host = [(int(t.shape[0]), int(t.shape[1])) for t in textures]
    key = (profile, tuple(host), str(device))
    if key not in _STACKS:
        if len(_STACKS) >= _STACKS_MAX:
            _STACKS.clear()
        stack = torch.zeros((len(textures), 3, max(h for h, _ in host), max(w for _, w in host)), dtype=torch.uint8)
        for i, t in enumerate(textures):
            stack[i, :, :t.shape[0], :t.shape[1]] = torch.from_numpy(t.copy()).permute(2, 0, 1)
        _STACKS[key] = (stack.to(device), torch.tensor(host, device=device))
    return _STACKS[key]


def frost(x: torch.Tensor, sevs: list[int], table: tuple, gen: torch.Generator | None,
          profile: str) -> torch.Tensor:
    """``clip(c0 * x + c1 * crop)`` in 0..255 units, crop of a uniformly chosen texture at a uniform offset."""
    n, _, h, w = x.shape
    stack, sizes = texture_stack(profile, h, w, x.device)
    u = torch.rand((n, 3), generator=gen, device=x.device)
    k = (u[:, 0] * len(sizes)).long()
    top = (u[:, 1] * (sizes[k, 0] - h)).long()  # randint(0, fh - h): exclusive upper bound
    left = (u[:, 2] * (sizes[k, 1] - w)).long()
    rows = top[:, None] + torch.arange(h, device=x.device)
    cols = left[:, None] + torch.arange(w, device=x.device)
    crop = stack[k[:, None, None, None], torch.arange(3, device=x.device)[None, :, None, None],
                 rows[:, None, :, None], cols[:, None, None, :]]
    image_weight, frost_weight = per_sample_columns(table, (0, 1), sevs, x.device)
    return (image_weight * torch.floor(x * 255 + 0.5) + frost_weight * crop.float()).clamp_(0, 255)


OPS = {"frost": frost}
