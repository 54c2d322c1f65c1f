"""``vqsa train -c CONFIG.yaml [--key value ...]``: train on clean + corrupted images; torchrun-ready.

Any config key can be overridden with ``--key value`` (top level: ``--epochs 3``) or ``--section.key value``
(``--model.codebook_size 1000``); values are YAML (``--corruption.corruptions [contrast, fog]``, ``--lr 3e-4``), a
boolean key alone means true (``--amp``). Short spellings: --data-root, --download, --skip-bad, --workers,
--corrupt-on, --lr. Each key's default is shown below; --print-config shows the resolved config.
``--resume`` with a larger ``--epochs`` extends a finished run (the lr schedule follows the new config).
Multi-GPU / multi-node: ``torchrun --nproc_per_node=N -m vqsa train -c CONFIG.yaml``.
"""
from __future__ import annotations

import argparse
import dataclasses
import os
import sys
from pathlib import Path

from vqsa.train.config import (
    ALIASES,
    CHOICES,
    TrainConfig,
    flatten,
    load_config,
    load_yaml,
    parse_value,
    show_value,
    suggest_keys,
    to_yaml,
    unknown_key_message,
    valid_keys,
)
from vqsa.utils.paths import same_folder

_BARE_HINT = (
    "no config given: pass -c CONFIG.yaml (e.g. configs/cifar10_r18_concat_sa.yaml), --resume RUN, or set keys "
    "explicitly (e.g. --data.dataset digits --epochs 1); the defaults alone train resnet18 on CIFAR-10 for 10 epochs "
    "into runs/run"
)


def add_parser(subparsers, name: str, help_: str) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        name, help=help_, description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter,
        usage="vqsa train [-c CONFIG] [--resume [CHECKPOINT]] [--print-config] [--KEY VALUE ...]", allow_abbrev=False,
    )
    p.add_argument("-c", "--config", help="YAML config (defaults for every key not given)")
    p.add_argument("--resume", nargs="?", const=True, default=None, metavar="CHECKPOINT",
                   help="continue a killed run (or extend a finished one with a larger --epochs): its "
                   "checkpoint_last.pt, or the given checkpoint / run folder; without -c the checkpoint's own config "
                   "is used, with any --KEY overrides")
    p.add_argument("--print-config", action="store_true", help="print the resolved config and exit")
    p.add_argument("--debug", action="store_true", help="show full tracebacks")
    keys = p.add_argument_group("config keys (YAML values; a boolean key alone means true; defaults shown)")
    defaults = _flat_defaults()
    bool_keys = {k for k, v in defaults.items() if isinstance(v, bool)}
    aliases: dict[str, list[str]] = {}
    for short, key in ALIASES.items():
        aliases.setdefault(key, []).append(short)
    for key in valid_keys():
        spellings = [key] + aliases.get(key, [])
        flags = list(dict.fromkeys(f"--{v}" for s in spellings for v in (s, s.replace("_", "-"))))
        extra = {"nargs": "?", "const": "true"} if key in bool_keys else {}
        keys.add_argument(*flags, dest=f"cfg:{key}", default=argparse.SUPPRESS, metavar="V",
                          help=_key_help(key, defaults), **extra)
    p.set_defaults(_parser=p, _unrecognized=unrecognized_message)
    return p


def _key_help(key: str, defaults: dict) -> str:
    text = f"default: {show_value(defaults[key])}"
    if key in CHOICES:
        text += "; one of " + ", ".join(show_value(c) for c in CHOICES[key])
    return text.replace("%", "%%")


def unrecognized_message(extra: list[str]) -> str:
    """The error for arguments the train parser does not know: did-you-mean for misspelt config keys."""
    problems = []
    for tok in extra:
        if tok.startswith("--") and len(tok) > 2:
            key = tok[2:].partition("=")[0].replace("-", "_")
            problems.append(unknown_key_message(key) if suggest_keys(key) or "." in key else
                            f"unknown option {tok.partition('=')[0]!r} (config keys are --KEY or --SECTION.KEY; "
                            "see vqsa train --help)")
        elif tok.startswith("-") and len(tok) > 1 and not _is_number(tok):
            problems.append(f"unknown option {tok!r}")
    if not problems:
        words = " ".join(extra)
        hint = f" (a config file goes after -c: -c {extra[0]})" if extra[0].endswith((".yaml", ".yml")) else ""
        return f"unrecognized arguments: {words}{hint}"
    return "; ".join(problems)


def _is_number(tok: str) -> bool:
    try:
        float(tok)
    except ValueError:
        return False
    return True


def _flat_defaults() -> dict:
    return flatten(TrainConfig().to_dict())


def _overrides(args: argparse.Namespace) -> dict:
    return {k[4:]: parse_value(v) for k, v in vars(args).items() if k.startswith("cfg:")}


def _in_checkpoint_folder(cfg, ckpt_path: Path):
    """``cfg`` with ``output_dir``/``name`` naming the folder that holds ``ckpt_path``: a run resumed from a path
    continues where its checkpoint is (a copied or moved run, a job started from another directory), not in the
    folder recorded in the checkpoint. Unchanged when that is already its folder (the recorded spelling stays)."""
    folder = Path(os.path.abspath(ckpt_path)).parent
    if same_folder(cfg.run_dir(), folder):
        return cfg
    return dataclasses.replace(cfg, output_dir=str(folder.parent), name=folder.name)


def _forks(cfg, saved: dict, config: str | None, overrides: dict) -> bool:
    """Whether a resume continues in another run folder: the command line or the ``-c`` file sets ``name`` /
    ``output_dir`` to other values than the checkpoint's config (the run's own ``config.yaml`` names its own folder,
    wherever that folder has moved since)."""
    keys = set(overrides)
    if config is not None:
        keys |= set(load_yaml(Path(config).read_text()) or {})  # already read and checked by load_config
    named = bool({"name", "output_dir"} & keys)
    recorded = Path(saved.get("output_dir") or ".") / (saved.get("name") or "")
    return named and not same_folder(cfg.run_dir(), recorded)


def run(args: argparse.Namespace) -> int:
    from vqsa.train.checkpointing import load_resume_checkpoint, resume_path
    from vqsa.train.engine import NonFiniteLossError, train

    overrides = _overrides(args)
    if args.config is None and args.resume is None and not overrides and not args.print_config:
        parser = getattr(args, "_parser", None)
        if parser is not None:
            parser.print_usage(sys.stderr)
        print(f"vqsa train: error: {_BARE_HINT}", file=sys.stderr)
        return 2
    ckpt_path = None if args.resume in (None, True) else resume_path(args.resume)
    saved = None
    if ckpt_path is not None:
        saved = load_resume_checkpoint(ckpt_path, mmap=True, announce=False)[0]["config"]
    if args.config is None and saved is not None:
        cfg = load_config(None, overrides, base=saved)
    else:
        cfg = load_config(args.config, overrides)
    if saved is not None and not _forks(cfg, saved, args.config, overrides):
        cfg = _in_checkpoint_folder(cfg, ckpt_path)
    if args.print_config:
        sys.stdout.write(to_yaml(cfg))
        return 0
    try:
        train(cfg, resume=ckpt_path if ckpt_path is not None else args.resume)
    except NonFiniteLossError as e:
        from vqsa.cli.main import end_progress_bars

        end_progress_bars()
        print(f"vqsa train: stopped: {e}", file=sys.stderr)
        return 3
    return 0
