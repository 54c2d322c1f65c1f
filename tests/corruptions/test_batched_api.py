"""corrupt_batch: shapes, dtypes, device, per-sample mixing, reproducibility and bad input (no real data needed)."""
import numpy as np
import pytest
import torch

from vqsa.corruptions import CORRUPTIONS
from vqsa.corruptions.batched import corrupt_batch
from vqsa.corruptions.batched.blur import shuffle_chain


def _images(n=4, size=32, seed=0):
    g = torch.Generator().manual_seed(seed)
    base = torch.linspace(0, 255, size).reshape(1, 1, 1, size) + torch.linspace(0, 120, size).reshape(1, 1, size, 1)
    noise = torch.randint(-40, 40, (n, 3, size, size), generator=g)
    return (base * 0.6 + noise + 40).clamp(0, 255).to(torch.uint8)


@pytest.mark.parametrize("name", CORRUPTIONS)
def test_every_corruption_keeps_shape_dtype_device(name):
    x = _images(2)
    for images in (x, x.float() / 255, x.double() / 255):
        y = corrupt_batch(images, name, 3, generator=torch.Generator().manual_seed(1))
        assert y.shape == images.shape and y.dtype == images.dtype and y.device == images.device
        if y.is_floating_point():
            assert 0 <= y.min() and y.max() <= 1
        assert not torch.equal(y, images), f"{name} left the batch unchanged"
    wants_grad = (x.float() / 255).requires_grad_()  # differentiable where the ops are (docs list which are not)
    y = corrupt_batch(wants_grad, name, 3, generator=torch.Generator().manual_seed(1))
    if name == "jpeg_compression":
        assert not y.requires_grad
    else:
        y.sum().backward()
        assert (wants_grad.grad.abs().sum() > 0) == (name not in ("shot_noise", "glass_blur", "frost", "pixelate"))


def test_float_and_uint8_paths_agree():
    x = _images(3)
    for name in ("gaussian_noise", "defocus_blur", "pixelate", "saturate", "frost", "jpeg_compression"):
        yu = corrupt_batch(x, name, 4, generator=torch.Generator().manual_seed(5))
        yf = corrupt_batch(x.float() / 255, name, 4, generator=torch.Generator().manual_seed(5))
        # float output is unquantised; the uint8 output truncates it (float error may move an exact integer by one)
        assert (yf * 255 - yu.float()).abs().max() <= 1.0 + 1e-3, name


def test_identity_entries_and_numbers():
    x = _images(4)
    y = corrupt_batch(x, ["clean", None, 0, "contrast"], [0, 3, 2, 5])
    assert torch.equal(y[:2], x[:2])
    assert torch.equal(y[3:], corrupt_batch(x[3:], CORRUPTIONS.index("contrast"), 5))
    assert torch.equal(corrupt_batch(x, "clean", 1), x)
    as_arrays = corrupt_batch(x, np.array(["clean", "clean", "contrast", "contrast"]), torch.tensor([0, 0, 2, 5]))
    assert torch.equal(as_arrays[2:], corrupt_batch(x[2:], "contrast", [2, 5]))


def test_per_sample_mixing_equals_separate_calls():
    x = _images(6)
    names = ["gaussian_noise", "glass_blur", "gaussian_noise", "fog", "zoom_blur", "glass_blur"]
    sevs = [2, 1, 5, 5, 3, 4]
    mixed = corrupt_batch(x, names, sevs, generator=torch.Generator().manual_seed(7))
    for name in set(names):
        idx = [i for i, n in enumerate(names) if n == name]
        alone = corrupt_batch(x[idx], name, [sevs[i] for i in idx], generator=torch.Generator().manual_seed(7))
        assert torch.equal(mixed[idx], alone), name


@pytest.mark.parametrize("name", ["defocus_blur", "zoom_blur", "pixelate", "gaussian_blur", "saturate", "contrast",
                                  "brightness", "jpeg_compression"])
def test_mixed_severities_equal_single_severity_calls(name):
    x = _images(5)
    sevs = [5, 1, 3, 1, 2]
    mixed = corrupt_batch(x, name, sevs).int()
    for i, s in enumerate(sevs):  # per-sample kernels/matrices are zero-padded: float sums may differ in the last bit
        assert (mixed[i] - corrupt_batch(x[i:i + 1], name, s)[0].int()).abs().max() <= 1, (name, s)


def test_generator_reproducibility_and_independence():
    x = _images(4)
    names = ["shot_noise", "motion_blur", "snow", "elastic_transform"]
    a = corrupt_batch(x, names, 3, generator=torch.Generator().manual_seed(3))
    b = corrupt_batch(x, names, 3, generator=torch.Generator().manual_seed(3))
    c = corrupt_batch(x, names, 3, generator=torch.Generator().manual_seed(4))
    assert torch.equal(a, b)
    assert all(not torch.equal(a[i], c[i]) for i in range(4))
    g = torch.Generator().manual_seed(3)
    first, second = corrupt_batch(x, names, 3, generator=g), corrupt_batch(x, names, 3, generator=g)
    assert torch.equal(first, a) and not torch.equal(first, second)  # the generator advances
    torch.manual_seed(11)
    d = corrupt_batch(x, names, 3)
    torch.manual_seed(11)
    assert torch.equal(d, corrupt_batch(x, names, 3))  # None: torch's global generator


def test_glass_shuffle_equals_the_sequential_copy_chain():
    g = torch.Generator().manual_seed(0)
    for h, w, d in ((14, 17, 2), (12, 12, 1), (20, 16, 4)):
        img = torch.randint(0, 256, (2, 3, h, w), generator=g).float()
        off = torch.randint(-d, d, (2, 2, h - 2 * d, w - 2 * d), generator=g)
        got = shuffle_chain(img, off[:, 1], off[:, 0], d)
        ref = img.numpy().copy()
        for n in range(2):
            for i, r in enumerate(range(h - d, d, -1)):
                for j, c in enumerate(range(w - d, d, -1)):
                    ti, tj = r - d - 1, c - d - 1  # offsets are stored by target row/col ascending
                    dx, dy = int(off[n, 0, ti, tj]), int(off[n, 1, ti, tj])
                    ref[n, :, r, c] = ref[n, :, r + dy, c + dx]
        np.testing.assert_array_equal(got.numpy(), ref)


@pytest.mark.parametrize("images, error", [
    (np.zeros((1, 3, 32, 32), np.uint8), TypeError),
    (torch.zeros(3, 32, 32, dtype=torch.uint8), ValueError),
    (torch.zeros(1, 1, 32, 32, dtype=torch.uint8), ValueError),
    (torch.zeros(1, 32, 32, 3, dtype=torch.uint8), ValueError),
    (torch.zeros(1, 3, 16, 32, dtype=torch.uint8), ValueError),
    (torch.zeros(1, 3, 32, 32, dtype=torch.int32), TypeError),
    (torch.full((1, 3, 32, 32), 1.5), ValueError),
    (torch.full((1, 3, 32, 32), -0.1), ValueError),
    (torch.full((1, 3, 32, 32), float("nan")), ValueError),
])
def test_bad_images(images, error):
    with pytest.raises(error):
        corrupt_batch(images, "contrast", 1)


@pytest.mark.parametrize("corruptions, severities, error, words", [
    ("snowy", 1, ValueError, "unknown corruption"),
    (19, 1, ValueError, "corruption number"),
    (1.5, 1, TypeError, "corruption"),
    (["fog"] * 3, 1, ValueError, "3 entries"),
    ("fog", [1, 2, 3], ValueError, "3 entries"),
    ("fog", 0, ValueError, "severity"),
    ("fog", 6, ValueError, "severity"),
    ("fog", 2.0, TypeError, "severity"),
    ("fog", True, TypeError, "severity"),
    ("clean", 6, ValueError, "severity"),
    ((n for n in ["fog", "snow"]), 1, TypeError, "one entry per image, got a generator"),
    ({"fog", "snow"}, 1, TypeError, "got a set"),
])
def test_bad_names_and_severities(corruptions, severities, error, words):
    with pytest.raises(error, match=words):
        corrupt_batch(_images(2), corruptions, severities)


def test_bad_generator_and_profile():
    with pytest.raises(TypeError, match="generator"):
        corrupt_batch(_images(1), "fog", 1, generator=123)
    with pytest.raises(ValueError, match="profile"):
        corrupt_batch(_images(1), "fog", 1, profile="mnist")


def test_accelerator_seed_comes_from_the_host_state_and_advances_the_generator():
    from vqsa.corruptions.batched._api import _seed_from_state

    a, b = torch.Generator().manual_seed(7), torch.Generator().manual_seed(7)
    first = _seed_from_state(a)
    assert first == _seed_from_state(b)  # same state, same seed
    assert _seed_from_state(a) != first  # the generator moved on
    assert 0 <= first < 2**63
