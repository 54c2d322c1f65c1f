"""Fidelity of the noise, blur and digital corruptions to the ImageNet-C reference.

* Deterministic corruptions equal imagecorruptions-imaug (bit-identical to the reference for these, spec section 4)
  within 1 grey level on >= 99 % of the values, at 224 px and on a 32 px image, with the ImageNet table.
* Noise corruptions and glass blur: mean |corrupted - clean| per severity within 5 % of the oracle's over several
  seeds (the random streams differ by design).
* CIFAR / Tiny-ImageNet tables: strengths of the spec's "CIFAR-10-C reference" measurements, and the table entries
  applied by independent formulas (scipy, PIL, numpy).
"""
from __future__ import annotations

import numpy as np
import pytest
import scipy.ndimage as ndi
from PIL import Image

from vqsa.corruptions import PARAMS, corrupt

DETERMINISTIC = ("defocus_blur", "zoom_blur", "gaussian_blur", "brightness", "contrast", "saturate", "pixelate",
                 "jpeg_compression")


def _strength(images: list[np.ndarray], clean: np.ndarray) -> float:
    return float(np.mean([np.abs(im.astype(np.float64) - clean).mean() for im in images]))


@pytest.mark.parametrize("side", [224, 32])
@pytest.mark.parametrize("name", DETERMINISTIC)
def test_deterministic_equal_oracle(name, side, real_image, oracle):
    x = real_image(side)
    for severity in range(1, 6):
        ours = corrupt(x, severity, name, profile="imagenet").astype(np.int16)
        ref = oracle.corrupt(x, severity, name).astype(np.int16)
        diff = np.abs(ours - ref)
        assert (diff <= 1).mean() >= 0.99, (severity, (diff <= 1).mean())
        assert diff.mean() < 0.05, (severity, diff.mean())  # measured: 0 everywhere but a few zoom_blur values


def _oracle_strength(oracle, x: np.ndarray, severity: int, name: str, seeds: range) -> float:
    outs = []
    for seed in seeds:
        np.random.seed(seed)
        kwargs = {"seed": seed} if name == "glass_blur" else {}  # the numba glass blur has its own generator
        outs.append(oracle.corrupt(x, severity, name, **kwargs))
    return _strength(outs, x)


@pytest.mark.parametrize(("side", "seeds"), [(224, 4), (32, 60)])
@pytest.mark.parametrize("name", ["gaussian_noise", "shot_noise", "impulse_noise", "speckle_noise", "glass_blur"])
def test_stochastic_strength_equals_oracle(name, side, seeds, real_image, oracle):
    x = real_image(side)
    if name == "glass_blur" and side == 224:
        seeds = 2  # each oracle call is ~13 ms; per-severity strengths vary < 1 % between seeds at 224 px
    for severity in range(1, 6):
        ours = _strength([corrupt(x, severity, name, rng=1000 + s, profile="imagenet") for s in range(seeds)], x)
        ref = _oracle_strength(oracle, x, severity, name, range(seeds))
        assert abs(ours / ref - 1) < 0.05, (severity, ours, ref)


def test_stochastic_strength_responds_to_parameters(real_image):
    """The 5 % band above would not catch a swapped table entry; the severities must stay ordered and distinct."""
    x = real_image(224)
    for name in ("gaussian_noise", "shot_noise", "impulse_noise", "speckle_noise"):
        strengths = [_strength([corrupt(x, s, name, rng=0, profile="imagenet")], x) for s in range(1, 6)]
        assert all(b > a * 1.1 for a, b in zip(strengths, strengths[1:])), (name, strengths)


# Spec section 4, "CIFAR-10-C reference" column: mean |out - clean| on astronaut 32 px (PIL bilinear), 3 seeds.
CIFAR_REFERENCE = {
    "gaussian_noise": (7.7, 11.5, 15.2, 17.0, 18.8),
    "defocus_blur": (2.2, 5.6, 8.6, 11.2, 15.9),
    "pixelate": (2.5, 5.1, 7.4, 10.5, 15.4),
    "gaussian_blur": (2.2, 8.4, 10.8, 12.9, 16.6),
}


@pytest.mark.parametrize("name", sorted(CIFAR_REFERENCE))
def test_cifar_table_strengths(name, real_image):
    x = real_image(32)
    seeds = 30 if name == "gaussian_noise" else 1
    for severity, expected in enumerate(CIFAR_REFERENCE[name], start=1):
        got = _strength([corrupt(x, severity, name, rng=s) for s in range(seeds)], x)  # auto -> cifar at 32 px
        tolerance = 0.05 * expected if name == "gaussian_noise" else 0.051  # deterministic: rounding of the spec
        assert abs(got - expected) <= tolerance, (severity, got, expected)


def test_tiny_tables_applied(real_image):
    """Tiny-ImageNet entries applied as written, checked with independent implementations."""
    x = real_image(64)
    table = PARAMS["tinyimagenet"]
    for severity in range(1, 6):
        sigma = table["gaussian_blur"][severity - 1]
        expected = (np.clip(ndi.gaussian_filter(x / 255.0, (sigma, sigma, 0), mode="nearest"), 0, 1) * 255)
        diff = np.abs(corrupt(x, severity, "gaussian_blur").astype(int) - expected.astype(np.uint8))
        assert diff.max() <= 1 and (diff == 0).mean() > 0.999

        c = table["contrast"][severity - 1]
        f = x / 255.0
        means = f.mean(axis=(0, 1))
        expected = (np.clip((f - means) * c + means, 0, 1) * 255).astype(np.uint8)
        assert np.abs(corrupt(x, severity, "contrast").astype(int) - expected).max() <= 1

        c = table["pixelate"][severity - 1]
        small = Image.fromarray(x).resize((int(64 * c), int(64 * c)), Image.BOX)
        expected = np.asarray(small.resize((64, 64), Image.BOX))
        np.testing.assert_array_equal(corrupt(x, severity, "pixelate"), expected)


def test_tiny_noise_strength_follows_table(real_image):
    """Gaussian noise std per profile: the measured std of (out - clean) on mid-grey pixels equals the table value."""
    x = np.full((64, 64, 3), 128, np.uint8)
    for profile in ("tinyimagenet", "cifar", "imagenet"):
        for severity in (1, 3):  # (imagenet severity 5 would clip at 0 and 255)
            out = corrupt(x, severity, "gaussian_noise", rng=severity, profile=profile).astype(np.float64)
            std = (out - 128).std() / 255.0
            c = PARAMS[profile]["gaussian_noise"][severity - 1]
            assert abs(std / c - 1) < 0.06, (profile, severity, std, c)
