"""Single-core speed of every corruption: vqsa's CPU engine against imagecorruptions(-imaug), same process.

Method (as docs/benchmarks/corruptions_speed.md and the imagecorruptions timing reference): one core
(``sched_setaffinity``), one thread (OMP/OpenBLAS/MKL/numba env vars set before any import, ``cv2.setNumThreads(1)``),
input ``skimage.data.astronaut()`` resized with PIL bilinear to each size, one untimed warm-up call, then the median
of at least ``--min-calls`` timed calls and ``--min-time`` seconds. Prints a Markdown table; ``--json`` saves it all.

    python benchmarks/corruptions_speed.py                      # severity 3, 224 and 32 px
    python benchmarks/corruptions_speed.py --profile imagenet   # 32 px with ImageNet parameters on both sides
    python benchmarks/corruptions_speed.py --all-severities --json speed.json
"""
from __future__ import annotations

import os
import sys

_THREAD_ENV = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMBA_NUM_THREADS",
               "VECLIB_MAXIMUM_THREADS", "NUMEXPR_NUM_THREADS")
for _var in _THREAD_ENV:  # must happen before numpy / cv2 / numba are imported
    os.environ[_var] = "1"

import argparse  # noqa: E402
import platform  # noqa: E402
import statistics  # noqa: E402
import time  # noqa: E402
from collections.abc import Callable  # noqa: E402
from datetime import datetime, timezone  # noqa: E402
from importlib import metadata  # noqa: E402

import numpy as np  # noqa: E402

_EXTRA_PACKAGES = ("imagecorruptions-imaug", "imagecorruptions", "scikit-image", "numba")


def _pin_to_one_core(core: int | None) -> int | None:
    if not hasattr(os, "sched_setaffinity"):
        return None
    allowed = sorted(os.sched_getaffinity(0))
    chosen = allowed[0] if core is None else core
    if chosen not in allowed:
        raise SystemExit(f"--cpu {core} is not one of the allowed cores {allowed}")
    os.sched_setaffinity(0, {chosen})
    return chosen


def _input_image(size: int) -> np.ndarray:
    from PIL import Image
    from skimage import data

    return np.asarray(Image.fromarray(data.astronaut()).resize((size, size), Image.BILINEAR), dtype=np.uint8)


def _time_interleaved(fns: dict[str, Callable[[], object]], min_calls: int, min_time: float) -> dict[str, dict]:
    """Median ms per call of each function, calling them in turn (A, B, A, B, ...) so that both see the same load.

    Each function gets one untimed warm-up call first (JIT compilation, file reads, caches), then at least
    ``min_calls`` timed calls and ``min_time`` seconds of timed calls. Both the CPU time of this process
    (``time.process_time``: on a busy machine it leaves out the time other processes held the core) and the wall
    time are recorded; on an idle core with one thread they agree.
    """
    first: dict[str, float] = {}
    cpu: dict[str, list[float]] = {k: [] for k in fns}
    wall: dict[str, list[float]] = {k: [] for k in fns}
    for k, fn in fns.items():
        t0 = time.perf_counter()
        fn()
        first[k] = time.perf_counter() - t0
    while any(len(t) < min_calls or sum(t) < min_time for t in cpu.values()):
        for k, fn in fns.items():
            c0, w0 = time.process_time(), time.perf_counter()
            fn()
            cpu[k].append(time.process_time() - c0)
            wall[k].append(time.perf_counter() - w0)
    return {
        k: {"cpu_ms": 1e3 * statistics.median(cpu[k]), "wall_ms": 1e3 * statistics.median(wall[k]),
            "first_call_wall_ms": 1e3 * first[k], "calls": len(cpu[k])}
        for k in fns
    }


def _engine_modified() -> bool | None:
    """Whether vqsa/ differs from the recorded commit (None when git is not available)."""
    import subprocess

    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    try:
        out = subprocess.run(["git", "status", "--porcelain", "--", "vqsa"], cwd=root, capture_output=True,
                             text=True, timeout=10, check=True)
    except (OSError, subprocess.SubprocessError):
        return None
    return bool(out.stdout.strip())


def _load_average() -> float | None:
    """1-minute load average: other processes on the machine slow both libraries down alike."""
    return round(os.getloadavg()[0], 2) if hasattr(os, "getloadavg") else None


def _versions() -> dict[str, str]:
    from vqsa.utils.meta import versions

    out = versions()
    for name in _EXTRA_PACKAGES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = "not installed"
    return out


def _reference() -> tuple[Callable[..., np.ndarray], str] | None:
    """``imagecorruptions.corrupt`` and the name + version of the distribution that provides it."""
    try:
        import imagecorruptions
    except ImportError:
        return None
    for dist in ("imagecorruptions-imaug", "imagecorruptions"):
        try:
            return imagecorruptions.corrupt, f"{dist} {metadata.version(dist)}"
        except metadata.PackageNotFoundError:
            continue
    return imagecorruptions.corrupt, "imagecorruptions (unknown version)"


def run(args: argparse.Namespace) -> dict:
    """Time every (corruption, size, severity) for vqsa and, when installed, imagecorruptions."""
    import cv2

    import vqsa.corruptions as vc

    cv2.setNumThreads(1)
    found = None if args.no_reference else _reference()
    reference, reference_name = found if found else (None, None)
    names = vc.get_corruption_names("all") if args.corruptions is None else args.corruptions
    severities = (1, 2, 3, 4, 5) if args.all_severities else tuple(args.severities)
    rows, load_before = [], _load_average()
    for size in args.sizes:
        image = _input_image(size)
        profile = vc.resolve_profile(args.profile, size, size)
        for name in names:
            for sev in severities:
                rng = np.random.default_rng(0)
                np.random.seed(0)
                fns = {"vqsa": lambda: vc.corrupt(image, sev, name, rng=rng, profile=args.profile)}
                if reference is not None:
                    fns["reference"] = lambda: reference(image, severity=sev, corruption_name=name)
                row = {"corruption": name, "severity": sev, "size": size, "vqsa_profile": profile,
                       **_time_interleaved(fns, args.min_calls, args.min_time)}
                rows.append(row)
                ref = f"{row['reference'][args.clock]:8.3f} ms" if "reference" in row else "-"
                print(f"  {size:>3} px  {name:<18} s{sev}  vqsa {row['vqsa'][args.clock]:8.3f} ms  ref {ref}",
                      file=sys.stderr, flush=True)
    from vqsa.utils.meta import git_sha, machine

    return {
        "date": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "command": "python " + " ".join([os.path.relpath(sys.argv[0]), *sys.argv[1:]]),
        "core": args.core,
        "machine": {**machine(), "python": platform.python_version()},
        "load_average": {"before": load_before, "after": _load_average()},
        "versions": _versions(),
        "git_sha": git_sha(),
        "vqsa_modified": _engine_modified(),
        "reference": reference_name,
        "method": {"min_calls": args.min_calls, "min_time_s": args.min_time, "input": "skimage astronaut, "
                   "PIL bilinear resize", "threads": 1, "profile": args.profile, "clock": args.clock},
        "rows": rows,
    }


def markdown(result: dict) -> str:
    """The Markdown report: per-corruption ms/image, speed-up (reference / vqsa) per size, totals, setup."""
    rows, has_ref, clock = result["rows"], result["reference"] is not None, result["method"]["clock"]
    sizes = list(dict.fromkeys(r["size"] for r in rows))
    multi_sev = len({r["severity"] for r in rows}) > 1
    keys = list(dict.fromkeys((r["corruption"], r["severity"]) for r in rows))
    cell = {(r["corruption"], r["severity"], r["size"]): r for r in rows}
    head = ["corruption"]
    for s in sizes:
        head += [f"vqsa ms @{s}"] + ([f"imagecorruptions ms @{s}", f"speed-up @{s}"] if has_ref else [])
    lines = ["| " + " | ".join(head) + " |", "|---" + "|---:" * (len(head) - 1) + "|"]
    totals = {s: [0.0, 0.0] for s in sizes}
    for name, sev in keys:
        out = [f"{name} s{sev}" if multi_sev else name]
        for s in sizes:
            r = cell[(name, sev, s)]
            v = r["vqsa"][clock]
            totals[s][0] += v
            out.append(_ms(v))
            if has_ref:
                ref = r["reference"][clock]
                totals[s][1] += ref
                out += [_ms(ref), f"{ref / v:.1f}x"]
        lines.append("| " + " | ".join(out) + " |")
    out = ["**total**"]
    for s in sizes:
        out.append(f"**{_ms(totals[s][0])}**")
        if has_ref:
            out += [f"**{_ms(totals[s][1])}**", f"**{totals[s][1] / totals[s][0]:.1f}x**"]
    lines.append("| " + " | ".join(out) + " |")
    notes = [
        "",
        ("CPU" if clock == "cpu_ms" else "wall-clock") + " ms/image, median over >= "
        f"{result['method']['min_calls']} calls and >= {result['method']['min_time_s']} s after one warm-up call, the "
        "two libraries called in turn; one core, one thread; input skimage astronaut resized (PIL bilinear); "
        + ("severities 1-5." if multi_sev else f"severity {rows[0]['severity']}.")
        + (f" imagecorruptions = {result['reference']}; speed-up = imagecorruptions / vqsa." if has_ref
           else " imagecorruptions not installed: vqsa only."),
    ]
    small = sorted({(r["size"], r["vqsa_profile"]) for r in rows if r["size"] < 100})
    for size, profile in small:
        if profile == "imagenet":
            notes.append(f"At {size} px both libraries use the ImageNet-C parameter table (like-for-like).")
        else:
            notes.append(
                f"At {size} px vqsa uses the {profile} parameter table (CIFAR-10-C strengths, `profile=auto`) while "
                "imagecorruptions always uses the ImageNet-C table, so the two do different work; "
                "`--profile imagenet` gives the like-for-like comparison."
            )
    first = max((r["vqsa"]["first_call_wall_ms"], r["corruption"], r["size"]) for r in rows)
    notes.append(f"Slowest first (warm-up) call of vqsa: {first[1]} at {first[2]} px, {first[0]:.0f} ms wall.")
    m, v = result["machine"], result["versions"]
    setup = [
        "",
        f"Command: `{result['command']}` ({result['date']}, git {str(result['git_sha'])[:10]}"
        + (" + uncommitted changes in vqsa/" if result["vqsa_modified"] else "") + ").",
        f"Machine: {m.get('platform')}, {m.get('processor')}, {m.get('cpu_count')} CPUs (pinned to core "
        f"{result['core']}), Python {m.get('python')}; 1-min load average {result['load_average']['before']} "
        f"before, {result['load_average']['after']} after.",
        "Versions: " + ", ".join(f"{k} {val}" for k, val in v.items()) + ".",
    ]
    return "\n".join(lines + notes + setup) + "\n"


def _ms(x: float) -> str:
    return f"{x:.3f}" if x < 1 else f"{x:.2f}" if x < 100 else f"{x:.1f}"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--sizes", type=int, nargs="+", default=[224, 32], help="square input sizes (default 224 32)")
    p.add_argument("--severities", type=int, nargs="+", default=[3], choices=range(1, 6), metavar="S",
                   help="severities to time (default 3)")
    p.add_argument("--all-severities", action="store_true", help="time severities 1..5")
    p.add_argument("--corruptions", nargs="+", metavar="NAME", help="subset of corruption names (default all 19)")
    p.add_argument("--profile", default="auto", choices=("auto", "imagenet", "cifar", "tinyimagenet"),
                   help="vqsa parameter table (default auto: cifar at 32 px; imagenet for like-for-like)")
    p.add_argument("--min-calls", type=int, default=5, help="timed calls per cell, at least (default 5)")
    p.add_argument("--min-time", type=float, default=1.0, help="timed seconds per cell, at least (default 1.0)")
    p.add_argument("--clock", choices=("cpu", "wall"), default="cpu",
                   help="table shows process CPU time (default; robust to other load) or wall time (both in --json)")
    p.add_argument("--cpu", type=int, dest="core", help="core to pin to (default: the first allowed one)")
    p.add_argument("--no-reference", action="store_true", help="time vqsa only")
    p.add_argument("--json", metavar="PATH", help="also write all figures as JSON (atomically)")
    args = p.parse_args(argv)
    args.core = _pin_to_one_core(args.core)
    args.clock = f"{args.clock}_ms"
    result = run(args)
    print(markdown(result))
    if args.json:
        from vqsa.utils.io import atomic_write_json

        atomic_write_json(args.json, result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
