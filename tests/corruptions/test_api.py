"""corrupt() / get_corruption_names() contract, parameter tables, input validation and the shared helpers."""
from __future__ import annotations

import subprocess
import sys

import numpy as np
from PIL import Image
import pytest
import scipy.ndimage as ndi

from vqsa.corruptions import CORRUPTIONS, PARAMS, PROFILES, SUBSETS, corrupt, get_corruption_function
from vqsa.corruptions import get_corruption_names, resolve_profile
from vqsa.corruptions._params import FROST_SCALE, PLASMA_MAPSIZE, REFERENCE_SIZE
from vqsa.corruptions._util import clipped_zoom, gaussian
from vqsa.corruptions.blur import _zoom_blur_operator, shuffle_sources, zoom_blur

DETERMINISTIC = ("defocus_blur", "zoom_blur", "gaussian_blur", "brightness", "contrast", "saturate", "pixelate",
                 "jpeg_compression")
STOCHASTIC = tuple(n for n in CORRUPTIONS if n not in DETERMINISTIC)


def _noise_image(h: int, w: int, seed: int = 0) -> np.ndarray:
    """A smooth image with texture (so every corruption changes it visibly)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w]
    base = np.stack([128 + 90 * np.sin(xx / 7.0), 128 + 90 * np.cos(yy / 5.0), (xx + yy) % 256], axis=-1)
    return np.clip(base + rng.normal(0, 12, base.shape), 0, 255).astype(np.uint8)


# ---------------------------------------------------------------------------------------------------------- names


def test_names_and_subsets_match_imagecorruptions_layout():
    assert len(CORRUPTIONS) == 19 and len(set(CORRUPTIONS)) == 19
    assert get_corruption_names() == list(CORRUPTIONS[:15])
    assert get_corruption_names("all") == list(CORRUPTIONS)
    assert get_corruption_names("validation") == ["speckle_noise", "gaussian_blur", "spatter", "saturate"]
    assert get_corruption_names("noise") == ["gaussian_noise", "shot_noise", "impulse_noise"]
    assert get_corruption_names("blur") == ["defocus_blur", "glass_blur", "motion_blur", "zoom_blur"]
    assert get_corruption_names("weather") == ["snow", "frost", "fog", "brightness"]
    assert get_corruption_names("digital") == ["contrast", "elastic_transform", "pixelate", "jpeg_compression"]
    names = get_corruption_names("all")
    names.append("x")  # a fresh list each call
    assert get_corruption_names("all") == list(CORRUPTIONS)


def test_names_equal_oracle(oracle):
    for subset in SUBSETS:
        assert get_corruption_names(subset) == oracle.get_corruption_names(subset), subset


# ---------------------------------------------------------------------------------------------------------- tables


def test_parameter_tables_complete():
    assert set(PARAMS) == set(PROFILES) == set(FROST_SCALE) == set(PLASMA_MAPSIZE) == set(REFERENCE_SIZE)
    for profile in PROFILES:
        assert tuple(PARAMS[profile]) == CORRUPTIONS, profile
        for name, table in PARAMS[profile].items():
            assert len(table) == 5, (profile, name)
    assert (FROST_SCALE["cifar"], FROST_SCALE["tinyimagenet"], PLASMA_MAPSIZE["imagenet"]) == (0.2, 0.3, 256)


def test_zoom_tables_are_the_exact_arange_arrays():
    imagenet = PARAMS["imagenet"]["zoom_blur"]
    assert [len(z) for z in imagenet] == [12, 16, 11, 13, 11]
    assert [z[-1] for z in imagenet] == [1.11, 1.1500000000000001, 1.2000000000000002, 1.2400000000000002,
                                         1.3000000000000003]
    assert [len(z) for z in PARAMS["cifar"]["zoom_blur"]] == [7, 12, 16, 21, 26]
    np.testing.assert_array_equal(PARAMS["cifar"]["zoom_blur"][4], np.arange(1, 1.26, 0.01))
    with pytest.raises(ValueError):
        imagenet[0][0] = 2.0  # read-only


def test_elastic_and_spot_values():
    assert PARAMS["imagenet"]["elastic_transform"][0] == (244 * 2, 244 * 0.7, 244 * 0.1)
    assert PARAMS["cifar"]["elastic_transform"][0] == (0, 0, 32 * 0.08)
    assert PARAMS["tinyimagenet"]["elastic_transform"][4] == (64 * 0.16, 64 * 0.03, 64 * 0.02)
    assert PARAMS["cifar"]["gaussian_noise"] == (0.04, 0.06, 0.08, 0.09, 0.10)
    assert PARAMS["tinyimagenet"]["saturate"][4] == (30, 0.2)
    assert PARAMS["imagenet"]["glass_blur"][4] == (1.5, 4, 2)


@pytest.mark.parametrize(("h", "w", "expected"), [(32, 32, "cifar"), (40, 500, "cifar"), (41, 41, "tinyimagenet"),
                                                  (80, 64, "tinyimagenet"), (81, 81, "imagenet"),
                                                  (224, 224, "imagenet"), (500, 81, "imagenet")])
def test_auto_profile(h, w, expected):
    assert resolve_profile("auto", h, w) == expected
    assert resolve_profile("cifar", h, w) == "cifar"


def test_auto_profile_is_applied():
    x = _noise_image(32, 32)
    assert np.array_equal(corrupt(x, 3, "gaussian_blur"), corrupt(x, 3, "gaussian_blur", profile="cifar"))
    assert not np.array_equal(corrupt(x, 3, "gaussian_blur"), corrupt(x, 3, "gaussian_blur", profile="imagenet"))


# ---------------------------------------------------------------------------------------------------------- shapes


@pytest.mark.parametrize("name", CORRUPTIONS)
def test_every_corruption_keeps_dtype_and_shape(name):
    for side in (32, 64, 224):
        x = _noise_image(side, side)
        for severity in range(1, 6):
            out = corrupt(x, severity, name, rng=severity)
            assert out.dtype == np.uint8 and out.shape == x.shape, (side, severity)
            # a fresh array that cv2.rectangle and torch.from_numpy take as is (pixelate and JPEG came back
            # read-only, elastic transform channel-planar)
            assert out.flags.c_contiguous and out.flags.writeable and not np.shares_memory(out, x), (side, severity)
            if severity == 5:
                assert np.abs(out.astype(int) - x).mean() > 0.5, (side, "no visible change")


@pytest.mark.parametrize("name", CORRUPTIONS)
def test_non_square_and_grey(name):
    for h, w in ((48, 80), (81, 37)):
        x = _noise_image(h, w)
        for severity in (1, 5):
            assert corrupt(x, severity, name, rng=0).shape == (h, w, 3)
    grey = _noise_image(40, 56)[..., 0]
    rgb = np.repeat(grey[..., None], 3, axis=2)
    expected = np.asarray(Image.fromarray(corrupt(rgb, 4, name, rng=7)).convert("L"))
    assert np.array_equal(corrupt(grey, 4, name, rng=7), expected)  # grey in, grey out (PIL luma of the RGB result)
    assert np.array_equal(corrupt(grey[..., None], 4, name, rng=7), expected[..., None])


def test_grey_output_keeps_input_shape():
    grey = _noise_image(40, 56)[..., 0]
    assert corrupt(grey, 1, "contrast").shape == (40, 56)
    assert corrupt(grey[..., None], 1, "contrast").shape == (40, 56, 1)


def test_corruption_number_and_name_agree():
    x = _noise_image(32, 32)
    for number, name in enumerate(CORRUPTIONS):
        if name in DETERMINISTIC:
            assert np.array_equal(corrupt(x, 2, corruption_number=number), corrupt(x, 2, name))
    # the name wins when both are given (as imagecorruptions)
    assert np.array_equal(corrupt(x, 2, "contrast", 3), corrupt(x, 2, "contrast"))


# ---------------------------------------------------------------------------------------------------------- seeding


@pytest.mark.parametrize("name", STOCHASTIC)
def test_seed_reproduces_and_differs(name):
    x = _noise_image(64, 64)
    a = corrupt(x, 3, name, rng=123)
    assert np.array_equal(a, corrupt(x, 3, name, rng=123))
    assert np.array_equal(a, corrupt(x, 3, name, rng=np.random.default_rng(123)))
    assert not np.array_equal(a, corrupt(x, 3, name, rng=124))
    gen = np.random.default_rng(6)
    first = corrupt(x, 3, name, rng=gen)
    assert any(not np.array_equal(first, corrupt(x, 3, name, rng=gen)) for _ in range(2))  # the generator advances


def test_seeded_output_is_pinned():
    """Same seed -> same output on every platform and run: checksums recorded with numpy 2.4 (PCG64 streams are
    platform independent; numpy may change a sampling algorithm across major versions, then re-record)."""
    x = _noise_image(32, 32)
    sums = [int(corrupt(x, 3, n, rng=2023).astype(np.int64).sum()) for n in
            ("gaussian_noise", "shot_noise", "impulse_noise", "speckle_noise", "glass_blur")]
    assert sums == PINNED_SUMS


PINNED_SUMS = [318217, 316055, 317874, 315781, 314344]


@pytest.mark.parametrize("name", DETERMINISTIC)
def test_deterministic_ignore_seed(name):
    x = _noise_image(48, 48)
    assert np.array_equal(corrupt(x, 4, name, rng=1), corrupt(x, 4, name))


def test_input_not_modified():
    x = _noise_image(40, 40)
    before = x.copy()
    for name in ("impulse_noise", "glass_blur", "contrast", "pixelate"):
        corrupt(x, 5, name, rng=0)
    assert np.array_equal(x, before)


def test_non_contiguous_input():
    x = _noise_image(64, 96)
    view = x[:, ::2]
    assert np.array_equal(corrupt(view, 3, "defocus_blur"), corrupt(np.ascontiguousarray(view), 3, "defocus_blur"))


# ---------------------------------------------------------------------------------------------------------- errors


@pytest.mark.parametrize(("kwargs", "error", "match"), [
    (dict(image=[[0] * 32] * 32), TypeError, "numpy.ndarray"),
    (dict(image=np.zeros((32, 32, 3), np.float32)), TypeError, "uint8"),
    (dict(image=np.zeros((32, 32, 3), np.uint16)), TypeError, "uint8"),
    (dict(image=np.zeros((32, 32, 4), np.uint8)), ValueError, "channels"),
    (dict(image=np.zeros((32, 32, 2), np.uint8)), ValueError, "channels"),
    (dict(image=np.zeros((2, 32, 32, 3), np.uint8)), ValueError, "shape"),
    (dict(image=np.zeros((32,), np.uint8)), ValueError, "shape"),
    (dict(image=np.zeros((31, 64, 3), np.uint8)), ValueError, "at least 32"),
    (dict(image=np.zeros((64, 20), np.uint8)), ValueError, "at least 32"),
    (dict(corruption_name="fog_blur"), ValueError, "unknown corruption_name"),
    (dict(corruption_name=3), ValueError, "unknown corruption_name"),
    (dict(corruption_name=None, corruption_number=19), ValueError, "corruption_number"),
    (dict(corruption_name=None, corruption_number=-2), ValueError, "corruption_number"),
    (dict(corruption_name=None, corruption_number=2.0), TypeError, "corruption_number"),
    (dict(corruption_name=None), ValueError, "either corruption_name or corruption_number"),
    (dict(severity=0), ValueError, "severity"),
    (dict(severity=6), ValueError, "severity"),
    (dict(severity=2.5), TypeError, "severity"),
    (dict(severity=True), TypeError, "severity"),
    (dict(profile="imagenet-c"), ValueError, "profile"),
    (dict(rng="seed"), TypeError, "rng"),
    (dict(rng=1.5), TypeError, "rng"),
    (dict(rng=-1), ValueError, "seed"),
])
def test_bad_input(kwargs, error, match):
    args = dict(image=np.zeros((32, 32, 3), np.uint8), severity=1, corruption_name="gaussian_noise")
    args.update(kwargs)
    with pytest.raises(error, match=match):
        corrupt(**args)


def test_bad_subset_and_lookup():
    with pytest.raises(ValueError, match="subset"):
        get_corruption_names("weird")
    with pytest.raises(ValueError, match="unknown corruption"):
        get_corruption_function("nope")


# ---------------------------------------------------------------------------------------------------------- helpers


def test_gaussian_matches_scipy():
    rng = np.random.default_rng(0)
    for shape in ((40, 70, 3), (33, 45), (32, 32, 1)):
        x = rng.random(shape)
        for sigma in (0.4, 1.5, 6.0, 40.0):  # 40: kernel wider than the image -> scipy path
            for mode in ("nearest", "reflect"):
                sig = (sigma, sigma) + (0,) * (len(shape) - 2)
                expected = ndi.gaussian_filter(x, sig, mode=mode, truncate=4.0)
                np.testing.assert_allclose(gaussian(x, sigma, mode=mode), expected, rtol=0, atol=1e-12)
    assert gaussian(x.astype(np.float32), 1.0).dtype == np.float32
    np.testing.assert_array_equal(gaussian(x, 0), x)
    with pytest.raises(ValueError, match="mode"):
        gaussian(x, 1.0, mode="wrap")


def _reference_clipped_zoom(img: np.ndarray, z: float) -> np.ndarray:
    """The reference's clipped_zoom (square images): centre crop, scipy zoom order 1, centre trim."""
    h = img.shape[0]
    ch = int(np.ceil(h / float(z)))
    top = (h - ch) // 2
    out = ndi.zoom(img[top:top + ch, top:top + ch], (z, z) + (1,) * (img.ndim - 2), order=1)
    trim = (out.shape[0] - h) // 2
    return out[trim:trim + h, trim:trim + h]


def test_clipped_zoom_matches_reference_and_handles_non_square():
    rng = np.random.default_rng(1)
    for side in (32, 64, 100, 224):
        for z in (1.0, 1.06, 1.15, 1.2400000000000002, 1.75, 2.25, 4.5):
            x = rng.random((side, side, 3))
            np.testing.assert_allclose(clipped_zoom(x, z), _reference_clipped_zoom(x, z), rtol=0, atol=1e-12)
    x = rng.random((50, 90, 1)).astype(np.float32)
    out = clipped_zoom(x, 2.5)
    assert out.shape == x.shape and out.dtype == np.float32
    # each axis zooms about its own centre: a row profile zooms as it would in a square image of its height
    profile = rng.random(40)
    y = np.repeat(profile[:, None], 64, axis=1)
    square = _reference_clipped_zoom(np.repeat(profile[:, None], 40, axis=1), 1.5)
    np.testing.assert_allclose(clipped_zoom(y, 1.5), np.repeat(square[:, :1], 64, axis=1), rtol=0, atol=1e-12)
    np.testing.assert_allclose(clipped_zoom(y.T, 1.5), np.repeat(square[:, :1], 64, axis=1).T, rtol=0, atol=1e-12)
    with pytest.raises(ValueError, match="zoom"):
        clipped_zoom(y, 0.5)


def test_zoom_blur_operator_equals_sum_of_zooms():
    """The cached sparse operator (small images) and the per-zoom path (large images) are the same map."""
    x = _noise_image(60, 44) / 255.0
    zooms = tuple(float(z) for z in PARAMS["imagenet"]["zoom_blur"][4])
    direct = (x + sum(clipped_zoom(x, z) for z in zooms)) / (len(zooms) + 1)
    via_operator = (_zoom_blur_operator(60, 44, zooms) @ x.reshape(-1, 3)).reshape(x.shape)
    np.testing.assert_allclose(via_operator, direct, rtol=0, atol=1e-12)
    big = _noise_image(300, 260)
    out = zoom_blur(big, 2, np.random.default_rng(0), "imagenet")  # > 256^2 pixels: per-zoom path
    zooms = tuple(float(z) for z in PARAMS["imagenet"]["zoom_blur"][1])
    xb = big / 255.0
    expected = np.clip((xb + sum(clipped_zoom(xb, z) for z in zooms)) / (len(zooms) + 1), 0, 1) * 255
    np.testing.assert_array_equal(out, expected.astype(np.uint8))


def _sequential_shuffle(img: np.ndarray, delta: int, offsets: np.ndarray) -> np.ndarray:
    """The reference's loop (descending rows and columns, copy not swap), with given (dx, dy) per visited pixel."""
    img = img.copy()
    h, w = img.shape[:2]
    for i, row in enumerate(range(h - delta, delta, -1)):
        for j, col in enumerate(range(w - delta, delta, -1)):
            dx, dy = offsets[i, j]
            img[row, col] = img[row + dy, col + dx]
    return img


@pytest.mark.parametrize(("h", "w", "delta"), [(36, 36, 1), (37, 45, 2), (45, 34, 3), (40, 40, 4)])
def test_glass_shuffle_equals_sequential_loop(h, w, delta):
    rng = np.random.default_rng(h * w + delta)
    img = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
    for _ in range(3):
        codes = rng.integers(0, 4 * delta * delta, size=(h - 2 * delta, w - 2 * delta))
        offsets = np.stack([codes % (2 * delta) - delta, codes // (2 * delta) - delta], axis=-1)  # (dx, dy)
        targets, sources = shuffle_sources(h, w, delta, codes)
        flat = img.reshape(-1, 3).copy()
        flat[targets] = flat[sources]
        assert np.array_equal(flat.reshape(img.shape), _sequential_shuffle(img, delta, offsets))


def test_import_is_light_and_batched_engine_reexported(child_env):
    code = ("import sys, vqsa.corruptions as c; c.corrupt(__import__('numpy').zeros((32, 32), 'uint8'), 1, 'contrast');"
            "assert 'torch' not in sys.modules and 'vqsa.corruptions.motion' not in sys.modules")
    subprocess.run([sys.executable, "-c", code], check=True, env=child_env)
    import vqsa
    import vqsa.corruptions as corruptions
    from vqsa.corruptions.batched import RandomCorruption, corrupt_batch

    assert corruptions.corrupt_batch is corrupt_batch is vqsa.corrupt_batch
    assert corruptions.RandomCorruption is RandomCorruption
    with pytest.raises(AttributeError, match="no attribute"):
        corruptions.not_a_name  # noqa: B018


def test_one_resolve_corruptions_serves_training_evaluation_and_the_writers():
    from vqsa.corruptions import resolve_corruptions
    from vqsa.corruptions.dataset_writer import requested_corruptions
    from vqsa.eval.datasets import resolve_corruptions as eval_resolve
    from vqsa.train.inputs import resolve_corruptions as train_resolve

    spec = ["noise", "fog", "gaussian_noise", "unknown"]
    expected = ("gaussian_noise", "shot_noise", "impulse_noise", "fog", "speckle_noise", "gaussian_blur", "spatter",
                "saturate")
    assert resolve_corruptions(spec) == train_resolve(spec) == tuple(eval_resolve(spec)) == expected
    assert resolve_corruptions("known") == resolve_corruptions("common") and len(resolve_corruptions("common")) == 15
    assert resolve_corruptions([]) == resolve_corruptions("none") == ()
    with pytest.raises(ValueError, match="no corruptions requested"):
        requested_corruptions([])
    with pytest.raises(ValueError, match="unknown corruption or subset 'fogg'"):
        resolve_corruptions("fogg")
    with pytest.raises(TypeError, match="must be strings"):
        resolve_corruptions([3])


def test_one_severity_check_serves_the_engine_the_writers_and_evaluation():
    from vqsa.corruptions import check_severities
    from vqsa.corruptions.writers import check_severities as writers_check
    from vqsa.eval.datasets import resolve_severities

    assert writers_check is check_severities
    assert check_severities(3) == (3,) and check_severities([5, 1]) == (5, 1) and resolve_severities([5, 1]) == [1, 5]
    for bad, err, match in (([], ValueError, "no severities"), ([1, 1], ValueError, "duplicate"),
                            ([0], ValueError, r"in \[1, 5\]"), ([True], TypeError, "an int")):
        with pytest.raises(err, match=match):
            check_severities(bad)
