"""``RandomCorruption``: the training-time (corruption, severity) draw applied to a batch on its device.

The grid is {identity} + corruptions, each with every severity (16 x 5 = 80 cells by default, the authors' scheme;
the same cells and labels as :class:`vqsa.data.mixed.CorruptionSchedule`). ``mode="stratified"`` deals the cells
without replacement across consecutive samples and batches and refills when the pool is empty, so every block of
one cycle covers each cell exactly once; ``mode="uniform"`` draws each sample's cell independently. All draws are
made on the host from the module's own generator (no device synchronisation) and are part of its ``state_dict``.
"""
from __future__ import annotations

import numbers
from collections.abc import Sequence

import torch
from torch import nn

from .._api import resolve_profile
from .._params import CORRUPTIONS, SUBSETS
from ._api import _SEED_MASK, _check_images, _name, corrupt_groups
from ._ops import to_device

CLEAN = -1
"""Corruption label of the identity (severity label 0), as in ``vqsa.data.mixed``."""


class RandomCorruption(nn.Module):
    """Corrupt each image of a batch with a (corruption, severity) cell of the training grid, on the batch's device.

    Args:
        corruptions: names or indices (default: the 15 common ImageNet-C corruptions), a subset name of
            ``get_corruption_names`` ("common", "validation", "all", "noise", ...), or one name or index.
        severities: severities in 1..5 used for every corruption (or one int).
        clean: include the identity as one more row of the grid (``len(severities)`` cells).
        mode: "stratified" (cycle without replacement) or "uniform" (independent draws).
        seed: seed of the draws and of the corruption noise; None draws one from torch's global generator.
        profile: parameter table, as :func:`corrupt_batch`.

    ``forward(images, return_labels=False)`` returns the corrupted batch (same shape, dtype and device) and, with
    ``return_labels=True``, also ``(corruption, severity)``: int64 tensors on the batch's device; ``corruption``
    indexes :attr:`corruptions` (``CLEAN`` = -1 for the identity, whose severity label is 0).
    """

    def __init__(self, corruptions: Sequence[str | int] | str = "common", severities: Sequence[int] = (1, 2, 3, 4, 5),
                 clean: bool = True, mode: str = "stratified", seed: int | None = None, profile: str = "auto") -> None:
        super().__init__()
        if isinstance(corruptions, str) and corruptions in SUBSETS:
            corruptions = SUBSETS[corruptions]
        elif isinstance(corruptions, (str, numbers.Integral)):
            if isinstance(corruptions, str) and corruptions not in CORRUPTIONS:
                raise ValueError(f"corruptions: {corruptions!r} is neither a subset ({', '.join(SUBSETS)}) nor a "
                                 "corruption name")
            corruptions = [corruptions]
        names = [_name(c, f"corruptions[{i}]") for i, c in enumerate(corruptions)]
        if any(n is None for n in names):
            raise ValueError("corruptions: list real corruptions only; use clean=True for the identity")
        if len(set(names)) != len(names):
            raise ValueError(f"corruptions listed twice: {names}")
        sevs = [severities] if isinstance(severities, numbers.Integral) else list(severities)
        if not sevs or any(not isinstance(s, numbers.Integral) or isinstance(s, bool) or not 1 <= s <= 5
                           for s in sevs) or len(set(sevs)) != len(sevs):
            raise ValueError(f"severities must be distinct ints in 1..5, got {severities!r}")
        if mode not in ("stratified", "uniform"):
            raise ValueError(f"mode must be 'stratified' or 'uniform', got {mode!r}")
        if seed is not None and (not isinstance(seed, numbers.Integral) or isinstance(seed, bool)
                                 or not 0 <= seed < 2**64):
            raise ValueError(f"seed must be None or an int in [0, 2**64), got {seed!r}")
        if profile != "auto":
            resolve_profile(profile, 224, 224)  # validates the name
        if not names and not clean:
            raise ValueError("nothing to draw: no corruptions and clean=False")
        self.corruptions: tuple[str, ...] = tuple(names)
        self.severities: tuple[int, ...] = tuple(int(s) for s in sevs)
        self.clean, self.mode, self.profile = bool(clean), mode, profile
        rows = ([CLEAN] if clean else []) + list(range(len(names)))
        self._grid = torch.tensor([(r, s) for r in rows for s in self.severities], dtype=torch.long)
        self._gen = torch.Generator()
        self._gen.manual_seed(int(torch.randint(0, _SEED_MASK, (1,)).item()) if seed is None else int(seed))
        self._pool = torch.empty(0, dtype=torch.long)

    @property
    def grid(self) -> torch.Tensor:
        """The (K, 2) cells ``(corruption index or CLEAN, severity)`` of one cycle, on the CPU."""
        return self._grid.clone()

    def extra_repr(self) -> str:
        return (f"corruptions={len(self.corruptions)}, severities={self.severities}, clean={self.clean}, "
                f"mode={self.mode!r}, profile={self.profile!r}")

    def draw(self, n: int) -> torch.Tensor:
        """The next ``n`` cells (row indices into :attr:`grid`, on the CPU), advancing the module's state."""
        k = len(self._grid)
        if self.mode == "uniform":
            return torch.randint(0, k, (n,), generator=self._gen)
        parts, need = [], n
        while need > 0:
            if not len(self._pool):
                self._pool = torch.randperm(k, generator=self._gen)
            take = self._pool[:need]
            self._pool = self._pool[need:]
            parts.append(take)
            need -= len(take)
        return torch.cat(parts) if parts else torch.empty(0, dtype=torch.long)

    def forward(self, images: torch.Tensor,
                return_labels: bool = False) -> torch.Tensor | tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor]]:
        """Corrupt ``images`` (B, 3, H, W) uint8 or float in [0, 1]; see the class docstring."""
        _check_images(images)
        cells = self._grid[self.draw(images.shape[0])]
        names = [None if r == CLEAN else self.corruptions[r] for r in cells[:, 0].tolist()]
        base = int(torch.randint(0, _SEED_MASK, (1,), generator=self._gen).item())
        out = corrupt_groups(images, names, cells[:, 1].tolist(), base, self.profile)
        if not return_labels:
            return out
        labels = to_device(cells, images.device)
        return out, (labels[:, 0], torch.where(labels[:, 0] == CLEAN, 0, labels[:, 1]))

    def get_extra_state(self) -> dict:
        """Draw state for ``state_dict``: the host generator and the rest of the current stratified pool."""
        return {"generator": self._gen.get_state(), "pool": self._pool.clone()}

    def set_extra_state(self, state: dict) -> None:
        """Restore the draw state saved by :meth:`get_extra_state`."""
        self._gen.set_state(state["generator"])
        self._pool = state["pool"].clone()
