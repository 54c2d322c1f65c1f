"""``corrupt_batch``: validation, per-sample grouping by corruption, dispatch and scatter-back."""
from __future__ import annotations

import hashlib
import numbers
from collections.abc import Iterable, Sequence

import numpy as np
import torch

from .._api import MIN_SIZE, resolve_profile
from .._params import CORRUPTIONS, PARAMS
from . import blur, digital, frost, noise, weather
from ._ops import host_tensor

OPS = {**noise.OPS, **blur.OPS, **weather.OPS, **frost.OPS, **digital.OPS}
CLEAN_NAMES = ("clean", "identity")
_SEED_MASK = (1 << 63) - 1


def _name(item: object, where: str) -> str | None:
    """A corruption name, or None for the identity; ``item`` is a name, an index 0..18, "clean" or None."""
    if item is None:
        return None
    if isinstance(item, str):
        if item in CLEAN_NAMES:
            return None
        if item not in OPS:
            raise ValueError(f"{where}: unknown corruption {item!r}; expected one of {list(CORRUPTIONS)} or 'clean'")
        return item
    if isinstance(item, numbers.Integral) and not isinstance(item, bool):
        if not 0 <= int(item) < len(CORRUPTIONS):
            raise ValueError(f"{where}: corruption number must be in [0, {len(CORRUPTIONS) - 1}], got {item}")
        return CORRUPTIONS[int(item)]
    raise TypeError(f"{where}: corruption must be a name, an int or None, got {type(item).__name__}")


def _severity(item: object, clean: bool, where: str) -> int:
    if isinstance(item, torch.Tensor) and item.numel() == 1:
        item = item.item()
    if not isinstance(item, numbers.Integral) or isinstance(item, bool):
        raise TypeError(f"{where}: severity must be an int in [1, 5], got {type(item).__name__}")
    low = 0 if clean else 1
    if not low <= int(item) <= 5:
        raise ValueError(f"{where}: severity must be in [{low}, 5], got {item}")
    return int(item)


def _per_sample(value: object, n: int, what: str) -> list:
    """``value`` repeated ``n`` times, or the list of a per-sample sequence / 1-D array or tensor of length ``n``."""
    if isinstance(value, (torch.Tensor, np.ndarray)):
        if value.ndim == 0:
            return [value.item()] * n
        if value.ndim != 1:
            raise ValueError(f"{what} must be a scalar or a 1-D sequence, got an array of shape {tuple(value.shape)}")
        value = value.tolist()
    if isinstance(value, str) or not isinstance(value, Iterable):
        return [value] * n  # one scalar for the whole batch (its type is checked per entry)
    if not isinstance(value, Sequence):  # a generator or a set: no length or no order
        raise TypeError(f"{what} must be one value or a sequence (list, tuple, 1-D array or tensor) with one entry "
                        f"per image, got a {type(value).__name__}")
    if len(value) != n:
        raise ValueError(f"{what} has {len(value)} entries but the batch has {n} images")
    return list(value)


def _check_images(images: object) -> None:
    if not isinstance(images, torch.Tensor):
        raise TypeError(f"images must be a torch.Tensor, got {type(images).__name__}")
    if images.ndim != 4:
        raise ValueError(f"images must have shape (B, 3, H, W), got {tuple(images.shape)}")
    if images.shape[1] != 3:
        raise ValueError(f"images must have 3 channels (B, 3, H, W), got {images.shape[1]} in {tuple(images.shape)}")
    if min(images.shape[2:]) < MIN_SIZE:
        raise ValueError(f"image height and width must be at least {MIN_SIZE}, got {tuple(images.shape[2:])}")
    if images.dtype != torch.uint8 and not images.is_floating_point():
        raise TypeError(f"images must be uint8 or floating point in [0, 1], got {images.dtype}")
    if images.is_floating_point() and images.numel():
        lo, hi = torch.aminmax(images)
        if not (lo >= 0 and hi <= 1):  # also catches NaN
            raise ValueError(f"float images must lie in [0, 1], got values in [{lo.item()}, {hi.item()}]")


def _base_seed(generator: torch.Generator | None, device: torch.device) -> int:
    if generator is None:
        return int(torch.randint(0, _SEED_MASK, (1,)).item())
    if not isinstance(generator, torch.Generator):
        raise TypeError(f"generator must be a torch.Generator or None, got {type(generator).__name__}")
    if generator.device.type != device.type:
        raise ValueError(f"generator is on {generator.device} but the images are on {device}")
    if generator.device.type == "cpu":
        return int(torch.randint(0, _SEED_MASK, (1,), generator=generator).item())
    return _seed_from_state(generator)


def _seed_from_state(generator: torch.Generator) -> int:
    """A base seed from a generator without reading anything back from its device: accelerator generators keep
    their state (seed, offset) on the host, so hash it, then advance the generator by one device draw that is never
    read (a ``.item()`` would wait for every kernel queued so far)."""
    state = generator.get_state().numpy().tobytes()
    torch.empty(1, device=generator.device).random_(generator=generator)
    return int.from_bytes(hashlib.blake2b(state, digest_size=8).digest(), "little") & _SEED_MASK


def _group_generator(base: int, name: str, device: torch.device) -> torch.Generator:
    """Independent stream of one corruption's group: a call's outcome for a group depends only on its images and
    severities, the call's base seed and the corruption, so per-sample mixing equals separate calls."""
    key = CORRUPTIONS.index(name) + 1
    seed = (base ^ (key * 0x9E3779B97F4A7C15)) & _SEED_MASK
    return torch.Generator(device=device).manual_seed(seed)


def corrupt_batch(images: torch.Tensor, corruptions: object, severities: object = 1, *,
                  generator: torch.Generator | None = None, profile: str = "auto") -> torch.Tensor:
    """Corrupt a batch on its own device with the ImageNet-C corruptions; each image may get its own corruption.

    Args:
        images: (B, 3, H, W) uint8, or float in [0, 1]; H, W >= 32; any device.
        corruptions: one corruption for the whole batch or one per image: a name (``get_corruption_names("all")``),
            an index 0..18, or ``"clean"``/``None`` for the identity.
        severities: an int 1..5 or one per image (0 is also accepted for clean images).
        generator: a ``torch.Generator`` on the images' device for reproducible draws (advanced by one draw per
            call); None uses torch's global CPU generator.
        profile: "imagenet", "cifar", "tinyimagenet" or "auto" (min(H, W) <= 40 cifar, <= 80 tinyimagenet, else
            imagenet), as the CPU engine.

    Returns:
        The corrupted batch, same shape, dtype and device. uint8 output is clipped and truncated like the
        reference; float output is the unquantised value / 255.
    """
    _check_images(images)
    b, _, h, w = images.shape
    names = [_name(c, f"corruptions[{i}]") for i, c in enumerate(_per_sample(corruptions, b, "corruptions"))]
    sevs = [_severity(s, names[i] is None, f"severities[{i}]")
            for i, s in enumerate(_per_sample(severities, b, "severities"))]
    resolve_profile(profile, h, w)  # validates the profile before any draw
    return corrupt_groups(images, names, sevs, _base_seed(generator, images.device), profile)


def corrupt_groups(images: torch.Tensor, names: list[str | None], severities: list[int], base: int,
                   profile: str) -> torch.Tensor:
    """Core of :func:`corrupt_batch` on validated input: one batched op per corruption (each image with its own
    severity), scattered back. ``names[i]`` is a corruption name or None (identity); ``base`` seeds the streams.

    The corrupted images are gathered once, ordered by corruption, so that each op reads a contiguous slice; the
    results are converted and scattered back once. The dispatches around the ops do not grow with the number of
    corruptions in the batch.
    """
    b, _, h, w = images.shape
    resolved = resolve_profile(profile, h, w)
    groups: dict[str, list[int]] = {}
    for i, name in enumerate(names):
        if name is not None:
            groups.setdefault(name, []).append(i)
    if not groups:
        return images.clone()
    ordered = sorted(groups, key=CORRUPTIONS.index)
    order = [i for name in ordered for i in groups[name]]
    in_place = order == list(range(b))  # every image corrupted, already ordered (e.g. one corruption)
    index = None if in_place else host_tensor(order, images.device, torch.long)
    picked = images if in_place else images.index_select(0, index)
    x = picked.float() / 255 if images.dtype == torch.uint8 else picked.float()
    results, start = [], 0
    for name in ordered:
        sevs = [severities[i] for i in groups[name]]
        gen = _group_generator(base, name, images.device)
        results.append(OPS[name](x[start:start + len(sevs)], sevs, PARAMS[resolved][name], gen, resolved))
        start += len(sevs)
    y = _to_dtype(results[0] if len(results) == 1 else torch.cat(results), images.dtype)
    if in_place:
        return y
    out = images.clone() if len(order) < b else torch.empty_like(images)  # identity samples keep their values
    return out.index_copy_(0, index, y)


def _to_dtype(values: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """Values in [0, 255] -> uint8 (clip + truncation, as the reference's ``np.uint8``) or float in [0, 1]."""
    if dtype == torch.uint8:
        return values.clamp_(0, 255).to(torch.uint8)
    return values.div_(255).clamp_(0, 1).to(dtype)
