"""``vqsa train -c CONFIG.yaml [--key value ...]``: train on clean + corrupted images; torchrun-ready.

Any config key can be overridden with ``--key value`` (top level: ``--epochs 3``) or ``--section.key value``
(``--model.codebook_size 1000``); values are YAML (``--corruption.corruptions [contrast, fog]``), a boolean key alone
means true (``--amp``). Short spellings: --data-root, --download, --skip-bad, --workers, --corrupt-on, --lr.
Multi-GPU / multi-node: ``torchrun --nproc_per_node=N -m vqsa train -c CONFIG.yaml``.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from vqsa.train.config import ALIASES, TrainConfig, flatten, load_config, to_yaml, valid_keys


def add_parser(subparsers, name: str, help_: str) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        name, help=help_, description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter,
        usage="vqsa train [-c CONFIG] [--resume [CHECKPOINT]] [--print-config] [--KEY VALUE ...]", allow_abbrev=False,
    )
    p.add_argument("-c", "--config", help="YAML config (defaults for every key not given)")
    p.add_argument("--resume", nargs="?", const=True, default=None, metavar="CHECKPOINT",
                   help="continue a killed run: its checkpoint_last.pt, or the given checkpoint / run folder; "
                   "without -c the checkpoint's own config is used")
    p.add_argument("--print-config", action="store_true", help="print the resolved config and exit")
    p.add_argument("--debug", action="store_true", help="show full tracebacks")
    keys = p.add_argument_group("config keys (YAML values; a boolean key alone means true)")
    bool_keys = {k for k, v in _flat_defaults().items() if isinstance(v, bool)}
    aliases: dict[str, list[str]] = {}
    for short, key in ALIASES.items():
        aliases.setdefault(key, []).append(short)
    for key in valid_keys():
        spellings = [key] + aliases.get(key, [])
        flags = sorted({f"--{s}" for s in spellings} | {f"--{s.replace('_', '-')}" for s in spellings}, key=len)
        extra = {"nargs": "?", "const": "true"} if key in bool_keys else {}
        keys.add_argument(*flags, dest=f"cfg:{key}", default=argparse.SUPPRESS, metavar="V", **extra)
    return p


def _flat_defaults() -> dict:
    return flatten(TrainConfig().to_dict())


def _overrides(args: argparse.Namespace) -> dict:
    return {k[4:]: _parse_value(v) for k, v in vars(args).items() if k.startswith("cfg:")}


def _parse_value(raw: str):
    import yaml

    try:
        return yaml.safe_load(raw)
    except yaml.YAMLError:
        return raw


def _resume_source(resume: str | bool | None) -> Path | None:
    if resume is None or resume is True:
        return None
    path = Path(resume)
    return path / "checkpoint_last.pt" if path.is_dir() else path


def run(args: argparse.Namespace) -> int:
    from vqsa.train.checkpointing import load_training_checkpoint
    from vqsa.train.engine import NonFiniteLossError, train

    overrides = _overrides(args)
    ckpt_path = _resume_source(args.resume)
    if args.config is None and ckpt_path is not None:
        cfg = load_config(None, overrides, base=load_training_checkpoint(ckpt_path)["config"])
    else:
        cfg = load_config(args.config, overrides)
    if args.print_config:
        sys.stdout.write(to_yaml(cfg))
        return 0
    try:
        train(cfg, resume=ckpt_path if ckpt_path is not None else args.resume)
    except NonFiniteLossError as e:
        print(f"vqsa train: stopped: {e}", file=sys.stderr)
        return 3
    return 0
