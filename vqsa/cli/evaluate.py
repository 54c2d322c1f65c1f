"""``vqsa evaluate``: clean / corrupted / ImageNet-R/A evaluation of a checkpoint or a model zoo classifier.

Runs under ``torchrun`` unchanged (each rank evaluates a shard; counts are summed exactly). Writes results.json,
results.csv, results.md and results.png to ``--out`` and prints the Markdown tables.
"""
from __future__ import annotations

import argparse
import logging
from pathlib import Path

from vqsa.cli._args import positive_int
from vqsa.corruptions._params import PROFILE_CHOICES
from vqsa.eval.datasets import DATASETS
from vqsa.utils.meta import usable_cpus

logger = logging.getLogger(__name__)


def add_parser(subparsers: argparse._SubParsersAction, name: str, help_: str) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        name, help=help_, description=help_,
        epilog="examples:\n  vqsa evaluate --checkpoint runs/vqsa_c10 --dataset cifar10-c --data-root $VQSA_DATA\n"
               "  vqsa evaluate --model tv:resnet50 --pretrained --dataset imagenet-c --data-root /data --amp\n"
               "  torchrun --nproc_per_node 8 -m vqsa evaluate --checkpoint runs/r50 --dataset imagenet-c ...",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    g = p.add_argument_group("model (one of)")
    src = g.add_mutually_exclusive_group(required=True)
    src.add_argument("--checkpoint", help="run folder, model.safetensors or training checkpoint .pt")
    src.add_argument("--model", help="model name for vqsa.create_model(..., vq=False), e.g. tv:resnet50, resnet50; or "
                                     "a model that ships with vqsa (vqsa.list_models('*.*', source='vqsa', "
                                     "pretrained=True)), evaluated with its own weights")
    g.add_argument("--pretrained", nargs="?", const=True, default=False, metavar="FILE",
                   help="with --model: load its pretrained weights (torchvision / timm), or those of FILE (a weights "
                   "file of that network, .pth or .safetensors)")
    g.add_argument("--num-classes", type=int, default=None, help="with --model: classes (default: the dataset's)")
    d = p.add_argument_group("data")
    d.add_argument("--dataset", required=True, choices=DATASETS)
    d.add_argument("--data-root", default=None, help="data folder (default $VQSA_DATA)")
    d.add_argument("--corruptions", nargs="+", default=None,
                   help="names or groups (common, validation, all, noise, blur, weather, digital, none); "
                        "default: all 19 for -c datasets, none otherwise")
    d.add_argument("--severities", nargs="+", type=int, default=[1, 2, 3, 4, 5], metavar="S",
                   help="severities to evaluate, each in 1..5 (default: 1 2 3 4 5; mCE needs all five)")
    d.add_argument("--no-clean", dest="clean", action="store_false", help="skip the clean images")
    d.add_argument("--limit", type=positive_int, default=None, metavar="N",
                   help="same seeded random N images in every cell (a warning when the set has fewer)")
    d.add_argument("--first-n", type=positive_int, default=None, metavar="N",
                   help="evaluate the first N test images of every cell (RobustBench's convention; --limit draws a "
                        "seeded subset instead)")
    d.add_argument("--indices-from", default=None, metavar="RESULTS",
                   help="evaluate exactly the examples of an earlier results.json (or its folder), e.g. a training "
                        "run's own evaluation; fails when they are not in this dataset")
    d.add_argument("--on-the-fly", dest="on_the_fly", action="store_true", default=None,
                   help="corrupt the clean set in memory instead of reading released files")
    d.add_argument("--released-only", dest="on_the_fly", action="store_false",
                   help="fail when the released corrupted set is missing (default: fall back to on-the-fly)")
    d.add_argument("--seed", type=int, default=None,
                   help="seed of on-the-fly corruption and of --limit (default: that of --indices-from, else 0)")
    d.add_argument("--profile", default="auto", choices=PROFILE_CHOICES,
                   help="corruption parameter table for on-the-fly sets")
    d.add_argument("--jpeg-quality", type=int, default=None,
                   help="on-the-fly sets: JPEG round trip after corrupting (85 = the released ImageNet-C files)")
    d.add_argument("--allow-missing", action="store_true", help="skip missing released cells and report them")
    d.add_argument("--train-corruptions", nargs="+", default=None,
                   help="corruptions the model was trained on (default: read from the checkpoint's config)")
    r = p.add_argument_group("run")
    r.add_argument("--batch-size", type=int, default=128)
    workers = min(4, usable_cpus())
    r.add_argument("--workers", type=int, default=workers,
                   help=f"DataLoader workers per process (default: 4, or the usable CPUs if fewer; here {workers})")
    r.add_argument("--amp", action="store_true", help="bfloat16 autocast")
    r.add_argument("--device", default=None, help="cpu, cuda, cuda:1 (default: cuda when available)")
    r.add_argument("--out", default=None,
                   help="output folder (default: <run>/eval/<dataset> for a run folder, else eval/<name>-<dataset>)")
    r.add_argument("--robustbench", action="store_true",
                   help="also write RobustBench's model-info JSON and unaggregated-results row (corruptions "
                        "leaderboard layout) into the output folder")
    r.add_argument("--skip-bad", action="store_true",
                   help="exclude images that cannot be decoded (counted per cell, listed in results.json)")
    r.add_argument("--resume", action="store_true",
                   help="continue an interrupted evaluation from the progress saved in the output folder after "
                        "every cell (same model, data and settings)")
    r.add_argument("--no-progress", dest="progress", action="store_false")
    r.add_argument("--debug", action="store_true", help="show tracebacks")
    return p


def _build_model(args: argparse.Namespace):
    from vqsa.eval.model import load_for_eval

    if args.checkpoint:
        if args.pretrained or args.num_classes:
            raise ValueError("--pretrained and --num-classes apply to --model, not --checkpoint")
        return load_for_eval(args.checkpoint)
    from vqsa.models import create_model
    from vqsa.models.zoo import zoo_model

    shipped = zoo_model(args.model)
    if shipped is not None:  # a whole model that ships with vqsa: its own architecture and weights
        if args.num_classes or isinstance(args.pretrained, str):
            raise ValueError(f"{args.model} ships with its weights and classes: drop --num-classes / --pretrained FILE")
        model = create_model(args.model, pretrained=True)
        info = {"name": args.model, "architecture": shipped.model_config.get("name"), "pretrained": True,
                "label": args.model, "config": model.model_config, "sha256": shipped.sha256}
        return model, info, shipped.card.get("train_corruptions")
    num_classes = args.num_classes or (10 if args.dataset.startswith("cifar") else 1000)
    if not args.pretrained:
        logger.warning("vqsa evaluate: warning: --model without --pretrained evaluates random weights")
    model = create_model(args.model, num_classes=num_classes, pretrained=args.pretrained, vq=False)
    label = args.model.replace(":", "_")
    return model, {"name": args.model, "architecture": args.model, "pretrained": args.pretrained, "label": label,
                   "config": getattr(model, "model_config", None)}, None


def _default_out(args: argparse.Namespace, info: dict) -> Path:
    if args.checkpoint and Path(args.checkpoint).is_dir():
        return Path(args.checkpoint) / "eval" / args.dataset
    return Path("eval") / f"{info.get('label', 'model')}-{args.dataset}"


def _indices(args: argparse.Namespace):
    if args.first_n is not None and (args.indices_from or args.limit):
        raise ValueError("--first-n picks the examples itself: drop --limit / --indices-from")
    return list(range(args.first_n)) if args.first_n is not None else args.indices_from


def _write_robustbench(results, out: Path) -> dict[str, Path]:
    from vqsa.eval.robustbench import model_info, unaggregated_csv
    from vqsa.utils.io import atomic_write_json, atomic_write_text

    paths = {"robustbench_json": out / "robustbench_model_info.json",
             "robustbench_csv": out / "robustbench_unaggregated.csv"}
    atomic_write_json(paths["robustbench_json"], model_info(results))
    atomic_write_text(paths["robustbench_csv"], unaggregated_csv(results))
    return paths


def run(args: argparse.Namespace) -> int:
    import torch

    from vqsa.eval import evaluate
    from vqsa.eval.progress import clear_progress
    from vqsa.eval.runner import check_device
    from vqsa.utils import distributed as dist

    if args.device:
        check_device(args.device)  # before init_distributed or any model is moved: a clear error, not torch's
    device = dist.init_distributed()
    if args.device:
        device = torch.device(args.device)
    if args.robustbench:
        from vqsa.eval.datasets import resolve_corruptions
        from vqsa.eval.robustbench import check_request

        default = "all" if args.dataset.endswith("-c") else []
        check_request(args.dataset, resolve_corruptions(args.corruptions or default), args.severities, args.clean)
    try:
        model, info, train = _build_model(args)
        out = Path(args.out) if args.out else _default_out(args, info)
        results = evaluate(
            model.to(device), args.dataset, args.data_root, args.corruptions, args.severities, clean=args.clean,
            batch_size=args.batch_size, num_workers=args.workers, amp=args.amp, limit=args.limit,
            indices=_indices(args), on_the_fly=args.on_the_fly, seed=args.seed, profile=args.profile,
            jpeg_quality=args.jpeg_quality, allow_missing=args.allow_missing,
            device=device, train_corruptions=args.train_corruptions or train, model_info=info,
            progress=args.progress and not args.quiet, skip_bad=args.skip_bad, checkpoint_dir=out, resume=args.resume,
        )
        if dist.is_main_process():
            paths = results.save(out)
            if args.robustbench:
                paths.update(_write_robustbench(results, out))
            clear_progress(out)  # every rank saved its counts before the reduction: the results hold them now
            print(results.to_markdown())
            print("wrote " + ", ".join(str(p) for p in paths.values()))
        dist.barrier()
    finally:
        if dist.is_distributed():
            torch.distributed.destroy_process_group()
    return 0
