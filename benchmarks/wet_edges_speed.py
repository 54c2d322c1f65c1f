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

import cv2
import numpy as np
import torch
from _timing import median_seconds

from vqsa.corruptions._params import get_params
from vqsa.corruptions._util import gaussian
from vqsa.corruptions.batched._opcount import count_ops
from vqsa.corruptions.batched.edges import wet_edges
from vqsa.corruptions.batched.weather import _wet_edges_one


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
    ref = np.stack([_wet_edges_one(l8) for l8 in layers])
    same = (out.cpu().numpy() == ref).mean()

    counted = count_ops(lambda: wet_edges(x, args.check_every))
    t_torch = median_seconds(lambda: wet_edges(x, args.check_every), sync, warmup=1)
    print(f"device {device} threads {args.threads} batch {args.batch} size {args.size} check_every {args.check_every}")
    print(f"identical values: {same:.6f}")
    print(f"torch ops dispatched per call (views excluded): {counted.ops}, host reads per call: {counted.reads}")
    print(f"  by op: {dict(counted.by_name.most_common())}")
    print(f"wet_edges (torch): {args.batch / t_torch:10.1f} images/s  ({t_torch * 1e3:.2f} ms per batch)")
    if not args.no_reference:
        t_cv = median_seconds(lambda: [_wet_edges_one(l8) for l8 in layers], lambda: None, warmup=1)
        print(f"OpenCV chain     : {args.batch / t_cv:10.1f} images/s  ({t_cv / args.batch * 1e3:.3f} ms per image)")
        print(f"ratio torch / OpenCV: {t_cv / t_torch:.3f}")


if __name__ == "__main__":
    main()
