"""Mixed clean + corrupted data: the stratified cycle, clean fraction, pairs, transforms, image folders."""
import numpy as np
import pytest
import torch
from PIL import Image

from vqsa.data.cifar import ArrayDataset
from vqsa.data.folder import ImageFolderSource
from vqsa.data.mixed import CLEAN, BadImageError, CorruptionSchedule, MixedCorruptionDataset, collate_mixed
from vqsa.data.transforms import EvalTransform, TrainTransform, random_resized_crop, to_float

NAMES = tuple(f"c{i}" for i in range(15))


def fake_corrupt(img, severity, name, *, rng, profile):
    """A stand-in engine: shifts pixels by a (name, severity)-dependent amount plus seeded noise."""
    shift = (NAMES.index(name) * 5 + severity) * 3 + int(rng.integers(0, 2))
    return (img.astype(np.int64) + shift).clip(0, 255).astype(np.uint8)


def tiny_arrays(n=96, size=32, seed=0):
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 200, (n, size, size, 3), dtype=np.uint8)
    return ArrayDataset(images, rng.integers(0, 10, n), ("a",) * 10, "t")


def test_stratified_cycle_covers_the_grid_exactly_once_per_80_draws():
    sched = CorruptionSchedule(NAMES, seed=3)
    assert len(sched.grid) == 80
    for epoch in (0, 1):
        for block in range(3):
            cells = sorted(sched.cell(epoch, i) for i in range(80 * block, 80 * (block + 1)))
            assert cells == list(range(80))  # every cell of the 16 x 5 grid exactly once
    draws = [sched.draw(0, i) for i in range(80)]
    assert sum(c == CLEAN for c, _ in draws) == 5 and {s for c, s in draws if c == CLEAN} == {0}
    # the cycle changes between blocks and epochs but is reproducible per (seed, epoch, index)
    assert draws != [sched.draw(0, i) for i in range(80, 160)]
    assert draws != [sched.draw(1, i) for i in range(80)]
    assert draws == [CorruptionSchedule(NAMES, seed=3).draw(0, i) for i in range(80)]
    assert draws != [CorruptionSchedule(NAMES, seed=4).draw(0, i) for i in range(80)]
    # order of queries does not matter (workers/ranks query disjoint, shuffled indices)
    assert [sched.draw(0, i) for i in reversed(range(80))] == draws[::-1]


def test_uniform_mode_and_clean_fraction():
    uni = CorruptionSchedule(NAMES, mode="uniform", seed=0)
    draws = [uni.draw(0, i) for i in range(4000)]
    counts = np.bincount([c + 1 for c, _ in draws], minlength=16)
    assert counts.min() > 150 and counts.max() < 360  # ~250 each
    for p in (0.0, 0.5, 1.0):
        sched = CorruptionSchedule(NAMES, clean_fraction=p, seed=1)
        assert len(sched.grid) == 75
        frac = np.mean([sched.draw(2, i)[0] == CLEAN for i in range(2000)])
        assert abs(frac - p) < 0.04
    assert CorruptionSchedule((), seed=0).draw(0, 5) == (CLEAN, 0)


@pytest.mark.parametrize(
    "kwargs, match",
    [({"mode": "random"}, "mode"), ({"severities": (0, 1)}, "severities"), ({"clean_fraction": 1.5}, "clean_fraction")],
)
def test_schedule_rejects_bad_input(kwargs, match):
    with pytest.raises(ValueError, match=match):
        CorruptionSchedule(NAMES, **kwargs)
    with pytest.raises(TypeError, match="sequence"):
        CorruptionSchedule("gaussian_noise")


def test_mixed_dataset_pairs_and_reproducibility():
    src = tiny_arrays()
    sched = CorruptionSchedule(NAMES, seed=7)
    ds = MixedCorruptionDataset(src, sched, TrainTransform(32, "cifar"), corrupt_fn=fake_corrupt, pairs=True)
    ds.set_epoch(1)
    items = [ds[i] for i in range(80)]
    batch = collate_mixed(items)
    assert batch["image"].shape == batch["clean"].shape == (80, 3, 32, 32) and batch["image"].dtype == torch.uint8
    clean_mask = batch["corruption"] == CLEAN
    assert torch.equal(batch["image"][clean_mask], batch["clean"][clean_mask])
    assert not torch.equal(batch["image"][~clean_mask], batch["clean"][~clean_mask])
    # the same (seed, epoch, index) always gives the same sample, whatever the query order
    again = MixedCorruptionDataset(src, sched, TrainTransform(32, "cifar"), corrupt_fn=fake_corrupt, pairs=True)
    again.set_epoch(1)
    assert torch.equal(again[42]["image"], items[42]["image"]) and again[42]["severity"] == items[42]["severity"]
    again.set_epoch(2)
    assert not torch.equal(again[42]["image"], items[42]["image"])
    # device mode: the draw travels with the clean crop
    dev = MixedCorruptionDataset(src, sched, TrainTransform(32, "cifar"), corrupt_fn=fake_corrupt,
                                 apply_corruption=False)
    dev.set_epoch(1)
    assert torch.equal(dev[3]["image"], items[3]["clean"]) and dev[3]["corruption"] == items[3]["corruption"]


def test_transforms_follow_torchvision_conventions():
    rng = np.random.default_rng(0)
    img = rng.integers(0, 256, (300, 400, 3), dtype=np.uint8)
    assert random_resized_crop(img, 224, np.random.default_rng(1)).shape == (224, 224, 3)
    assert TrainTransform(224)(img, np.random.default_rng(1)).shape == (224, 224, 3)
    assert EvalTransform(224)(img).shape == (224, 224, 3)
    small = img[:32, :32]
    out = TrainTransform(32, "cifar")(small, np.random.default_rng(2))
    assert out.shape == (32, 32, 3) and out.dtype == np.uint8
    x = to_float(torch.from_numpy(out.transpose(2, 0, 1).copy())[None])
    assert x.dtype == torch.float32 and 0 <= x.min() and x.max() <= 1
    with pytest.raises(ValueError, match="uint8"):
        random_resized_crop(img.astype(np.float32), 224, rng)
    with pytest.raises(ValueError, match="style"):
        TrainTransform(32, "mnist")


def _write_folder(root, n_per_class=2, bad=False):
    rng = np.random.default_rng(0)
    for cls in ("cat", "dog"):
        (root / cls).mkdir(parents=True)
        for i in range(n_per_class):
            Image.fromarray(rng.integers(0, 256, (40, 50, 3), dtype=np.uint8)).save(root / cls / f"{i}.png")
    Image.fromarray(rng.integers(0, 256, (40, 50), dtype=np.uint8)).save(root / "dog" / "gray.jpg")
    if bad:
        (root / "dog" / "broken.jpg").write_bytes(b"not a jpeg")


def test_image_folder_source_skip_bad_and_errors(tmp_path):
    _write_folder(tmp_path / "ok")
    src = ImageFolderSource(tmp_path / "ok")
    assert src.classes == ("cat", "dog") and len(src) == 5
    img, label = src.load(4)
    assert img.shape == (40, 50, 3) and img.dtype == np.uint8 and label == 1  # grayscale converted to RGB

    _write_folder(tmp_path / "bad", bad=True)
    src = ImageFolderSource(tmp_path / "bad")
    idx = [i for i, (p, _) in enumerate(src.samples) if p.endswith("broken.jpg")][0]
    with pytest.raises(BadImageError, match="broken.jpg"):
        src.load(idx)
    ds = MixedCorruptionDataset(src, CorruptionSchedule(()), TrainTransform(32, "cifar"), skip_bad=True)
    batch = collate_mixed([ds[i] for i in range(len(ds))])
    assert batch["bad"] == 1 and len(batch["image"]) == len(src) - 1
    strict = MixedCorruptionDataset(src, CorruptionSchedule(()), TrainTransform(32, "cifar"))
    with pytest.raises(BadImageError, match="broken.jpg"):
        strict[idx]

    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="no class folders"):
        ImageFolderSource(tmp_path / "empty")
    (tmp_path / "empty" / "cls").mkdir()
    with pytest.raises(ValueError, match="no images"):
        ImageFolderSource(tmp_path / "empty")
    with pytest.raises(FileNotFoundError, match="does not exist"):
        ImageFolderSource(tmp_path / "missing")
