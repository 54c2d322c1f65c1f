"""The integer torch JPEG round trip equals Pillow's (libjpeg-turbo) bit for bit."""
import io

import numpy as np
import pytest
import torch
from PIL import Image

from vqsa.corruptions import corrupt
from vqsa.corruptions.batched import corrupt_batch
from vqsa.corruptions.batched.jpeg import jpeg_roundtrip, quant_tables


def _pillow(image: np.ndarray, quality: int) -> np.ndarray:
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="JPEG", quality=quality)
    with Image.open(buffer) as im:
        return np.asarray(im.convert("RGB"))


def _torch(images: np.ndarray, qualities: list[int]) -> np.ndarray:
    x = torch.from_numpy(np.array(images)).permute(0, 3, 1, 2)
    return jpeg_roundtrip(x, qualities).permute(0, 2, 3, 1).numpy()


def _textured(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    """Smooth gradients plus edges plus noise: exercises every DCT frequency and the chroma paths."""
    yy, xx = np.mgrid[0:h, 0:w]
    base = np.stack([128 + 100 * np.sin(xx / (3 + c) + yy / (5 + 2 * c)) for c in range(3)], -1)
    base[h // 3:, w // 2:] = 255 - base[h // 3:, w // 2:]
    return np.clip(base + rng.normal(0, 12, base.shape), 0, 255).astype(np.uint8)


@pytest.mark.parametrize("size", [(32, 32), (33, 47), (17, 90), (64, 48)])
def test_bit_identical_to_pillow_across_sizes_and_qualities(size):
    rng = np.random.default_rng(sum(size))
    images = np.stack([_textured(rng, *size), rng.integers(0, 256, (*size, 3), dtype=np.uint8)])
    for quality in (1, 7, 10, 15, 18, 25, 40, 50, 51, 58, 65, 80, 95, 100):
        got = _torch(images, [quality, quality])
        for image, out in zip(images, got):
            np.testing.assert_array_equal(out, _pillow(image, quality), err_msg=f"size {size} quality {quality}")


def test_bit_identical_on_real_photos(imagenet_sample):
    paths = sorted(imagenet_sample.rglob("*.JPEG"))[:4]
    for path, quality in zip(paths, (25, 18, 7, 80)):
        with Image.open(path) as im:
            image = np.asarray(im.convert("RGB").resize((224, 224), Image.BILINEAR))
        np.testing.assert_array_equal(_torch(image[None], [quality])[0], _pillow(image, quality), err_msg=str(path))


def test_per_image_qualities_equal_separate_calls():
    rng = np.random.default_rng(3)
    images = np.stack([_textured(rng, 40, 40) for _ in range(4)])
    mixed = _torch(images, [7, 80, 25, 7])
    for i, q in enumerate((7, 80, 25, 7)):
        np.testing.assert_array_equal(mixed[i], _torch(images[i:i + 1], [q])[0])


def test_corrupt_batch_jpeg_equals_the_cpu_engine_exactly():
    rng = np.random.default_rng(4)
    images = np.stack([_textured(rng, 48, 48) for _ in range(5)])
    got = corrupt_batch(torch.from_numpy(images).permute(0, 3, 1, 2), "jpeg_compression", [1, 2, 3, 4, 5],
                        profile="imagenet").permute(0, 2, 3, 1).numpy()
    for sev, (image, out) in enumerate(zip(images, got), start=1):
        np.testing.assert_array_equal(out, corrupt(image, sev, "jpeg_compression", profile="imagenet"))


def test_quant_tables_follow_libjpeg_scaling():
    t = quant_tables([7, 50, 100])
    assert t[0, 0, 0, 0] == 114 and t[0, 1].max() == 255  # 5000 / 7 = 714 %, baseline cap at 255
    assert t[1, 0, 0, 0] == 16 and t[1, 1, 0, 0] == 17  # quality 50 is the Annex K table itself
    assert t.min() >= 1 and bool((t[2] == 1).all())


def test_mismatched_qualities_are_rejected():
    with pytest.raises(ValueError, match="2 qualities for 1 images"):
        jpeg_roundtrip(torch.zeros(1, 3, 32, 32, dtype=torch.uint8), [10, 20])


def test_both_device_paths_give_the_same_pixels():
    from vqsa.corruptions.batched.digital import _libjpeg_roundtrip

    rng = np.random.default_rng(5)
    x = torch.from_numpy(np.stack([_textured(rng, 56, 72) for _ in range(6)])).permute(0, 3, 1, 2).contiguous()
    qualities = [25, 18, 15, 10, 7, 25]
    assert torch.equal(jpeg_roundtrip(x, qualities), _libjpeg_roundtrip(x, qualities))
