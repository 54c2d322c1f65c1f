"""The codebook trains in anyone's training loop: a plain PyTorch loop, a 2-process DDP loop (gloo,
``find_unused_parameters=False``) and a ``torch.compile`` loop, each computing only ``cross_entropy(model(x), y)``.

Each loop trains the same VQSA ``cifar_resnet8`` (64 codes, k-means init from the first batch) on the same CIFAR-10
images and prints how far the codes moved and the codebook usage (perplexity, fraction of codes used) over the
last epoch; ``docs/models.md`` quotes the figures.

    python benchmarks/codebook_any_loop.py --data-root $VQSA_DATA
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time

import torch
import torch.nn.functional as F


def _data(root: str | None, n: int) -> tuple[torch.Tensor, torch.Tensor]:
    from vqsa.data.cifar import find_cifar10, load_cifar10
    from vqsa.data.paths import resolve_data_root

    train = load_cifar10(find_cifar10(resolve_data_root(root, required=True)), "train").subset(n, seed=0)
    return torch.from_numpy(train.images).permute(0, 3, 1, 2).float().div(255), torch.from_numpy(train.labels)


def _train(model, step_model, x, y, epochs: int, batch: int, rank: int = 0, world: int = 1) -> dict[str, float]:
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    start = model.vq.codebook.detach().clone()
    for epoch in range(epochs):
        model.vq.reset_usage()
        g = torch.Generator().manual_seed(epoch)
        order = torch.randperm(len(x), generator=g)[rank::world]
        for i in range(0, len(order), batch):
            idx = order[i : i + batch]
            loss = F.cross_entropy(step_model(x[idx]), y[idx])  # the logits alone: no aux_loss added here
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
    usage = model.vq.usage()
    moved = (model.vq.codebook.detach() - start).norm(dim=1)
    return {"codes_moved": int((moved > 0).sum()), "codebook_size": model.vq.codebook_size,
            "perplexity": float(usage.perplexity), "fraction_used": float(usage.fraction_used)}


def _model():
    import vqsa

    torch.manual_seed(0)
    return vqsa.create_model("cifar_resnet8", num_classes=10, codebook_size=64, init="kmeans")


def _ddp_worker(rank: int, world: int, init_file: str, out: str, root: str | None, n: int, epochs: int,
                batch: int) -> None:
    import torch.distributed as dist

    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world)
    torch.set_num_threads(1)
    try:
        x, y = _data(root, n)
        model = _model()
        ddp = torch.nn.parallel.DistributedDataParallel(model, find_unused_parameters=False)
        result = _train(model, ddp, x, y, epochs, batch // world, rank, world)
        ref = model.vq.codebook.detach().clone()
        dist.broadcast(ref, 0)
        result["codebooks_identical_across_ranks"] = bool(torch.equal(ref, model.vq.codebook.detach()))
        if rank == 0:
            with open(out, "w") as f:
                json.dump(result, f)
        del ddp
        dist.barrier()
    finally:
        dist.destroy_process_group()


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data-root", default=None)
    p.add_argument("--images", type=int, default=2048)
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--batch-size", type=int, default=128)
    args = p.parse_args()

    x, y = _data(args.data_root, args.images)
    results = {}
    t = time.perf_counter()
    model = _model()
    results["plain loop"] = _train(model, model, x, y, args.epochs, args.batch_size)
    model = _model()
    model.train()
    F.cross_entropy(model(x[:args.batch_size]), y[:args.batch_size]).backward()  # k-means init: one eager step
    model.zero_grad(set_to_none=True)
    compiled = torch.compile(model, fullgraph=True)
    results["torch.compile(fullgraph=True) loop"] = _train(model, compiled, x, y, args.epochs, args.batch_size)
    import torch.multiprocessing as mp

    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, "ddp.json")
        mp.spawn(_ddp_worker, args=(2, os.path.join(tmp, "init"), out, args.data_root, args.images, args.epochs,
                                    args.batch_size), nprocs=2, join=True)
        with open(out) as f:
            results["DDP loop (2 gloo processes, find_unused_parameters=False)"] = json.load(f)
    for name, r in results.items():
        print(f"{name:58s} codes moved {r['codes_moved']:3d}/{r['codebook_size']}, perplexity "
              f"{r['perplexity']:5.1f}, codes used {r['fraction_used']:.0%}"
              + (f", codebooks identical across ranks: {r['codebooks_identical_across_ranks']}"
                 if "codebooks_identical_across_ranks" in r else ""))
    print(f"({args.images} CIFAR-10 images x {args.epochs} epochs each, {time.perf_counter() - t:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
