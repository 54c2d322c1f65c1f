"""``vqsa info``: parameters and FLOPs of a model, split into backbone / codebook / attention / head (Table 2).

    vqsa info tv:resnet50 --codebook-size 10000            the paper's model
    vqsa info tv:resnet50 --no-vq                          the plain backbone (Table 1 fine-tuning row)
    vqsa info cifar_resnet20 --num-classes 10 --input-size 32
    vqsa info runs/demo_vqsa                                a saved model (file or run folder)
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

from vqsa.cli._args import positive_int


def add_parser(subparsers: argparse._SubParsersAction, name: str, help_: str) -> argparse.ArgumentParser:
    p = subparsers.add_parser(name, help=help_, description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("model", help="backbone name (timm, tv:<torchvision>, cifar_resnet20, ...) or a saved model")
    p.add_argument("--num-classes", type=int, default=None, help="classifier outputs (default 1000)")
    p.add_argument("--codebook-size", type=positive_int, default=None, help="codes n (default 10000)")
    p.add_argument("--fusion", choices=("replace", "add", "concat"), default=None, help="default concat")
    p.add_argument("--no-attention", dest="attention", action="store_false", default=None,
                   help="drop the self-attention (concat row of Table 1)")
    p.add_argument("--no-vq", dest="vq", action="store_false", help="the backbone alone (fine-tuning row)")
    p.add_argument("--cifar-stem", action="store_true", default=None, help="3x3 stride-1 stem, no max-pool")
    p.add_argument("--input-size", type=positive_int, default=None,
                   help="image side for the FLOP count (default: the backbone's, 224 or 32)")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p.add_argument("--debug", action="store_true", help="show tracebacks")
    return p


def _build(args: argparse.Namespace):
    import vqsa

    if Path(args.model).exists():
        return vqsa.load_model(args.model)
    return vqsa.create_model(
        args.model,
        1000 if args.num_classes is None else args.num_classes,
        codebook_size=args.codebook_size,
        fusion=args.fusion,
        attention=args.attention,
        vq=args.vq,
        cifar_stem=args.cifar_stem,
    )


def run(args: argparse.Namespace) -> int:
    from vqsa.analysis import count_flops, count_params

    model = _build(args)
    side = args.input_size or model.pretrained_cfg["input_size"][-1]
    params = count_params(model, by="module")
    flops = count_flops(model, (1, 3, side, side))
    report = {"model": model.model_config, "input_size": [3, side, side], "params": params, "flops": flops,
              "macs": {k: v // 2 for k, v in flops.items()}}
    if args.json:
        print(json.dumps(report, indent=2))
        return 0
    cfg = model.model_config
    print(f"{cfg['name']}: " + ", ".join(f"{k}={v}" for k, v in cfg.items() if k != "name"))
    print(f"input 3x{side}x{side}; FLOPs counted by torch.utils.flop_counter (1 multiply-add = 2 FLOPs)\n")
    print(f"{'part':<10} {'params':>12} {'params (M)':>11} {'GFLOPs':>9} {'GMACs':>8}")
    for part in params:
        p, f = params[part], flops.get(part, 0)
        print(f"{part:<10} {p:>12,} {p / 1e6:>11.2f} {f / 1e9:>9.3f} {f / 2e9:>8.3f}")
    return 0
