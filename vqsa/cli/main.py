"""Entry point of the ``vqsa`` console script.

Only the chosen subcommand's module is imported: ``vqsa corrupt --help`` does not pay for the model zoo.
Each module ``vqsa.cli.<name>`` defines ``add_parser(subparsers) -> argparse.ArgumentParser`` and
``run(args) -> int``.
"""
from __future__ import annotations

import argparse
import importlib
import sys

from vqsa.version import __version__

# name -> (module, one-line help). The order is the order shown by ``vqsa --help``.
COMMANDS: dict[str, tuple[str, str]] = {
    "demo": ("vqsa.cli.demo", "train a fine-tuned baseline and VQSA on a small budget and compare them"),
    "train": ("vqsa.cli.train", "train a model on clean + corrupted images (YAML config, torchrun-ready)"),
    "evaluate": ("vqsa.cli.evaluate", "clean / ImageNet-C / CIFAR-10-C / ImageNet-R/A evaluation with mCE"),
    "compare": ("vqsa.cli.compare", "print and plot several results.json side by side"),
    "corrupt": ("vqsa.cli.corrupt", "write ImageNet-C / CIFAR-10-C style corrupted datasets, or a gallery"),
    "info": ("vqsa.cli.info", "parameter and FLOP breakdown of a model"),
    "analyze": ("vqsa.cli.analyze", "t-SNE, Grad-CAM and codebook-usage analysis of a checkpoint"),
}


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The ``vqsa`` parser; only ``command``'s module is imported (the others get a help line only)."""
    parser = argparse.ArgumentParser(prog="vqsa", description="Quality-independent image classification (VQSA).")
    parser.add_argument("--version", action="version", version=f"vqsa {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (module, help_) in COMMANDS.items():
        if name != command:
            sub.add_parser(name, help=help_, add_help=False)
            continue
        mod = importlib.import_module(module)
        p = mod.add_parser(sub, name, help_)
        p.set_defaults(_run=mod.run)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    command = next((a for a in argv if not a.startswith("-")), None)
    parser = build_parser(command if command in COMMANDS else None)
    args = parser.parse_args(argv)
    if not getattr(args, "_run", None):
        parser.print_help()
        return 2
    try:
        return int(args._run(args) or 0)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except (ValueError, TypeError, FileNotFoundError, RuntimeError) as e:
        if getattr(args, "debug", False):
            raise
        print(f"vqsa {args.command}: error: {e}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
