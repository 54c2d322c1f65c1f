"""Speed of the batched torch wet-edge map (vqsa.corruptions.batched.edges.wet_edges) against the OpenCV chain.

Input: ``--batch`` liquid layers made like ImageNet-C spatter makes them (severities 1, 2, 3 in turn), 8-bit. Prints
images/s of ``wet_edges`` on the whole batch and of the reference OpenCV chain one image at a time (same process,
``--threads`` torch and OpenCV threads), their ratio, the number of torch ops dispatched per call (launches on a
GPU) and of host synchronisations (hysteresis convergence tests), and checks that both outputs are identical.
Each figure is the median over timed calls after one warm-up call (CUDA: synchronised around each call).

    python benchmarks/wet_edges_speed.py                           # CPU, 1 thread, batch 64, 224 px
    python benchmarks/wet_edges_speed.py --device cuda --batch 256 --no-reference
"""
from __future__ import annotations

import argparse
import collections
import statistics
import time
from collections.abc import Callable

import cv2
import numpy as np
import torch
from torch.utils._python_dispatch import TorchDispatchMode

from vqsa.corruptions._params import get_params
from vqsa.corruptions._util import gaussian
from vqsa.corruptions.batched.edges import EDGE_KERNEL, wet_edges


def liquid_layers(n: int, size: int, seed: int = 0, profile: str = "imagenet") -> np.ndarray:
    """(n, size, size) uint8 liquid layers of spatter's water mode (severities 1, 2, 3 in turn), as the reference."""
    rng = np.random.default_rng(seed)
    out = np.empty((n, size, size), np.uint8)
    for i in range(n):
        loc, scale, sigma, threshold, _, _ = get_params("spatter", 1 + i % 3, profile)
        liquid = gaussian(rng.normal(loc, scale, (size, size)), sigma)
        liquid[liquid < threshold] = 0
        scaled = liquid * 255
        if scaled.max() >= 256:
            np.fmod(scaled, 256, out=scaled)
        out[i] = scaled.astype(np.uint8)
    return out


def opencv_chain(l8: np.ndarray) -> np.ndarray:
    """The reference's chain for one image (uint8 (H, W) -> float32 (H, W))."""
    dist = cv2.distanceTransform(255 - cv2.Canny(l8, 50, 150), cv2.DIST_L2, 5)
    _, dist = cv2.threshold(dist, 20, 20, cv2.THRESH_TRUNC)
    dist = cv2.equalizeHist(cv2.blur(dist, (3, 3)).astype(np.uint8))
    dist = cv2.filter2D(dist, cv2.CV_8U, np.array(EDGE_KERNEL))
    return cv2.blur(dist, (3, 3)).astype(np.float32)


class OpCounter(TorchDispatchMode):
    """Counts the aten ops dispatched inside the ``with`` block.

    ``syncs``: ops that read a value to the host. ``kernels``: ops other than views (each one a launch on a GPU).
    ``bytes``: the sizes of the tensors each kernel op reads and writes, summed (a rough memory-traffic figure).
    """

    SYNC_OPS = ("aten.equal", "aten._local_scalar_dense", "aten.is_nonzero", "aten.nonzero")
    VIEW_OPS = ("aten.slice", "aten.select", "aten.view", "aten.unsqueeze", "aten.squeeze", "aten.expand",
                "aten.alias", "aten.as_strided", "aten.t", "aten.transpose", "aten.permute", "aten._unsafe_view")

    def __init__(self) -> None:
        super().__init__()
        self.ops: collections.Counter[str] = collections.Counter()
        self.bytes = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        name = str(func.overloadpacket)
        self.ops[name] += 1
        out = func(*args, **(kwargs or {}))
        if name not in self.VIEW_OPS:
            leaves = torch.utils._pytree.tree_leaves((args, kwargs, out))
            self.bytes += sum(t.numel() * t.element_size() for t in leaves if isinstance(t, torch.Tensor))
        return out

    @property
    def syncs(self) -> int:
        return sum(c for name, c in self.ops.items() if name in self.SYNC_OPS)

    @property
    def kernels(self) -> int:
        return sum(c for name, c in self.ops.items() if name not in self.VIEW_OPS)


def median_seconds(fn: Callable[[], object], sync: Callable[[], None], min_calls: int = 3,
                   min_time: float = 2.0) -> float:
    fn()
    sync()
    times: list[float] = []
    while len(times) < min_calls or sum(times) < min_time:
        t0 = time.perf_counter()
        fn()
        sync()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--size", type=int, default=224)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--check-every", type=int, default=8)
    ap.add_argument("--no-reference", action="store_true", help="skip the OpenCV timing (still checks equality)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    cv2.setNumThreads(args.threads)
    device = torch.device(args.device)
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)

    layers = liquid_layers(args.batch, args.size)
    x = torch.from_numpy(layers).to(device)
    out = wet_edges(x, args.check_every)
    ref = np.stack([opencv_chain(l8) for l8 in layers])
    same = (out.cpu().numpy() == ref).mean()

    with OpCounter() as counter:
        wet_edges(x, args.check_every)
    t_torch = median_seconds(lambda: wet_edges(x, args.check_every), sync)
    print(f"device {device} threads {args.threads} batch {args.batch} size {args.size} check_every {args.check_every}")
    print(f"identical values: {same:.6f}")
    print(f"torch ops dispatched per call: {sum(counter.ops.values())} ({counter.kernels} not views), "
          f"host syncs per call: {counter.syncs}, tensor bytes touched: {counter.bytes / args.batch / 1e6:.1f} MB "
          "per image")
    print(f"  by op: {dict(counter.ops.most_common())}")
    print(f"wet_edges (torch): {args.batch / t_torch:10.1f} images/s  ({t_torch * 1e3:.2f} ms per batch)")
    if not args.no_reference:
        t_cv = median_seconds(lambda: [opencv_chain(l8) for l8 in layers], lambda: None)
        print(f"OpenCV chain     : {args.batch / t_cv:10.1f} images/s  ({t_cv / args.batch * 1e3:.3f} ms per image)")
        print(f"ratio torch / OpenCV: {t_cv / t_torch:.3f}")


if __name__ == "__main__":
    main()
