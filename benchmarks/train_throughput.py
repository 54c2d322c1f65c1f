"""Training throughput of ``vqsa train`` against the network's best synthetic-input step rate (goal: >= 0.8x).

Both figures come from this process, one after the other, on all the cores torch may use:

- *synthetic*: the bare training step (forward with ``return_aux``, CE + aux loss, backward, Adam step) on one
  random batch kept in memory, in float32 and under bfloat16 autocast; the faster one is the reference;
- *vqsa train*: the real loop with its default (auto) settings on CIFAR-10 images, every image corrupted on the
  fly (the 15 common corruptions x severities 1-5, ``clean_fraction: 0``), timed over the last epoch.

    python benchmarks/train_throughput.py --data-root $VQSA_DATA
    python benchmarks/train_throughput.py --data-root $VQSA_DATA --model cifar_airnet --vq
"""
from __future__ import annotations

import argparse
import json
import logging
import sys
import tempfile
import time


def synthetic_rate(model_name: str, vq: bool, batch: int, precision: str, steps: int) -> float:
    """Images/s of the bare training step on a fixed random batch (best of ``steps`` after two warm-up steps)."""
    import torch
    import torch.nn.functional as F

    from vqsa.models import create_model

    torch.manual_seed(0)
    kwargs = {"codebook_size": 128} if vq else {}
    model = create_model(model_name, num_classes=10, vq=vq, **kwargs).to(memory_format=torch.channels_last)
    model.check_inputs = False
    model.train()
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    x = torch.rand(batch, 3, 32, 32).contiguous(memory_format=torch.channels_last)
    y = torch.randint(0, 10, (batch,))
    dtype = torch.bfloat16 if precision == "bfloat16" else None
    best = float("inf")
    for i in range(steps + 2):
        t = time.perf_counter()
        with torch.autocast("cpu", dtype=dtype, enabled=dtype is not None):
            out = model(x, return_aux=True)
            loss = F.cross_entropy(out.logits.float(), y) + out.aux_loss.float()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if i >= 2:
            best = min(best, time.perf_counter() - t)
    return batch / best


def loop_rate(args: argparse.Namespace) -> tuple[float, dict]:
    """Images/s of ``vqsa train`` (last epoch) with every image corrupted on the fly, and its compute plan."""
    from vqsa.train.config import load_config
    from vqsa.train.engine import Trainer

    with tempfile.TemporaryDirectory() as tmp:
        overrides = {
            "output_dir": tmp, "name": "bench", "epochs": args.epochs, "batch_size": args.batch_size,
            "model.name": args.model, "model.vq": args.vq, "data.dataset": "cifar10", "data.root": args.data_root,
            "data.train_subset": args.images, "data.val_subset": 500, "corruption.corruptions": "common",
            "corruption.clean_fraction": 0.0, "corruption.profile": "cifar", "eval.enabled": False,
            "eval.val_every": 0, "log_every": 10_000,
        }
        if args.vq:
            overrides["model.codebook_size"] = 128
        trainer = Trainer(load_config(None, overrides))
        trainer.fit()
        return trainer.logger.history[-1]["images_per_s"], trainer.plan.to_dict()


def main() -> int:
    logging.basicConfig(level=logging.INFO, format="%(message)s")  # vqsa.train's progress lines
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data-root", default=None, help="folder holding CIFAR-10 (else $VQSA_DATA)")
    p.add_argument("--model", default="cifar_resnet20")
    p.add_argument("--vq", action="store_true", help="VQSA (concat + SA, 128 codes) instead of the plain network")
    p.add_argument("--images", type=int, default=8192, help="training images per epoch")
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument("--epochs", type=int, default=2, help="epochs of the real loop; the last one is timed")
    p.add_argument("--steps", type=int, default=8, help="timed synthetic steps per precision")
    p.add_argument("--json", default=None, help="also write the figures to this JSON file")
    args = p.parse_args()

    import torch

    from vqsa.utils.meta import machine, usable_cpus, versions

    torch.set_num_threads(usable_cpus())
    synthetic = {prec: synthetic_rate(args.model, args.vq, args.batch_size, prec, args.steps)
                 for prec in ("float32", "bfloat16")}
    best = max(synthetic, key=synthetic.get)
    real, plan = loop_rate(args)
    ratio = real / synthetic[best]
    what = f"{args.model}" + (" + VQSA" if args.vq else "")
    print(f"{what}, batch {args.batch_size}, {torch.get_num_threads()} threads")
    for prec, rate in synthetic.items():
        print(f"synthetic step, {prec:9s}: {rate:8.1f} images/s")
    print(f"vqsa train, every image corrupted on the fly: {real:8.1f} images/s ({plan['precision']}, "
          f"{plan['threads']} threads, {plan['workers']} workers, corruptions on {plan['corrupt_on']})")
    print(f"ratio to the best synthetic rate ({best}): {ratio:.3f} (goal >= 0.8)")
    if args.json:
        record = {"model": what, "batch_size": args.batch_size, "images": args.images, "synthetic": synthetic,
                  "train_loop": real, "ratio": ratio, "plan": plan, "versions": versions(), "machine": machine()}
        with open(args.json, "w") as f:
            json.dump(record, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
