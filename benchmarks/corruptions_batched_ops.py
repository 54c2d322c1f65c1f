"""Dispatched torch ops per call of the batched corruption engine (vqsa.corruptions.batched): a CPU proxy for its
launch overhead on a GPU.

In eager PyTorch each dispatched op costs a few microseconds of host time (a kernel launch on a GPU), and for the
small per-corruption groups of a mixed batch that, not the arithmetic, bounds the throughput. For each corruption
this counts the non-view aten ops of one steady-state ``corrupt_batch`` call on CPU tensors (``--batch`` images,
severities 1..5 in turn), then the same for a mixed batch of the 15 common corruptions x severities 1..5 (cells dealt
like ``RandomCorruption``'s stratified cycle). Columns:

* ops: every dispatched op except views (vqsa.corruptions.batched._opcount);
* host tensors: tensors made from host data; on an accelerator each is a host-to-device copy;
* reads: values read back to the host (``.item()``, ``torch.equal``, ``nonzero``); on an accelerator each waits for
  the device. One per row is the base seed drawn from the CPU generator (a host read; a CUDA generator's seed comes
  from its host-side state). Reads of CPU tensors that bypass the dispatcher (``.cpu()``, ``.numpy()``) are not
  seen: spatter's edge map (severities 1-3) is one more on an accelerator.

Counts do not depend on the image content, only on the sizes, the profile and the per-image cells (glass blur's
doubling rounds grow with log2 of the image area; JPEG on the CPU codes image by image).

    python benchmarks/corruptions_batched_ops.py                       # 64 px, ImageNet parameters
    python benchmarks/corruptions_batched_ops.py --size 224 --details fog,glass_blur --json ops.json
"""
from __future__ import annotations

import argparse
import json

import torch

from vqsa.corruptions import CORRUPTIONS, SUBSETS
from vqsa.corruptions.batched import RandomCorruption, corrupt_batch
from vqsa.corruptions.batched._opcount import OpCount, count_ops


def _count(x: torch.Tensor, names: object, sevs: list[int], profile: str) -> OpCount:
    gen = torch.Generator().manual_seed(0)
    corrupt_batch(x, names, sevs, generator=gen, profile=profile)  # warm-up: device caches, textures, matrices
    return count_ops(lambda: corrupt_batch(x, names, sevs, generator=gen, profile=profile))


def mixed_cells(batch: int) -> tuple[list[str], list[int]]:
    """The first ``batch`` cells of the stratified 15 common corruptions x severities 1..5 cycle (seed 0)."""
    rc = RandomCorruption(SUBSETS["common"], clean=False, seed=0)
    cells = rc.grid[rc.draw(batch)]
    return [rc.corruptions[c] for c in cells[:, 0].tolist()], cells[:, 1].tolist()


def run(args: argparse.Namespace) -> dict[str, OpCount]:
    names = CORRUPTIONS if args.corruptions == "all" else tuple(args.corruptions.split(","))
    g = torch.Generator().manual_seed(0)
    x = torch.randint(0, 256, (max(args.batch, args.mixed_batch), 3, args.size, args.size), dtype=torch.uint8,
                      generator=g)
    rows = {}
    for name in names:
        rows[name] = _count(x[:args.batch], name, [1 + i % 5 for i in range(args.batch)], args.profile)
    rows["mixed_common_15x5"] = _count(x[:args.mixed_batch], *mixed_cells(args.mixed_batch), args.profile)
    return rows


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--size", type=int, default=64, help="image side in pixels")
    p.add_argument("--batch", type=int, default=32, help="images per single-corruption call")
    p.add_argument("--mixed-batch", type=int, default=256, help="images of the mixed call")
    p.add_argument("--profile", default="imagenet", help="parameter table (default: ImageNet-C's at any size)")
    p.add_argument("--corruptions", default="all", help="'all' or a comma-separated list")
    p.add_argument("--details", default="", help="comma-separated rows whose ops are itemised ('mixed' for the mix)")
    p.add_argument("--json", help="write the counts (with per-op breakdowns) to this file")
    args = p.parse_args()
    torch.set_num_threads(1)
    rows = run(args)
    details = {"mixed_common_15x5" if d == "mixed" else d for d in args.details.split(",") if d}
    print(f"{args.size} px, profile {args.profile}, batch {args.batch} (mixed {args.mixed_batch}), torch "
          f"{torch.__version__}")
    print(f"{'corruption':20s} {'ops':>6s} {'host tensors':>13s} {'reads':>6s}")
    for name, c in rows.items():
        print(f"{name:20s} {c.ops:6d} {c.host_data:13d} {c.reads:6d}")
        if name in details:
            print("    " + ", ".join(f"{op} {k}" for op, k in c.by_name.most_common()))
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"size": args.size, "profile": args.profile, "batch": args.batch,
                       "mixed_batch": args.mixed_batch, "torch": torch.__version__,
                       "rows": {n: {"ops": c.ops, "host_tensors": c.host_data, "reads": c.reads,
                                    "by_name": dict(c.by_name)} for n, c in rows.items()}}, f, indent=1)


if __name__ == "__main__":
    main()
