"""Evaluation datasets: released ImageNet-C / CIFAR-10-C layouts, class subsets, on-the-fly determinism."""
import json

import numpy as np
import pytest
import torch
from PIL import Image
from torch.utils.data import DataLoader

from evalhelpers import write_cifar10, write_cifar10_c, write_imagenet_c
from vqsa.data import ArrayDataset
from vqsa.data.corrupted import ArrayImages, CorruptedImages, FolderImages, cifar10_c, imagenet_c
from vqsa.data.imagenet_subsets import imagenet_wnids, subset_indices, subset_mask, subset_wnids, wnid_to_index
from vqsa.eval.datasets import build_plan, resolve_corruptions


def test_imagenet_c_cell_labels_are_1k_indices_and_no_resize(tmp_path):
    write_imagenet_c(tmp_path, ["fog"], [2], class_ids=(5, 990), per_class=2)
    cell = imagenet_c(tmp_path, "fog", 2)
    assert len(cell) == 4 and cell.num_classes == 1000
    labels = [cell[i][1] for i in range(4)]
    assert labels == [5, 5, 990, 990]  # not ImageFolder's 0/1 of the classes present
    x, _ = cell[2]
    stored = np.array(Image.open(cell.path(2)))
    assert x.dtype == torch.uint8 and x.shape == (3, 224, 224)
    assert torch.equal(x, torch.from_numpy(stored).permute(2, 0, 1))  # bit-exact: no second resize or crop


def test_imagenet_c_shares_file_lists_between_cells(tmp_path):
    write_imagenet_c(tmp_path, ["fog", "snow"], [1, 2], per_class=3)
    lists: dict = {}
    cells = [imagenet_c(tmp_path, c, s, lists) for c in ("fog", "snow") for s in (1, 2)]
    assert len(lists) == 2  # one stored listing per class folder, shared by the 4 cells
    assert all(c._files[k] is cells[0]._files[k] for c in cells for k in (0, 1))


def test_imagenet_c_missing_folder_named(tmp_path):
    write_imagenet_c(tmp_path / "imagenet-c", ["fog"], [1])
    with pytest.raises(FileNotFoundError, match=r"snow.*severity 1|snow/1"):
        build_plan("imagenet-c", tmp_path, ["fog", "snow"], [1])
    with pytest.warns(UserWarning, match="skipped 1 missing or unusable imagenet-c cell"):
        plan = build_plan("imagenet-c", tmp_path, ["fog", "snow"], [1], allow_missing=True)
    assert [(c.corruption, c.severity) for c in plan.cells] == [("fog", 1)]
    assert plan.skipped[0]["corruption"] == "snow" and "missing" in plan.skipped[0]["reason"]
    assert plan.baseline == "alexnet" and "clean error not evaluated" in plan.notes[0]


def test_folder_rejects_non_imagenet_classes_when_asked(tmp_path):
    (tmp_path / "cat").mkdir()
    Image.fromarray(np.zeros((40, 40, 3), np.uint8)).save(tmp_path / "cat" / "a.png")
    assert FolderImages(tmp_path, 32, 32).num_classes == 1  # any ImageFolder: sorted-folder labels
    with pytest.raises(ValueError, match="not ImageNet-1k wnids: cat"):
        FolderImages(tmp_path, label_space="imagenet")


def test_cifar10_c_memmap_slices(tmp_path):
    info = write_cifar10_c(tmp_path, ["contrast"], n=6)
    raw = np.load(tmp_path / "contrast.npy")
    for s in (1, 5):
        cell = cifar10_c(tmp_path, "contrast", s)
        assert isinstance(cell.images, np.memmap) and len(cell) == 6 and cell.num_classes == 10
        img, y = cell.load(3)
        np.testing.assert_array_equal(img, raw[(s - 1) * 6 + 3])
        assert y == info["labels"][(s - 1) * 6 + 3]
    with pytest.raises(FileNotFoundError, match="fog.npy"):
        cifar10_c(tmp_path, "fog", 1)


def test_cifar10_c_bad_shape(tmp_path):
    np.save(tmp_path / "labels.npy", np.zeros(7, np.uint8))
    np.save(tmp_path / "fog.npy", np.zeros((7, 32, 32, 3), np.uint8))
    with pytest.raises(ValueError, match=r"5\*n"):
        cifar10_c(tmp_path, "fog", 1)


def test_plan_falls_back_to_on_the_fly(tmp_path):
    write_cifar10(tmp_path)
    with pytest.warns(UserWarning, match="on the fly"):
        plan = build_plan("cifar10-c", tmp_path, ["contrast"], [1, 2], seed=3, profile="cifar")
    assert plan.source == "on-the-fly, seed 3, profile cifar" and plan.baseline is None
    assert [(c.corruption, c.severity) for c in plan.cells] == [("clean", 0), ("contrast", 1), ("contrast", 2)]
    with pytest.raises(FileNotFoundError, match="--on-the-fly"):
        build_plan("cifar10-c", tmp_path, ["contrast"], [1], on_the_fly=False)


def test_bad_specs():
    with pytest.raises(ValueError, match="unknown corruption or subset 'fogg'"):
        resolve_corruptions(["fog", "fogg"])
    assert resolve_corruptions(["noise", "fog", "gaussian_noise"]) == [
        "gaussian_noise", "shot_noise", "impulse_noise", "fog"]
    ds = ArrayDataset(np.zeros((0, 32, 32, 3), np.uint8), np.zeros(0, np.int64), tuple("abcdefghij"), "empty")
    with pytest.raises(ValueError, match="empty"):
        build_plan(ds, corruptions=["fog"])
    with pytest.raises(ValueError, match=r"severity must be in \[1, 5\], got 0"):
        build_plan(ds, severities=[0, 6])
    with pytest.raises(ValueError, match="unknown dataset"):
        build_plan("imagenet-x", ".")


def test_on_the_fly_is_deterministic_per_item():
    pytest.importorskip("vqsa.corruptions").corrupt
    rng = np.random.default_rng(0)
    base = ArrayImages(rng.integers(0, 256, (6, 32, 32, 3), dtype=np.uint8), np.arange(6) % 10, 10, "rand")
    a = CorruptedImages(base, "gaussian_noise", 3, seed=7, profile="cifar")
    b = CorruptedImages(base, "gaussian_noise", 3, seed=7, profile="cifar")
    forward = [a.load(i)[0] for i in range(6)]
    backward = [b.load(i)[0] for i in reversed(range(6))][::-1]
    for x, y in zip(forward, backward):
        np.testing.assert_array_equal(x, y)  # independent of access order
    noise = [f.astype(int) - base.images[i] for i, f in enumerate(forward)]
    assert not np.array_equal(noise[0], noise[1])  # items get different draws
    other = CorruptedImages(base, "gaussian_noise", 3, seed=8, profile="cifar").load(0)[0]
    assert not np.array_equal(other, forward[0])
    # the same in DataLoader workers, in any batch split
    loaded = torch.cat([x for x, _ in DataLoader(a, batch_size=4, num_workers=2)])
    assert torch.equal(loaded, torch.stack([torch.from_numpy(f).permute(2, 0, 1) for f in forward]))
    assert "seed 7, profile cifar" in a.description
    jpeg = CorruptedImages(base, "gaussian_noise", 3, seed=7, profile="cifar", jpeg_quality=85)
    assert np.array_equal(jpeg.load(2)[0], jpeg.load(2)[0]) and not np.array_equal(jpeg.load(2)[0], forward[2])
    assert "JPEG q85" in jpeg.description


def test_packaged_wnid_lists_are_consistent():
    wnids = imagenet_wnids()
    assert len(wnids) == 1000 and len(set(wnids)) == 1000
    assert wnids[0] == "n01440764" and wnids[281] == "n02123045" and wnids[999] == "n15075141"
    for name in ("imagenet-r", "imagenet-a"):
        sub = subset_wnids(name)
        assert len(sub) == 200 and set(sub) <= set(wnids)
        idx = subset_indices(name)
        assert idx.tolist() == sorted(idx.tolist()) and subset_mask(name).sum() == 200
    assert len(set(subset_wnids("imagenet-r")) & set(subset_wnids("imagenet-a"))) == 86
    with pytest.raises(ValueError, match="imagenet-o"):
        subset_wnids("imagenet-o")


@pytest.mark.data
def test_masks_match_shared_wnid_lists(data_root):
    sub = data_root / "imagenet_subsets"
    if not sub.is_dir():
        pytest.skip("imagenet_subsets not in VQSA_DATA")
    all_1k = (sub / "imagenet_1k_wnids.txt").read_text().split()
    assert list(imagenet_wnids()) == all_1k
    index = json.loads((data_root / "imagenet_class_index.json").read_text())
    assert [index[str(i)][0] for i in range(1000)] == all_1k
    for name, file in (("imagenet-r", "imagenet_r_wnids.txt"), ("imagenet-a", "imagenet_a_wnids.txt")):
        theirs = set((sub / file).read_text().split())
        assert subset_indices(name).tolist() == [i for i, w in enumerate(all_1k) if w in theirs]  # hendrycks mask


@pytest.mark.data
def test_imagenet_sample_labels(imagenet_sample, data_root):
    ds = FolderImages(imagenet_sample, resize=256, crop=224)
    assert len(ds) == 200 and ds.num_classes == 1000
    manifest = json.loads((data_root / "imagenet_sample_manifest.json").read_text())
    by_wnid = {e["wnid"]: e["index"] for e in manifest}
    for i in (0, 81, 142, 199):  # 81 = airship, a grayscale JPEG
        img, y = ds.load(i)
        assert img.shape == (224, 224, 3) and y == by_wnid[ds.path(i).parent.name] == wnid_to_index()[
            ds.path(i).parent.name]
