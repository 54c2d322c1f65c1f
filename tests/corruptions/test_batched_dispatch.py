"""The batched engine's launch overhead (dispatched ops per call) and the fused plasma fractal (no real data needed)."""
import numpy as np
import pytest
import torch

from vqsa.corruptions import CORRUPTIONS, SUBSETS
from vqsa.corruptions._params import PARAMS
from vqsa.corruptions.batched import corrupt_batch
from vqsa.corruptions.batched._api import OPS
from vqsa.corruptions.batched._opcount import count_ops
from vqsa.corruptions.batched.weather import plasma_fractal
from vqsa.corruptions.weather import plasma_fractal as cpu_plasma_fractal

# Measured 2026-11-28 (torch 2.14.1, CPU): 526 ops for the mix (1110 before the plasma / glass / grouping work),
# fog 51 (359), glass blur 115 (172). The bounds leave ~15 %.
MAX_OPS = {"mix": 600, "fog": 60, "glass_blur": 130}


class _Served:
    """A numpy-Generator stand-in whose ``uniform`` serves the given U(0, 1) values in order."""

    def __init__(self, u: np.ndarray):
        self.u, self.used = u, 0

    def uniform(self, low: float, high: float, shape: tuple) -> np.ndarray:
        k = int(np.prod(shape))
        v = self.u[self.used:self.used + k].reshape(shape)
        self.used += k
        return low + (high - low) * v


def test_plasma_fractal_equals_the_reference_diamond_square_for_the_same_draws():
    decay = torch.tensor([2.0, 1.4, 3.0], dtype=torch.float64)
    for mapsize in (2, 8, 64):
        got = plasma_fractal(decay, mapsize, torch.Generator().manual_seed(3))
        # the batched op draws all uniforms of a map at once, in the reference's order
        u = torch.rand((3, mapsize * mapsize - 1), generator=torch.Generator().manual_seed(3), dtype=torch.float64)
        for i in range(3):
            served = _Served(u[i].numpy())
            ref = cpu_plasma_fractal(mapsize, float(decay[i]), served)
            assert served.used == u.shape[1]
            np.testing.assert_allclose(got[i].numpy(), ref, rtol=0, atol=1e-6)


def _ops(images, names, sevs) -> int:
    gen = torch.Generator().manual_seed(0)
    corrupt_batch(images, names, sevs, generator=gen, profile="imagenet")  # warm-up: caches, textures
    return count_ops(lambda: corrupt_batch(images, names, sevs, generator=gen, profile="imagenet")).ops


def test_dispatched_ops_stay_bounded():
    """Per-sample or per-level Python loops must not creep back: the dispatched ops of a mixed batch of the 15 common
    corruptions x 5 severities, and of fog and glass blur, stay near their measured counts (ImageNet parameters at
    32 px: 256 x 256 plasma maps, glass-blur chains)."""
    names = [n for n in SUBSETS["common"] for _ in range(5)]
    sevs = [s for _ in SUBSETS["common"] for s in range(1, 6)]
    x = torch.randint(0, 256, (len(names), 3, 32, 32), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    ops = {"mix": _ops(x, names, sevs), "fog": _ops(x[:5], "fog", [1, 2, 3, 4, 5]),
           "glass_blur": _ops(x[:5], "glass_blur", [1, 2, 3, 4, 5])}
    assert all(ops[k] <= MAX_OPS[k] for k in ops), f"dispatched ops {ops}, bounds {MAX_OPS}"


@pytest.mark.parametrize("name", CORRUPTIONS)
def test_ops_read_nothing_back_from_the_device(name):
    """On meta tensors (shapes, no data) every read of device values by the host (``.item()``, ``torch.equal``,
    ``.cpu()``, ``nonzero``: a synchronisation on a GPU) raises. Only spatter's water mode (severities 1-3) reads
    back: its Canny hysteresis tests convergence every 8 steps (``edges.hysteresis``), so spatter runs its mud
    severities here."""
    sevs = [4, 5, 4, 5, 4] if name == "spatter" else [1, 2, 3, 4, 5]
    x = torch.empty((5, 3, 48, 48), device="meta")
    assert OPS[name](x, sevs, PARAMS["imagenet"][name], None, "imagenet").shape == x.shape
