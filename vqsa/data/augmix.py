"""AugMix (Hendrycks et al., 2020) as a seeded training augmentation, with torchvision's ``AugMix`` doing the work.

Each call draws its randomness from the sample's own generator (a seed from ``(seed, epoch, index)``), so a view
is the same whatever the worker, the process or a resume. ``all_ops=False`` by default, as the AugMix paper's
protocol: brightness, contrast, colour and sharpness overlap the ImageNet-C corruptions, so they are left out.
"""
from __future__ import annotations

import numpy as np
import torch


class AugMixTransform:
    """``transform(img, rng) -> img`` on uint8 HWC arrays: one AugMix view of ``img``.

    Args:
        severity: strength of the base operations, 1..10 (torchvision's default 3).
        width: augmentation chains mixed (``mixture_width``, default 3).
        depth: operations per chain, 1..3, or -1 for a random depth in 1..3 (default).
        alpha: Dirichlet and Beta parameter of the mixing weights (default 1).
        all_ops: also use brightness, contrast, colour and sharpness (default False, see the module docstring).
    """

    def __init__(self, severity: int = 3, width: int = 3, depth: int = -1, alpha: float = 1.0,
                 all_ops: bool = False) -> None:
        from torchvision.transforms import v2

        for name, value, ok in (("severity", severity, 1 <= severity <= 10), ("width", width, width >= 1),
                                ("depth", depth, depth == -1 or 1 <= depth <= 3)):
            if isinstance(value, bool) or not isinstance(value, int) or not ok:
                raise ValueError(f"augmix {name} must be an int in the documented range (severity 1..10, width >= 1, "
                                 f"depth -1 or 1..3), got {value!r}")
        if not alpha > 0:
            raise ValueError(f"augmix alpha must be > 0, got {alpha!r}")
        self.settings = {"severity": severity, "width": width, "depth": depth, "alpha": float(alpha),
                         "all_ops": bool(all_ops)}
        self._augmix = v2.AugMix(severity=severity, mixture_width=width, chain_depth=depth, alpha=float(alpha),
                                 all_ops=bool(all_ops))

    def __repr__(self) -> str:
        return "AugMixTransform(" + ", ".join(f"{k}={v}" for k, v in self.settings.items()) + ")"

    def __call__(self, img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        chw = torch.from_numpy(np.ascontiguousarray(img.transpose(2, 0, 1)))
        with torch.random.fork_rng(devices=[]):
            torch.default_generator.manual_seed(int(rng.integers(2**63 - 1)))  # the CPU generator only
            out = self._augmix(chw)
        return np.ascontiguousarray(out.numpy().transpose(1, 2, 0))
