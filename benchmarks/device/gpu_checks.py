"""GPU fidelity checks of the batched corruption engine, run by run_gpu_bench.sh on the device machine.

Needs no data files: three scikit-image sample photos resized to 224 px (ImageNet profile). For every corruption:
deterministic ones -> fraction of values within 2 grey levels of the CPU engine (and max difference); stochastic
ones -> strength (mean |corrupted - clean|) per severity vs the CPU engine over ``--draws`` draws (JPEG, integer torch
ops on the GPU, must be identical: max 0). Also: CUDA generator reproducibility, GPU vs CPU batched output for the deterministic
ops, and a RandomCorruption forward on the GPU. Prints one line per check and writes everything as JSON.
"""
from __future__ import annotations

import argparse
import json
import time

import numpy as np
import torch
from PIL import Image
from skimage import data

from vqsa.corruptions import CORRUPTIONS, corrupt
from vqsa.corruptions.batched import RandomCorruption, corrupt_batch

DETERMINISTIC = {"defocus_blur", "zoom_blur", "brightness", "contrast", "pixelate", "jpeg_compression",
                 "gaussian_blur", "saturate"}


def _images(size: int) -> np.ndarray:
    photos = (data.astronaut(), data.coffee(), data.chelsea())
    out = []
    for p in photos:
        h, w = p.shape[:2]
        s = min(h, w)
        crop = p[(h - s) // 2:(h - s) // 2 + s, (w - s) // 2:(w - s) // 2 + s]
        out.append(np.array(Image.fromarray(crop).resize((size, size), Image.BILINEAR)))
    return np.stack(out)


def _nchw(a: np.ndarray, device: str) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(a)).permute(0, 3, 1, 2).contiguous().to(device)


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--size", type=int, default=224)
    p.add_argument("--draws", type=int, default=22, help="copies of the 3 photos per severity (stochastic checks)")
    p.add_argument("--device", default="cuda", help="cpu only to smoke-test this script")
    p.add_argument("--json", required=True)
    args = p.parse_args()
    dev = args.device
    imgs = _images(args.size)
    name = torch.cuda.get_device_name() if dev == "cuda" else "cpu"
    report: dict = {"device": name, "torch": torch.__version__, "checks": {}}
    for name in CORRUPTIONS:
        t0 = time.perf_counter()
        if name in DETERMINISTIC:
            row = {}
            for sev in range(1, 6):
                gpu = corrupt_batch(_nchw(imgs, dev), name, sev, profile="imagenet").permute(0, 2, 3, 1).cpu().numpy()
                cpu_batched = corrupt_batch(_nchw(imgs, "cpu"), name, sev, profile="imagenet").permute(0, 2, 3, 1)
                ref = np.stack([corrupt(im, sev, name, rng=0, profile="imagenet") for im in imgs])
                diff = np.abs(gpu.astype(int) - ref.astype(int))
                row[sev] = {"within2": float(np.mean(diff <= 2)), "max": int(diff.max()), "mean": float(diff.mean()),
                            "gpu_vs_cpu_batched_max": int(np.abs(gpu.astype(int) - cpu_batched.numpy()).max())}
            ok = all(r["within2"] >= 0.99 for r in row.values())
        else:
            tiled = np.tile(imgs, (args.draws, 1, 1, 1))
            sevs = [s for s in range(1, 6) for _ in range(len(tiled))]
            gpu = corrupt_batch(_nchw(np.tile(tiled, (5, 1, 1, 1)), dev), name, sevs, profile="imagenet",
                                generator=torch.Generator(device=dev).manual_seed(0))
            gpu = gpu.permute(0, 2, 3, 1).cpu().numpy().reshape(5, *tiled.shape).astype(np.float64)
            row = {}
            for sev in range(1, 6):
                ref = np.stack([corrupt(im, sev, name, rng=1000 * sev + i, profile="imagenet")
                                for i, im in enumerate(tiled)]).astype(np.float64)
                s_gpu, s_ref = np.abs(gpu[sev - 1] - tiled).mean(), np.abs(ref - tiled).mean()
                row[sev] = {"strength_gpu": s_gpu, "strength_cpu_engine": s_ref, "gap": s_gpu / s_ref - 1}
            ok = all(abs(r["gap"]) <= 0.05 for r in row.values())
        report["checks"][name] = {"ok": ok, "per_severity": row, "seconds": time.perf_counter() - t0}
        summary = ", ".join(f"{s}: {r.get('within2', r.get('gap')):.4f}" for s, r in row.items())
        print(f"{'OK  ' if ok else 'FAIL'} {name:18s} {'within2' if name in DETERMINISTIC else 'gap'} {summary}",
              flush=True)
    x = _nchw(imgs, dev)
    mixed = ["glass_blur", "frost", "motion_blur"]
    a = corrupt_batch(x, mixed, [2, 3, 5], generator=torch.Generator(device=dev).manual_seed(1))
    b = corrupt_batch(x, mixed, [2, 3, 5], generator=torch.Generator(device=dev).manual_seed(1))
    report["checks"]["cuda_generator_reproducible"] = {"ok": bool(torch.equal(a, b))}
    rc = RandomCorruption(seed=0).to(dev)
    y, (corr, sev) = rc(x, return_labels=True)
    report["checks"]["random_corruption_on_gpu"] = {"ok": y.device.type == dev and y.dtype == torch.uint8 and
                                                    corr.device.type == dev}
    for key in ("cuda_generator_reproducible", "random_corruption_on_gpu"):
        print(f"{'OK  ' if report['checks'][key]['ok'] else 'FAIL'} {key}")
    with open(args.json, "w") as f:
        json.dump(report, f, indent=1)


if __name__ == "__main__":
    main()
