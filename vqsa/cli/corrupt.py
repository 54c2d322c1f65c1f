"""``vqsa corrupt``: ImageNet-C style folder trees, CIFAR-10-C style arrays, or a gallery picture of one image.

    vqsa corrupt SRC DST                      image folder -> DST/<corruption>/<severity>/[<class>/]<file>
    vqsa corrupt --cifar10 DST                CIFAR-10 test split -> DST/<corruption>.npy + DST/labels.npy
    vqsa corrupt --gallery IMAGE OUT.png      one image x every corruption x every severity, labelled grid
    vqsa corrupt --list                       corruption names and subsets

The work is done by :mod:`vqsa.corruptions.writers` and :mod:`vqsa.corruptions.gallery`; see
docs/corrupt_cli.md.
"""
from __future__ import annotations

import argparse

from vqsa.cli._args import non_negative_int, severity
from vqsa.corruptions._params import PROFILE_CHOICES
from vqsa.utils.meta import usable_cpus

_SUBSETS = ("common", "validation", "all", "noise", "blur", "weather", "digital")


def _size(text: str) -> int:
    """A positive pixel size, or 'none' / 0 to skip the step (returned as 0)."""
    if text.lower() in ("none", "0"):
        return 0
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a size in pixels or 'none', got {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"size must be positive (or 'none'), got {value}")
    return value


def _quality(text: str) -> int:
    value = non_negative_int(text)
    if not 1 <= value <= 95:
        raise argparse.ArgumentTypeError(f"JPEG quality must be in 1..95 (85 = ImageNet-C release), got {value}")
    return value


def add_parser(subparsers: argparse._SubParsersAction, name: str, help_: str) -> argparse.ArgumentParser:
    """Register ``vqsa corrupt``."""
    p = subparsers.add_parser(
        name,
        help=help_,
        description=(
            "Write corrupted copies of an image folder (ImageNet-C layout), of the CIFAR-10 test set\n"
            "(CIFAR-10-C layout), or a gallery of one image. Deterministic per (file, corruption, severity)\n"
            "whatever --jobs; re-running resumes (existing outputs are skipped)."
        ),
        epilog=(
            "examples:\n"
            "  vqsa corrupt imagenet/val imagenet-c --corruptions all --jpeg-quality 85 --jobs 8\n"
            "  vqsa corrupt --cifar10 --data-root data cifar10-c --corruptions all --jobs 8\n"
            "  vqsa corrupt --gallery photo.jpg gallery.png\n"
            "details: docs/corrupt_cli.md"
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("paths", nargs="*", metavar="PATH", help="SRC DST (folder mode), DST (--cifar10) or OUT (--gallery)")
    mode = p.add_mutually_exclusive_group()
    mode.add_argument("--cifar10", action="store_true", help="corrupt the CIFAR-10 test split (CIFAR-10-C files)")
    mode.add_argument("--gallery", metavar="IMAGE", help="render IMAGE under every corruption and severity")
    mode.add_argument("--list", action="store_true", help="print corruption names and subsets, then exit")
    p.add_argument(
        "--corruptions", nargs="+", metavar="NAME",
        help=f"corruption names and/or subsets ({', '.join(_SUBSETS)}); default: common (gallery: all)",
    )
    p.add_argument("--severities", nargs="+", type=severity, metavar="S", help="severities in 1..5 (default: all 5)")
    p.add_argument(
        "--profile", choices=PROFILE_CHOICES,
        help="parameter table; default auto (by image size) for folders and galleries, cifar for --cifar10",
    )
    p.add_argument("--resize", type=_size, metavar="PX",
                   help="resize the short side first, bilinear (default 256, as ImageNet-C; 'none' to skip)")
    p.add_argument("--center-crop", type=_size, metavar="PX",
                   help="then centre-crop a square (default 224, as ImageNet-C; 'none' to skip)")
    p.add_argument("--jpeg-quality", type=_quality, metavar="Q",
                   help="write JPEG at quality Q with optimize=True (85 = released ImageNet-C) instead of PNG")
    p.add_argument("--jobs", type=non_negative_int, default=1, metavar="N",
                   help="worker processes (0 = one per available CPU; default 1); results do not depend on it")
    p.add_argument("--seed", type=non_negative_int, default=0, help="seed of all random draws (default 0)")
    p.add_argument("--skip-bad", action="store_true",
                   help="skip unreadable/truncated source images (listed at the end)")
    p.add_argument("--data-root", metavar="DIR", help="CIFAR-10 location for --cifar10 (default: $VQSA_DATA)")
    p.add_argument("--limit", type=int, metavar="N", help="--cifar10: a fixed random subset of N test images")
    p.add_argument("--debug", action="store_true", help="show tracebacks instead of one-line errors")
    return p


def run(args: argparse.Namespace) -> int:
    """Dispatch to the folder, CIFAR, gallery or list mode."""
    if args.list:
        return _list()
    mode = "cifar10" if args.cifar10 else "gallery" if args.gallery else "folder"
    expected = {"folder": ("SRC", "DST"), "cifar10": ("DST",), "gallery": ("OUT",)}[mode]
    if len(args.paths) != len(expected):
        given = " ".join(args.paths) or "nothing"
        flag = {"folder": "", "cifar10": "--cifar10 ", "gallery": "--gallery IMAGE "}[mode]
        raise ValueError(f"usage: vqsa corrupt {flag}{' '.join(expected)} (got {given})")
    _reject_unused(args, mode)
    jobs = args.jobs or usable_cpus()
    severities = tuple(args.severities) if args.severities else (1, 2, 3, 4, 5)
    resize = 256 if args.resize is None else args.resize or None
    center_crop = 224 if args.center_crop is None else args.center_crop or None
    if mode == "gallery":
        from vqsa.corruptions.gallery import render_gallery

        out = render_gallery(
            args.gallery, args.paths[0], args.corruptions or "all", severities, profile=args.profile or "auto",
            seed=args.seed, resize=resize, center_crop=center_crop,
        )
        print(f"wrote {out}")
        return 0
    from vqsa.corruptions import writers as dw
    from vqsa.data.cifar10_c import corrupt_cifar10

    if mode == "folder":
        _check_output_size(resize, center_crop)
    if mode == "cifar10":
        summary = corrupt_cifar10(
            args.paths[0], args.data_root, args.corruptions or "common", severities, limit=args.limit,
            profile=args.profile or "cifar", seed=args.seed, jobs=jobs, progress=not args.quiet,
        )
    else:
        summary = dw.corrupt_folder(
            args.paths[0], args.paths[1], args.corruptions or "common", severities, profile=args.profile or "auto",
            resize=resize, center_crop=center_crop, jpeg_quality=args.jpeg_quality, jobs=jobs, seed=args.seed,
            skip_bad=args.skip_bad, progress=not args.quiet,
        )
    print(f"{args.paths[-1]}: {summary}")
    return 0


def _reject_unused(args: argparse.Namespace, mode: str) -> None:
    unused = {
        "folder": ("data_root", "limit"),
        "cifar10": ("resize", "center_crop", "jpeg_quality", "skip_bad", "severities"),
        "gallery": ("data_root", "limit", "jpeg_quality", "skip_bad"),
    }[mode]
    given = [k for k in unused if getattr(args, k) not in (None, False)]
    if given:
        flags = ", ".join("--" + k.replace("_", "-") for k in given)
        why = " (CIFAR-10-C files hold severities 1..5 in order)" if "severities" in given else ""
        raise ValueError(f"{flags} cannot be used in {mode} mode{why}")
    if mode == "gallery" and args.jobs != 1:
        raise ValueError("--jobs cannot be used in gallery mode")


def _check_output_size(resize: int | None, center_crop: int | None) -> None:
    """Refuse --resize / --center-crop that make every image smaller than the corruptions accept (before any work:
    it is a setting problem, not a bad file that --skip-bad could skip)."""
    from vqsa.corruptions import MIN_SIZE

    if resize and center_crop and resize < center_crop:
        import warnings

        warnings.warn(f"--resize {resize} is smaller than --center-crop {center_crop}: the crop of every image will be "
                      f"mostly black padding around a {resize}-px image; resize to {center_crop} or more, or pass "
                      "--center-crop none", UserWarning, stacklevel=2)
    side, flag = (center_crop, "--center-crop") if center_crop else (resize, "--resize")
    if side and side < MIN_SIZE:
        made = f"every image {side}x{side}" if flag == "--center-crop" else f"the short side of every image {side} px"
        raise ValueError(f"{flag} {side} makes {made}, but the corruptions need at least {MIN_SIZE}x{MIN_SIZE}; use "
                         f"{flag} {MIN_SIZE} or more"
                         + (" (or --center-crop none to keep the resized image)" if center_crop and resize and
                            resize >= MIN_SIZE else ""))


def _list() -> int:
    from vqsa.corruptions import CORRUPTIONS, get_corruption_names

    for subset in _SUBSETS:
        print(f"{subset:>10}: {' '.join(get_corruption_names(subset))}")
    print(f"{len(CORRUPTIONS)} corruptions, in ImageNet-C order")
    return 0
