"""Fidelity of the deterministic CPU corruptions to imagecorruptions-imaug on real ImageNet images.

For each image (short side resized to 256, centre crop 224, as ImageNet-C) and severity 1-5, compares
``vqsa.corruptions.corrupt`` with ``imagecorruptions.corrupt`` value by value and prints, per corruption: the share of
all values that differ, the worst single image and severity, and the largest difference in grey levels.

    python benchmarks/corruptions_fidelity.py --data-root $VQSA_DATA --images 200
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
from PIL import Image

from vqsa.corruptions import corrupt
from vqsa.data.transforms import resize_center_crop

DETERMINISTIC = ("brightness", "saturate", "contrast", "pixelate", "jpeg_compression", "gaussian_blur",
                 "defocus_blur", "zoom_blur")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data-root", required=True, help="folder holding imagenet_sample/<wnid>/*.JPEG")
    p.add_argument("--images", type=int, default=200)
    p.add_argument("--slow-images", type=int, default=40, help="images for defocus and zoom blur (slow reference)")
    p.add_argument("--corruptions", nargs="+", default=list(DETERMINISTIC), choices=DETERMINISTIC)
    p.add_argument("--json", type=Path, help="also write the figures here")
    args = p.parse_args()
    from imagecorruptions import corrupt as reference  # test extra: pip install "vqsa[test]"

    paths = sorted((Path(args.data_root) / "imagenet_sample").rglob("*.JPEG"))
    if not paths:
        raise SystemExit(f"no *.JPEG under {Path(args.data_root) / 'imagenet_sample'}")
    images = []
    for path in paths[:args.images]:
        with Image.open(path) as im:
            images.append((path.name, resize_center_crop(np.asarray(im.convert("RGB")), 224)))
    print(f"{time.strftime('%Y-%m-%d')}, {len(images)} ImageNet sample images at 224 px, severities 1-5\n")
    print("| corruption | images | values differing | worst image (severity) | max difference |")
    print("|---|---:|---:|---|---:|")
    report = {}
    for name in args.corruptions:
        n = args.slow_images if name in ("defocus_blur", "zoom_blur") else args.images
        differing = total = worst_max = 0
        worst = (0.0, "-")
        for fname, img in images[:n]:
            for sev in range(1, 6):
                d = np.abs(corrupt(img, sev, name, rng=0, profile="imagenet").astype(np.int16)
                           - np.uint8(reference(img, corruption_name=name, severity=sev)).astype(np.int16))
                differing, total = differing + int(np.count_nonzero(d)), total + d.size
                if np.count_nonzero(d) / d.size > worst[0]:
                    worst = (float(np.count_nonzero(d)) / d.size, f"{fname} ({sev})")
                worst_max = max(worst_max, int(d.max()))
        report[name] = {"images": n, "share_differing": differing / total, "worst_share": worst[0],
                        "worst": worst[1], "max_difference": worst_max}
        print(f"| {name} | {n} | {100 * differing / total:.3f} % | {100 * worst[0]:.2f} % {worst[1]} | "
              f"{worst_max} |", flush=True)
    if args.json:
        args.json.write_text(json.dumps(report, indent=1) + "\n")


if __name__ == "__main__":
    main()
