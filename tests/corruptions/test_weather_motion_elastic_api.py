"""Shapes, dtypes, seeding, sizes, motion-kernel semantics and frost texture lookup of the weather, motion and
elastic corruptions."""
from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from vqsa.corruptions import _frost, corrupt, elastic, motion, weather

NAMES = ("motion_blur", "snow", "frost", "fog", "elastic_transform", "spatter")
FUNCS = {"motion_blur": motion.motion_blur, "snow": weather.snow, "frost": weather.frost, "fog": weather.fog,
         "elastic_transform": elastic.elastic_transform, "spatter": weather.spatter}


def _image(h: int, w: int, seed: int = 0) -> np.ndarray:
    """A smooth random colour image with some edges (uint8)."""
    rng = np.random.default_rng(seed)
    small = rng.integers(0, 256, (max(2, h // 8), max(2, w // 8), 3)).astype(np.float64)
    rows = np.linspace(0, small.shape[0] - 1, h).round().astype(int)
    cols = np.linspace(0, small.shape[1] - 1, w).round().astype(int)
    return small[rows][:, cols].astype(np.uint8)


@pytest.fixture(autouse=True)
def _no_user_frost_dir(monkeypatch):
    monkeypatch.delenv(_frost.ENV_VAR, raising=False)
    monkeypatch.setattr(_frost, "_user_dir", None)


@pytest.mark.parametrize("shape", [(32, 32), (64, 64), (224, 224), (37, 53), (230, 97)])
@pytest.mark.parametrize("name", NAMES)
def test_shapes_dtypes_every_severity(name, shape):
    x = _image(*shape)
    for severity in range(1, 6):
        raw = FUNCS[name](x, severity, np.random.default_rng(severity), "imagenet" if min(shape) > 80 else "cifar")
        assert raw.shape == x.shape and np.all(np.isfinite(raw))
        assert raw.min() >= 0 and raw.max() <= 255
        out = corrupt(x, severity, name, rng=severity)
        assert out.shape == x.shape and out.dtype == np.uint8


@pytest.mark.parametrize("profile", ["imagenet", "cifar", "tinyimagenet"])
def test_every_profile_on_a_size_it_was_not_written_for(profile):
    """ImageNet tables on 32 px (motion trail longer than the image), CIFAR tables on 250 px (frost texture enlarged,
    plasma map larger than 32), Tiny tables on a tall image."""
    x = _image(*{"imagenet": (32, 40), "cifar": (250, 250), "tinyimagenet": (300, 70)}[profile])
    for name in NAMES:
        out = corrupt(x, 5, name, rng=1, profile=profile)
        assert out.shape == x.shape
        assert np.abs(out.astype(int) - x).mean() > 0.5, name


@pytest.mark.parametrize("name", NAMES)
def test_seed_reproduces_and_seeds_differ(name):
    x = _image(48, 64, seed=4)
    a = corrupt(x, 3, name, rng=11)
    np.testing.assert_array_equal(a, corrupt(x, 3, name, rng=11))
    np.testing.assert_array_equal(a, corrupt(x, 3, name, rng=np.random.default_rng(11)))
    assert not np.array_equal(a, corrupt(x, 3, name, rng=12))


def test_grey_input_gives_grey():
    x = _image(40, 40)[..., 0]
    assert corrupt(x, 2, "snow", rng=0).shape == (40, 40)


# ----------------------------------------------------------------------------------------------------- motion kernel
def test_motion_kernel_offsets_and_weights():
    w, dy, dx = motion.motion_kernel(10, 3, 0.0)
    assert w.size == 21 and np.isclose(w.sum(), 1) and np.all(np.diff(w) < 0)
    np.testing.assert_array_equal(dx, np.arange(21))
    np.testing.assert_array_equal(dy, np.zeros(21))
    _, dy, dx = motion.motion_kernel(2.5, 1, 90.0)  # width 2 * ceil(2.5) + 1 = 7, trail straight down
    np.testing.assert_array_equal(dy, np.arange(7))
    np.testing.assert_array_equal(dx, np.zeros(7))
    _, dy, dx = motion.motion_kernel(3, 1, -45.0)
    np.testing.assert_array_equal(dx, np.ceil(np.arange(7) * np.cos(np.pi / 4) - 0.5))
    np.testing.assert_array_equal(dy, np.ceil(-np.arange(7) * np.sin(np.pi / 4) - 0.5))


def test_motion_blur_impulse_response_is_the_kernel():
    x = np.zeros((41, 41), np.uint8)
    x[20, 20] = 255
    w, dy, dx = motion.motion_kernel(6, 2, 30.0)
    out = motion.magick_motion_blur(x, 6, 2, 30.0)
    expected = np.zeros((41, 41))
    np.add.at(expected, (20 - dy, 20 - dx), 255 * w)  # out(y, x) = sum_i w_i in(y + dy_i, x + dx_i)
    np.testing.assert_array_equal(out, np.floor(expected + motion.HALF_Q16).astype(np.uint8))


def test_motion_blur_keeps_flat_areas_exact_and_replicates_edges():
    x = np.repeat(np.arange(256, dtype=np.uint8)[:, None], 40, axis=1)  # each row constant
    np.testing.assert_array_equal(motion.magick_motion_blur(x, 20, 15, 0.0), x)  # horizontal trail, longer than W
    rgb = np.repeat(x[..., None], 3, axis=2)
    np.testing.assert_array_equal(motion.magick_motion_blur(rgb, 9, 2.5, 180.0), rgb)


def test_motion_blur_rejects_bad_input():
    with pytest.raises(TypeError, match="uint8"):
        motion.magick_motion_blur(np.zeros((8, 8), np.float32), 3, 1, 0.0)
    with pytest.raises(ValueError, match="sigma"):
        motion.motion_kernel(3, 0, 0.0)
    with pytest.raises(ValueError, match="radius"):
        motion.motion_kernel(float("nan"), 1, 0.0)


# ------------------------------------------------------------------------------------------------------------- fog
def test_plasma_mapsize_rule_and_validation():
    assert weather.plasma_mapsize(224, 224, "imagenet") == 256
    assert weather.plasma_mapsize(32, 32, "cifar") == 32
    assert weather.plasma_mapsize(40, 33, "cifar") == 64
    assert weather.plasma_mapsize(300, 120, "imagenet") == 512
    assert weather.plasma_mapsize(64, 64, "imagenet") == 256  # small images crop the profile's map
    with pytest.raises(ValueError, match="power of two"):
        weather.plasma_fractal(48, 2.0, np.random.default_rng(0))


# ----------------------------------------------------------------------------------------------------------- frost
@pytest.fixture()
def texture_copy(tmp_path) -> Path:
    """A user folder holding copies of the five textures (test-only copy, never committed)."""
    src = _frost.installed_frost_dir()
    if src is None:
        pytest.skip("no imagecorruptions wheel with frost textures installed")
    for name in _frost.FROST_FILES:
        shutil.copy(src / name, tmp_path / name)
    return tmp_path


def test_frost_missing_textures_error(monkeypatch, tmp_path):
    monkeypatch.setenv(_frost.ENV_VAR, str(tmp_path))
    with pytest.raises(FileNotFoundError, match=r"vqsa\[frost\].*VQSA_FROST_DIR"):
        corrupt(_image(32, 32), 1, "frost", rng=0)
    monkeypatch.delenv(_frost.ENV_VAR)
    monkeypatch.setattr(_frost, "installed_frost_dir", lambda: None)
    with pytest.raises(FileNotFoundError, match="frost1.png"):
        _frost.frost_dir()


def test_frost_loads_from_user_dir_and_env(monkeypatch, texture_copy):
    x = _image(64, 96)
    default = corrupt(x, 4, "frost", rng=5)
    monkeypatch.setattr(_frost, "installed_frost_dir", lambda: None)
    monkeypatch.setenv(_frost.ENV_VAR, str(texture_copy))
    np.testing.assert_array_equal(corrupt(x, 4, "frost", rng=5), default)
    monkeypatch.delenv(_frost.ENV_VAR)
    _frost.set_frost_dir(texture_copy)
    assert _frost.frost_dir() == texture_copy
    np.testing.assert_array_equal(corrupt(x, 4, "frost", rng=5), default)
    with pytest.raises(TypeError):
        _frost.set_frost_dir(3)


def test_frost_md5_mismatch_warns(texture_copy):
    tex = texture_copy / "frost4.jpg"
    tex.write_bytes(tex.read_bytes() + b"\0")  # still decodable, different bytes
    _frost.set_frost_dir(texture_copy)
    with pytest.warns(RuntimeWarning, match="md5"):
        for seed in range(40):  # until texture 4 is drawn
            corrupt(_image(32, 32), 1, "frost", rng=seed)


def test_frost_decodes_once(monkeypatch):
    x = _image(32, 32)
    for seed in range(30):  # warm the cache for every texture at the CIFAR scale
        corrupt(x, 2, "frost", rng=seed)

    def no_reads(self):
        raise AssertionError(f"frost re-read {self}")

    monkeypatch.setattr(Path, "read_bytes", no_reads)
    for seed in range(30):
        corrupt(x, 2, "frost", rng=seed)


def test_frost_texture_enlarged_minimally():
    big = _frost.frost_texture(1, 1.0, 400, 700)  # frost2 is 315 x 560
    assert big.shape[0] >= 401 and big.shape[1] >= 701
    assert min(big.shape[0] - 401, big.shape[1] - 701) <= 1
    assert _frost.frost_texture(1, 1.0, 224, 224).shape == (315, 560, 3)  # reference size: no rescale
    with pytest.raises(ValueError, match="index"):
        _frost.frost_texture(5, 1.0, 32, 32)


@pytest.mark.data
def test_real_imagenet_images_at_natural_resolution(imagenet_sample):
    """Natural-size ImageNet photos (non-square, often larger than a frost texture): every corruption runs."""
    from PIL import Image

    files = sorted(imagenet_sample.rglob("*.JPEG"))[:3]
    assert files, "imagenet_sample holds no JPEG"
    for i, path in enumerate(files):
        with Image.open(path) as im:
            x = np.asarray(im.convert("RGB"))
        for name in NAMES:
            out = corrupt(x, 5, name, rng=i)
            assert out.shape == x.shape and out.dtype == np.uint8
            assert np.abs(out.astype(np.int16) - x).mean() > 1.0, (name, path.name)
