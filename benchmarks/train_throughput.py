"""Training throughput with on-the-fly corruption vs the same loop on pre-corrupted input (goal: >= 0.9x).

Both runs use the real ``vqsa.train`` loop (DataLoader workers, uint8 crops, Eq. 10 loss, Adam): "on the fly" corrupts
each crop in the workers with the CPU engine (clean + 15 corruptions x 5 severities, stratified cycle); "pre-corrupted"
feeds images corrupted once beforehand with the same draw, through the same loop with the corruption step off.
Throughput is measured on the last epoch (the first warms up). Prints both figures and their ratio.

    python benchmarks/train_throughput.py --data-root $VQSA_DATA --images 2048 --workers 1
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data-root", default=None, help="CIFAR-10 folder (else $VQSA_DATA, else sklearn digits)")
    p.add_argument("--model", default="cifar_resnet20")
    p.add_argument("--codebook-size", type=int, default=128)
    p.add_argument("--images", type=int, default=2048)
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--workers", type=int, default=1)
    p.add_argument("--epochs", type=int, default=2, help="epochs per mode; the last one is measured")
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: CPU cores - workers, >= 1)")
    args = p.parse_args()

    import os

    import torch

    torch.set_num_threads(args.threads or max(1, (os.cpu_count() or 1) - args.workers))

    from vqsa.corruptions import corrupt
    from vqsa.data.cifar import ArrayDataset
    from vqsa.data.mixed import ArraySource, CorruptionSchedule
    from vqsa.demo import load_demo_data
    from vqsa.train.config import load_config
    from vqsa.train.data import TrainData, resolve_corruptions
    from vqsa.train.engine import Trainer

    train, _, note = load_demo_data(args.data_root, download=False)
    train = train.subset(args.images, seed=0)
    names = resolve_corruptions("common")
    print(f"data: {note}, {len(train)} images; model {args.model}; batch {args.batch_size}; workers {args.workers}; "
          f"torch threads {torch.get_num_threads()}", file=sys.stderr)

    # Pre-corrupt once with the draw the loop would make (epoch 0), so both runs see the same kind of pixels.
    schedule = CorruptionSchedule(names, seed=0)
    t = time.perf_counter()
    pre = train.images.copy()
    for i in range(len(train)):
        c, s = schedule.draw(0, i)
        if c >= 0:
            pre[i] = corrupt(train.images[i], s, names[c], rng=i, profile="cifar")
    corrupt_ms = 1000 * (time.perf_counter() - t) / len(train)
    pre_ds = ArrayDataset(pre, train.labels, train.classes, "pre-corrupted")

    def measure(ds: ArrayDataset, corruptions: str | list[str]) -> float:
        with tempfile.TemporaryDirectory() as tmp:
            cfg = load_config(None, {
                "output_dir": tmp, "name": "bench", "epochs": args.epochs, "batch_size": args.batch_size,
                "model.name": args.model, "model.codebook_size": args.codebook_size, "data.workers": args.workers,
                "corruption.corruptions": corruptions, "corruption.profile": "cifar", "eval.enabled": False,
                "eval.val_every": 0, "log_every": 10_000,
            })
            data = TrainData(ArraySource(ds), ArraySource(ds), ds.classes, 32, "cifar", None, ds.source)
            trainer = Trainer(cfg, data=data)
            trainer.fit()
            return trainer.logger.history[-1]["images_per_s"]

    onthefly = measure(train, "common")
    precorrupted = measure(pre_ds, [])
    print(f"CPU corruption cost: {corrupt_ms:.2f} ms/image (mean over the draw, one core)")
    print(f"on-the-fly corruption : {onthefly:8.1f} images/s")
    print(f"pre-corrupted input   : {precorrupted:8.1f} images/s")
    print(f"ratio                 : {onthefly / precorrupted:8.3f}x (goal >= 0.9)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
