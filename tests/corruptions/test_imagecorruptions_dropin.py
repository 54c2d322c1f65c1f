"""vqsa.corruptions as an imagecorruptions drop-in: module-level API, per-corruption functions, np.random seeding."""
from __future__ import annotations

import subprocess
import sys
import textwrap

import numpy as np
import pytest
from PIL import Image

import vqsa.corruptions as vc


@pytest.fixture(scope="module")
def image() -> np.ndarray:
    return np.random.default_rng(0).integers(0, 256, (48, 64, 3), dtype=np.uint8)


def test_corruption_tuple_and_dict_follow_upstream_order_and_names():
    names = [fn.__name__ for fn in vc.corruption_tuple]
    assert names == vc.get_corruption_names("all")
    assert list(vc.corruption_dict) == names and all(vc.corruption_dict[n] is getattr(vc, n) for n in names)
    upstream = pytest.importorskip("imagecorruptions")
    assert names == [fn.__name__ for fn in upstream.corruption_tuple]


def test_np_random_seed_makes_corrupt_reproducible(image):
    np.random.seed(0)
    a = [vc.corrupt(image, 3, name) for name in ("gaussian_noise", "glass_blur", "spatter")]
    np.random.seed(0)
    b = [vc.corrupt(image, 3, name) for name in ("gaussian_noise", "glass_blur", "spatter")]
    np.random.seed(1)
    c = vc.corrupt(image, 3, "gaussian_noise")
    assert all(np.array_equal(x, y) for x, y in zip(a, b)) and not np.array_equal(a[0], c)
    np.random.seed(0)  # an explicit rng ignores (and leaves alone) the global state
    state = np.random.get_state()[1].copy()
    assert np.array_equal(vc.corrupt(image, 3, "gaussian_noise", rng=5), vc.corrupt(image, 3, "gaussian_noise", rng=5))
    assert np.array_equal(np.random.get_state()[1], state)


@pytest.mark.parametrize("name", ["gaussian_noise", "motion_blur", "fog", "pixelate", "jpeg_compression"])
def test_per_corruption_functions_take_pil_images_and_return_float_0_255(image, name):
    fn = vc.corruption_dict[name]
    np.random.seed(3)
    out = fn(Image.fromarray(image), 2)
    assert out.dtype == np.float64 and out.shape == image.shape and 0 <= out.min() and out.max() <= 255
    np.random.seed(3)
    assert np.array_equal(np.uint8(out), vc.corrupt(image, 2, name))  # what imagecorruptions.corrupt does
    with pytest.raises(ValueError, match="severity"):
        fn(image, 6)


def test_a_script_written_like_upstreams_example_runs_against_vqsa(tmp_path, child_env):
    Image.fromarray(np.random.default_rng(1).integers(0, 256, (40, 40, 3), dtype=np.uint8)).save(tmp_path / "t.png")
    script = textwrap.dedent("""
        import numpy as np
        from PIL import Image
        from vqsa.corruptions import corrupt, get_corruption_names

        image = np.asarray(Image.open("t.png"))
        for corruption in get_corruption_names("all"):
            for severity in range(5):
                corrupted = corrupt(image, corruption_name=corruption, severity=severity + 1)
                Image.fromarray(corrupted).save(f"{corruption}_{severity + 1}.png")
        print("done")
    """)
    out = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, env=child_env, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert len(list(tmp_path.glob("*_[1-5].png"))) == 95
