"""The batched torch wet-edge map (spatter, water mode) equals the reference's OpenCV chain, stage by stage."""
from __future__ import annotations

import cv2
import numpy as np
import pytest
import torch

from vqsa.corruptions._params import get_params
from vqsa.corruptions._util import gaussian
from vqsa.corruptions.batched import edges as E

KERNEL = np.array(E.EDGE_KERNEL)


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """Many small ops: one intra-op thread is faster, and immune to oversubscribed shared cores."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def liquid_layers(n: int, h: int, w: int, severity: int, seed: int, profile: str = "imagenet") -> np.ndarray:
    """(n, h, w) uint8 liquid layers made as the reference spatter's water mode makes them."""
    rng = np.random.default_rng(seed)
    loc, scale, sigma, threshold, _, mode = get_params("spatter", severity, profile)
    assert mode == 0
    out = np.empty((n, h, w), np.uint8)
    for i in range(n):
        liquid = gaussian(rng.normal(loc, scale, (h, w)), sigma)
        liquid[liquid < threshold] = 0
        scaled = liquid * 255
        if scaled.max() >= 256:  # CIFAR tables: the reference's uint8 cast wraps
            np.fmod(scaled, 256, out=scaled)
        out[i] = scaled.astype(np.uint8)
    return out


def reference_stages(l8: np.ndarray) -> dict[str, np.ndarray]:
    """Every intermediate of the reference chain for a stack of layers (one OpenCV call per image and stage)."""
    st: dict[str, np.ndarray] = {"canny": np.stack([cv2.Canny(x, 50, 150) for x in l8]) == 255}
    st["dist"] = np.stack([cv2.threshold(cv2.distanceTransform(np.where(e, 0, 255).astype(np.uint8), cv2.DIST_L2, 5),
                                         20, 20, cv2.THRESH_TRUNC)[1] for e in st["canny"]])
    st["blur"] = np.stack([cv2.blur(d, (3, 3)).astype(np.uint8) for d in st["dist"]])
    st["eq"] = np.stack([cv2.equalizeHist(u) for u in st["blur"]])
    st["f2d"] = np.stack([cv2.filter2D(u, cv2.CV_8U, KERNEL) for u in st["eq"]])
    st["out"] = np.stack([cv2.blur(u, (3, 3)).astype(np.float32) for u in st["f2d"]])
    return st


def check_stages(l8: np.ndarray) -> None:
    """Each torch stage on the reference's own input of that stage, then the whole chain."""
    ref = reference_stages(l8)
    t = {k: torch.from_numpy(v) for k, v in ref.items()}
    np.testing.assert_array_equal(E.canny(torch.from_numpy(l8)).numpy(), ref["canny"], err_msg="canny")
    np.testing.assert_array_equal(E.distance_transform_trunc(t["canny"]).numpy(), ref["dist"], err_msg="distance")
    np.testing.assert_array_equal(E.blur_to_u8(t["dist"]).numpy(), ref["blur"], err_msg="float blur")
    np.testing.assert_array_equal(E.equalize_hist(t["blur"]).numpy(), ref["eq"], err_msg="equalizeHist")
    np.testing.assert_array_equal(E.filter2d_u8(t["eq"]).numpy(), ref["f2d"], err_msg="filter2D")
    np.testing.assert_array_equal(E.blur_u8(t["f2d"]).numpy(), ref["out"].astype(np.uint8), err_msg="uint8 blur")
    out = E.wet_edges(torch.from_numpy(l8))
    assert out.dtype == torch.float32 and out.shape == l8.shape
    np.testing.assert_array_equal(out.numpy(), ref["out"], err_msg="whole chain")


@pytest.mark.parametrize("size,n", [(32, 16), (64, 8), (224, 4)])
@pytest.mark.parametrize("severity", [1, 2, 3])
def test_spatter_layers_exact(size: int, n: int, severity: int) -> None:
    for seed in range(3):
        check_stages(liquid_layers(n, size, size, severity, seed=1000 * size + 10 * severity + seed))


@pytest.mark.parametrize("profile", ["cifar", "tinyimagenet"])
def test_other_profiles_exact(profile: str) -> None:
    """Sharper, wrapping layers of the small-image tables: many weak edges and hysteresis chains."""
    for severity in (1, 2, 3):
        check_stages(liquid_layers(8, 32, 48, severity, seed=severity, profile=profile))


def test_edge_cases_exact() -> None:
    rng = np.random.default_rng(7)
    h, w = 32, 40
    cases = [
        np.zeros((h, w), np.uint8),  # no edges at all: distance 20 everywhere, constant histogram
        np.full((h, w), 200, np.uint8),
        (np.indices((h, w)).sum(0) % 2 * 255).astype(np.uint8),  # checkerboard: edges everywhere
        (rng.integers(0, 2, (h, w)) * 255).astype(np.uint8),
        rng.integers(0, 256, (h, w)).astype(np.uint8),  # noise: ties, every gradient direction
        (rng.integers(0, 4, (h, w)) * 60).astype(np.uint8),  # plateaus: equal magnitudes in NMS
    ]
    one = np.zeros((h, w), np.uint8)
    one[h // 2, w // 2] = 255  # a single bright pixel
    edge_strip = np.zeros((h, w), np.uint8)
    edge_strip[:, -3:] = 180  # an edge touching the image border
    check_stages(np.stack(cases + [one, edge_strip]))


def test_canny_stress_exact() -> None:
    """Random textures of every kind: weak and strong edges, ties, long hysteresis chains, odd sizes."""
    rng = np.random.default_rng(3)
    for h, w in ((32, 32), (37, 53), (64, 33)):
        noise = rng.integers(0, 256, (4, h, w)).astype(np.uint8)
        smooth = np.stack([cv2.GaussianBlur(x, (0, 0), s) for x, s in zip(noise, (0.7, 1.2, 2.0, 3.0))])
        contrast = np.clip((smooth.astype(np.int32) - 128) * 6 + 128, 0, 255).astype(np.uint8)
        img = np.concatenate([noise, smooth, contrast])
        ref = np.stack([cv2.Canny(x, 50, 150) for x in img]) == 255
        for check_every in (1, 3, 8):
            np.testing.assert_array_equal(E.canny(torch.from_numpy(img), check_every=check_every).numpy(), ref)


def test_distance_stress_exact() -> None:
    """Random edge sets from one pixel to dense, including distances > 20 and the image border."""
    rng = np.random.default_rng(4)
    for density in (0.0, 0.0005, 0.003, 0.02, 0.3):
        edges = rng.random((4, 70, 61)) < density
        ref = np.stack([cv2.threshold(cv2.distanceTransform(np.where(e, 0, 255).astype(np.uint8), cv2.DIST_L2, 5),
                                      20, 20, cv2.THRESH_TRUNC)[1] for e in edges])
        np.testing.assert_array_equal(E.distance_transform_trunc(torch.from_numpy(edges)).numpy(), ref)
        np.testing.assert_array_equal(E.blur_to_u8(torch.from_numpy(ref)).numpy(),
                                      np.stack([cv2.blur(d, (3, 3)).astype(np.uint8) for d in ref]))


def test_float_blur_near_integers_exact() -> None:
    """Box sums at or one ulp below multiples of 9: where the double -> float32 rounding decides the truncation."""
    rng = np.random.default_rng(5)
    units = E._distance_table(torch.device("cpu"))
    values = np.unique(units.numpy() * 2.0**-23).astype(np.float32)
    near = values[np.abs(values - np.round(values)) < 1e-4]
    assert (near != np.round(near)).any()  # e.g. 13.999998 (ten diagonal steps)
    for pool in (near, values):
        d = rng.choice(pool, (6, 40, 40)).astype(np.float32)
        np.testing.assert_array_equal(E.blur_to_u8(torch.from_numpy(d)).numpy(),
                                      np.stack([cv2.blur(x, (3, 3)).astype(np.uint8) for x in d]))


def test_u8_stages_stress_exact() -> None:
    rng = np.random.default_rng(6)
    imgs = [rng.integers(0, 256, (3, 33, 35)), rng.integers(0, 21, (3, 33, 35)),
            rng.integers(0, 2, (3, 33, 35)) * 255, rng.integers(0, 3, (3, 33, 35)) * 37]
    u = np.concatenate(imgs).astype(np.uint8)
    u[0] = 9  # constant image
    u[1] = 9
    u[1, 5, 5] = 10  # two levels, one pixel in the upper one
    t = torch.from_numpy(u)
    np.testing.assert_array_equal(E.equalize_hist(t).numpy(), np.stack([cv2.equalizeHist(x) for x in u]))
    np.testing.assert_array_equal(E.filter2d_u8(t).numpy(), np.stack([cv2.filter2D(x, cv2.CV_8U, KERNEL) for x in u]))
    np.testing.assert_array_equal(E.blur_u8(t).numpy(), np.stack([cv2.blur(x, (3, 3)) for x in u]))


def test_round_div9_all_box_sums() -> None:
    s = torch.arange(9 * 255 + 1, dtype=torch.int32)
    torch.testing.assert_close(E._round_div9(s), torch.div(s + 4, 9, rounding_mode="floor"), rtol=0, atol=0)


def test_input_dtypes_and_shape() -> None:
    l8 = liquid_layers(2, 32, 32, 1, seed=0)
    a = E.wet_edges(torch.from_numpy(l8))
    b = E.wet_edges(torch.from_numpy(l8).to(torch.float32))
    torch.testing.assert_close(a, b, rtol=0, atol=0)
    with pytest.raises(ValueError):
        E.wet_edges(torch.from_numpy(l8[0]))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_exact() -> None:
    l8 = np.concatenate([liquid_layers(4, 224, 224, s, seed=s) for s in (1, 2, 3)])
    x = torch.from_numpy(l8)
    torch.testing.assert_close(E.wet_edges(x.cuda()).cpu(), torch.from_numpy(reference_stages(l8)["out"]),
                               rtol=0, atol=0)
