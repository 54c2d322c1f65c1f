"""Entry point of the ``vqsa`` console script.

Only the chosen subcommand's module is imported: ``vqsa corrupt --help`` does not pay for the model zoo.
Each module ``vqsa.cli.<name>`` defines ``add_parser(subparsers, name, help_) -> argparse.ArgumentParser`` and
``run(args) -> int``.
"""
from __future__ import annotations

import argparse
import contextlib
import importlib
import logging
import sys
from collections.abc import Iterator
from typing import TextIO

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
        verbosity = p.add_mutually_exclusive_group()
        verbosity.add_argument("-q", "--quiet", action="store_true",
                               help="show warnings and errors only (and no progress bars where the command has them)")
        verbosity.add_argument("-v", "--verbose", action="store_true", help="show debug messages, with their logger")
        p.set_defaults(_run=mod.run)
        if p.get_default("_parser") is None:
            p.set_defaults(_parser=p)
    return parser


def end_progress_bars() -> None:
    """Close the tqdm bars still open (an error stopped their loop) so that the message printed next starts on a
    line of its own instead of after the bar."""
    tqdm_module = sys.modules.get("tqdm.std")
    if tqdm_module is None:
        return
    for bar in list(getattr(tqdm_module.tqdm, "_instances", ())):
        with contextlib.suppress(Exception):  # best effort: never hide the real error
            bar.leave = True
            bar.close()


class _StderrHandler(logging.StreamHandler):
    """A stream handler writing to whatever ``sys.stderr`` is when a record comes (redirected, captured)."""

    def __init__(self) -> None:
        super().__init__(sys.stderr)

    @property
    def stream(self) -> TextIO:
        return sys.stderr

    @stream.setter
    def stream(self, value: TextIO) -> None:
        pass


@contextlib.contextmanager
def console_logging(quiet: bool = False, verbose: bool = False) -> Iterator[None]:
    """Show the ``vqsa`` loggers' messages on stderr for the duration of a command: INFO and up as bare lines
    (``quiet``: WARNING and up; ``verbose``: DEBUG and up, with level and logger name)."""
    logger = logging.getLogger("vqsa")
    handler = _StderrHandler()
    handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s" if verbose else "%(message)s"))
    old_level, old_propagate = logger.level, logger.propagate
    logger.setLevel(logging.WARNING if quiet else logging.DEBUG if verbose else logging.INFO)
    logger.addHandler(handler)
    logger.propagate = False  # a root handler (basicConfig, a notebook) would print every line a second time
    try:
        yield
    finally:
        logger.removeHandler(handler)
        logger.setLevel(old_level)
        logger.propagate = old_propagate


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    command = next((a for a in argv if not a.startswith("-")), None)
    parser = build_parser(command if command in COMMANDS else None)
    args, extra = parser.parse_known_args(argv)
    if extra:
        # reported by the subcommand's parser (its usage, not the top-level one), with its hint when it has one
        explain = getattr(args, "_unrecognized", None)
        (getattr(args, "_parser", None) or parser).error(
            explain(extra) if explain else f"unrecognized arguments: {' '.join(extra)}"
        )
    if not getattr(args, "_run", None):
        parser.print_help()
        return 2
    try:
        with console_logging(args.quiet, args.verbose):
            return int(args._run(args) or 0)
    except KeyboardInterrupt:
        end_progress_bars()
        print("interrupted", file=sys.stderr)
        return 130
    except (ValueError, TypeError, OSError, RuntimeError) as e:  # OSError: missing files, read-only or full disks
        end_progress_bars()
        if getattr(args, "debug", False):
            raise
        print(f"vqsa {args.command}: error: {e}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
