"""Classification and corruption-robustness metrics: top-1 error, mCE, relative mCE, plain mean corruption error.

Conventions (Hendrycks & Dietterich, ICLR 2019): errors go in as **fractions** in [0, 1]; mCE-style results come out
in **percent**. ``CE_c = sum_s E_{s,c} / sum_s A_{s,c}`` with ``A`` the baseline (AlexNet) errors, ``mCE`` is the
mean of ``CE_c`` over the 15 common corruptions; relative CE subtracts each model's clean error first. CIFAR-10-C
has no AlexNet baseline: ``baseline=None`` gives the plain mean error (the AugMix / RobustBench CIFAR convention).
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Union

import numpy as np
import torch

# Top-1 errors (fractions) of torchvision's AlexNet on the released ImageNet-C, severities 1..5, all 19 corruptions
# in ImageNet-C order. Source: hendrycks/robustness README "AlexNet ImageNet-C Error" (PR #20); the 15 common rows
# equal google-research/augmix ``ALEXNET_ERR`` (averages) and timm's ``imagenetc_alexnet_error_rates_list``.
ALEXNET_ERRORS: dict[str, tuple[float, float, float, float, float]] = {
    "gaussian_noise": (0.69528, 0.82542, 0.93554, 0.98138, 0.99452),
    "shot_noise": (0.71224, 0.85108, 0.93574, 0.98182, 0.99146),
    "impulse_noise": (0.78374, 0.89808, 0.94870, 0.98720, 0.99548),
    "defocus_blur": (0.65624, 0.73202, 0.85036, 0.91364, 0.94714),
    "glass_blur": (0.64308, 0.75054, 0.88806, 0.91622, 0.93344),
    "motion_blur": (0.58430, 0.70048, 0.82108, 0.89750, 0.92638),
    "zoom_blur": (0.70008, 0.76992, 0.80784, 0.84198, 0.87198),
    "snow": (0.71726, 0.88392, 0.86468, 0.91870, 0.94952),
    "frost": (0.61390, 0.79734, 0.88790, 0.89942, 0.93430),
    "fog": (0.67474, 0.76050, 0.84378, 0.87260, 0.94500),
    "brightness": (0.45140, 0.48502, 0.54048, 0.62166, 0.72440),
    "contrast": (0.64548, 0.76150, 0.88874, 0.97760, 0.99270),
    "elastic_transform": (0.52596, 0.70116, 0.55686, 0.64076, 0.80554),
    "pixelate": (0.52218, 0.54620, 0.73728, 0.87092, 0.91262),
    "jpeg_compression": (0.51002, 0.54718, 0.57294, 0.65458, 0.74778),
    "speckle_noise": (0.66192, 0.74440, 0.90246, 0.94548, 0.97268),
    "gaussian_blur": (0.54732, 0.70444, 0.82574, 0.89864, 0.95940),
    "spatter": (0.47196, 0.62194, 0.75052, 0.84132, 0.90182),
    "saturate": (0.59342, 0.65514, 0.51174, 0.70834, 0.82260),
}
# Clean top-1 error of the same AlexNet (torchvision IMAGENET1K_V1, documented acc@1 56.522 %), for relative mCE.
ALEXNET_CLEAN_ERROR = 0.43478

CORRUPTION_NAMES: tuple[str, ...] = tuple(ALEXNET_ERRORS)
KNOWN_CORRUPTIONS: tuple[str, ...] = CORRUPTION_NAMES[:15]  # the 15 "common" corruptions that define mCE
UNKNOWN_CORRUPTIONS: tuple[str, ...] = CORRUPTION_NAMES[15:]  # the 4 held-out "validation" corruptions
NUM_SEVERITIES = 5

ErrorValue = Union[float, Sequence[float]]
Baseline = Union[str, Mapping[str, ErrorValue], None]


def top1_correct(logits: torch.Tensor, targets: torch.Tensor, class_subset: torch.Tensor | None = None) -> torch.Tensor:
    """Per-sample top-1 correctness (bool, shape (B,)).

    Args:
        logits: (B, C) scores.
        targets: (B,) class indices in ``[0, C)``.
        class_subset: optional 1-D index tensor; the prediction is the arg-max over these classes only (the
            ImageNet-R / ImageNet-A 200-class convention), still expressed as an index into ``[0, C)``.
    """
    if logits.ndim != 2:
        raise ValueError(f"logits must be (batch, classes), got shape {tuple(logits.shape)}")
    if targets.shape != logits.shape[:1]:
        raise ValueError(f"targets shape {tuple(targets.shape)} does not match logits batch {logits.shape[0]}")
    if class_subset is None:
        pred = logits.argmax(dim=1)
    else:
        class_subset = class_subset.to(logits.device)
        pred = class_subset[logits.index_select(1, class_subset).argmax(dim=1)]
    return pred == targets.to(logits.device)


def top1_error(logits: torch.Tensor, targets: torch.Tensor, class_subset: torch.Tensor | None = None) -> float:
    """Top-1 error of a batch as a fraction in [0, 1] (see :func:`top1_correct`)."""
    if logits.shape[0] == 0:
        raise ValueError("top1_error of an empty batch is undefined")
    return 1.0 - top1_correct(logits, targets, class_subset).float().mean().item()


def _as_errors(name: str, value: ErrorValue, what: str) -> np.ndarray:
    """Validate one corruption's errors: a fraction or a list of 5 (one per severity), all in [0, 1]."""
    if isinstance(value, (str, bytes)):
        raise TypeError(f"{what} for {name!r} must be a number or a list of {NUM_SEVERITIES}, got {value!r}")
    try:
        arr = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError) as e:
        raise TypeError(f"{what} for {name!r} must be a number or a list of {NUM_SEVERITIES}, got {value!r}") from e
    if arr.ndim > 1 or (arr.ndim == 1 and arr.shape[0] != NUM_SEVERITIES):
        raise ValueError(
            f"{what} for {name!r} must be one mean error or one error per severity ({NUM_SEVERITIES} values), "
            f"got shape {arr.shape}"
        )
    if not np.all(np.isfinite(arr)) or arr.min() < 0.0 or arr.max() > 1.0:
        percent = np.all(np.isfinite(arr)) and arr.min() >= 0.0 and arr.max() <= 100.0
        hint = " (errors are fractions in [0, 1]; divide percentages by 100)" if percent else ""
        raise ValueError(f"{what} for {name!r} must be in [0, 1], got {value!r}{hint}")
    return arr


def _resolve_corruptions(corruptions: str | Sequence[str]) -> tuple[str, ...]:
    if isinstance(corruptions, str):
        groups = {"common": KNOWN_CORRUPTIONS, "known": KNOWN_CORRUPTIONS, "validation": UNKNOWN_CORRUPTIONS,
                  "unknown": UNKNOWN_CORRUPTIONS, "all": CORRUPTION_NAMES}
        if corruptions not in groups:
            raise ValueError(f"unknown corruption group {corruptions!r}; expected one of {sorted(groups)} or a list")
        return groups[corruptions]
    names = tuple(corruptions)
    if not names:
        raise ValueError("no corruptions to average over")
    if len(set(names)) != len(names):
        raise ValueError(f"duplicate corruption names in {list(names)}")
    return names


def _mean_per_corruption(errors: Mapping[str, ErrorValue], names: Sequence[str], what: str) -> np.ndarray:
    if not isinstance(errors, Mapping):
        raise TypeError(f"{what} must map corruption name -> error(s), got {type(errors).__name__}")
    missing = [n for n in names if n not in errors]
    if missing:
        raise ValueError(f"{what} is missing {len(missing)} corruption(s): {', '.join(missing)}")
    return np.array([_as_errors(n, errors[n], what).mean() for n in names])


def _baseline_means(baseline: Baseline, names: Sequence[str]) -> np.ndarray:
    if isinstance(baseline, str):
        if baseline.lower() != "alexnet":
            raise ValueError(f"unknown baseline {baseline!r}; use 'alexnet', None (plain mean) or a mapping")
        baseline = ALEXNET_ERRORS
    means = _mean_per_corruption(baseline, names, "baseline")
    if np.any(means <= 0):
        raise ValueError("baseline errors must be > 0 to normalise by them")
    return means


def corruption_errors(
    errors: Mapping[str, ErrorValue], baseline: Baseline = "alexnet", corruptions: str | Sequence[str] = "common"
) -> dict[str, float]:
    """Per-corruption CE in percent: ``100 * mean_s E_{s,c} / mean_s A_{s,c}`` (plain ``100 * mean_s E_{s,c}`` when
    ``baseline`` is None).

    Args:
        errors: corruption name -> its error per severity (5 fractions) or its mean over severities (one fraction).
        baseline: ``"alexnet"`` (packaged constants), None, or a mapping like ``errors``.
        corruptions: ``"common"`` (the 15 of mCE), ``"validation"``, ``"all"`` or an explicit list of names.
    """
    names = _resolve_corruptions(corruptions)
    ours = _mean_per_corruption(errors, names, "errors")
    if baseline is not None:
        ours = ours / _baseline_means(baseline, names)
    return {n: float(100.0 * v) for n, v in zip(names, ours)}


def mce(
    errors: Mapping[str, ErrorValue], baseline: Baseline = "alexnet", corruptions: str | Sequence[str] = "common"
) -> float:
    """Mean corruption error in percent (AlexNet-normalised by default; the plain mean error when ``baseline=None``).

    Example:
        >>> mce({c: 0.5 for c in KNOWN_CORRUPTIONS}, baseline=None)
        50.0
    """
    return float(np.mean(list(corruption_errors(errors, baseline, corruptions).values())))


def relative_mce(
    errors: Mapping[str, ErrorValue],
    clean_error: float,
    baseline: Baseline = "alexnet",
    corruptions: str | Sequence[str] = "common",
    baseline_clean_error: float | None = None,
) -> float:
    """Relative mCE in percent: mean over corruptions of ``sum_s (E_{s,c} - E_clean) / sum_s (A_{s,c} - A_clean)``.

    Args:
        errors: as in :func:`mce`.
        clean_error: the model's clean top-1 error (fraction).
        baseline: ``"alexnet"`` or a mapping; relative CE needs a baseline.
        corruptions: as in :func:`mce`.
        baseline_clean_error: the baseline's clean error; defaults to AlexNet's (``ALEXNET_CLEAN_ERROR``) and is
            required for a user mapping.
    """
    if baseline is None:
        raise ValueError("relative mCE needs a baseline (it normalises by the baseline's degradation)")
    if baseline_clean_error is None:
        if not isinstance(baseline, str):
            raise ValueError("a user baseline mapping needs baseline_clean_error for relative mCE")
        baseline_clean_error = ALEXNET_CLEAN_ERROR
    clean = float(_as_errors("clean", clean_error, "clean_error"))
    base_clean = float(_as_errors("clean", baseline_clean_error, "baseline_clean_error"))
    names = _resolve_corruptions(corruptions)
    ours = _mean_per_corruption(errors, names, "errors") - clean
    denom = _baseline_means(baseline, names) - base_clean
    if np.any(denom <= 0):
        bad = [n for n, d in zip(names, denom) if d <= 0]
        raise ValueError(f"baseline corrupted error does not exceed its clean error for: {', '.join(bad)}")
    return float(100.0 * np.mean(ours / denom))


def mean_error(errors: Mapping[str, ErrorValue], corruptions: str | Sequence[str] = "common") -> float:
    """Plain mean corruption error in percent (the CIFAR-10-C convention); same as ``mce(errors, baseline=None)``."""
    return mce(errors, baseline=None, corruptions=corruptions)


def mean_accuracy(errors: Mapping[str, ErrorValue], corruptions: str | Sequence[str]) -> float:
    """Mean top-1 accuracy in percent over ``corruptions`` (the paper's Table 3 "known" / "unknown" columns)."""
    return 100.0 - mean_error(errors, corruptions)

