"""`vqsa corrupt`: folder trees, CIFAR-10-C arrays, gallery, resume, determinism and error messages."""
import io
import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import vqsa.corruptions as corruptions_pkg
from vqsa.cli.main import main
from vqsa.corruptions import dataset_writer as dw
from vqsa.utils.lock import LOCK_NAME

FAST = ["--corruptions", "gaussian_noise", "motion_blur", "--severities", "1", "3"]
SMALL = ["--resize", "40", "--center-crop", "32", "--quiet"]


def _rgb(h, w, seed):
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


@pytest.fixture
def tiny_folder(tmp_path):
    """2 classes, 5 images: RGB PNG, grey JPEG, RGBA PNG, palette PNG, RGB JPEG with an upper-case suffix."""
    src = tmp_path / "src"
    (src / "cls_a").mkdir(parents=True)
    (src / "cls_b").mkdir()
    Image.fromarray(_rgb(48, 60, 0)).save(src / "cls_a" / "a0.png")
    Image.fromarray(_rgb(50, 44, 1)[..., 0]).save(src / "cls_a" / "a1.jpg", quality=90)
    Image.fromarray(np.dstack([_rgb(40, 40, 2), np.full((40, 40), 128, np.uint8)])).save(src / "cls_b" / "b0.png")
    Image.fromarray(_rgb(36, 52, 3)).convert("P", palette=Image.ADAPTIVE).save(src / "cls_b" / "b1.png")
    Image.fromarray(_rgb(64, 48, 4)).save(src / "cls_b" / "b2.JPEG", quality=95)
    (src / "cls_b" / "notes.txt").write_text("not an image")
    return src


def _tree(root):
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def _outputs(root):
    return {k: v for k, v in _tree(root).items() if k not in (dw.MANIFEST_NAME, LOCK_NAME)}


def test_folder_tree_names_and_shapes(tiny_folder, tmp_path, capsys):
    dst = tmp_path / "dst"
    assert main(["corrupt", str(tiny_folder), str(dst), *FAST, *SMALL]) == 0
    files = ["cls_a/a0.png", "cls_a/a1.png", "cls_b/b0.png", "cls_b/b1.png", "cls_b/b2.png"]
    expected = {f"{c}/{s}/{f}" for c in ("gaussian_noise", "motion_blur") for s in (1, 3) for f in files}
    out = _outputs(dst)
    assert set(out) == expected
    for data in out.values():
        with Image.open(io.BytesIO(data)) as im:
            assert im.format == "PNG" and im.mode == "RGB" and im.size == (32, 32)
    assert "written 20 files" in capsys.readouterr().out
    assert (dst / dw.MANIFEST_NAME).is_file()


def test_flat_folder_has_no_class_level_and_native_size(tmp_path):
    src, dst = tmp_path / "flat", tmp_path / "dst"
    src.mkdir()
    Image.fromarray(_rgb(33, 37, 5)).save(src / "x.png")
    assert main(["corrupt", str(src), str(dst), "--corruptions", "contrast", "--severities", "2",
                 "--resize", "none", "--center-crop", "none", "--quiet"]) == 0
    assert set(_outputs(dst)) == {"contrast/2/x.png"}
    assert np.asarray(Image.open(dst / "contrast/2/x.png")).shape == (33, 37, 3)


def test_pixels_equal_the_library_call(tiny_folder, tmp_path):
    """Each output is corrupt(preprocessed image, rng derived from (seed, relative path, corruption, severity))."""
    dst = tmp_path / "dst"
    assert main(["corrupt", str(tiny_folder), str(dst), *FAST, *SMALL, "--seed", "7"]) == 0
    image = dw.imagenet_c_preprocess(dw.load_rgb(tiny_folder / "cls_a/a1.jpg"), 40, 32)
    want = corruptions_pkg.corrupt(image, 3, "motion_blur", rng=dw.derive_rng(7, "cls_a/a1.jpg", "motion_blur", 3))
    np.testing.assert_array_equal(np.asarray(Image.open(dst / "motion_blur/3/cls_a/a1.png")), want)


def test_jobs_2_is_byte_equal_to_jobs_1(tiny_folder, tmp_path):
    one, two = tmp_path / "one", tmp_path / "two"
    assert main(["corrupt", str(tiny_folder), str(one), *FAST, *SMALL]) == 0
    assert main(["corrupt", str(tiny_folder), str(two), *FAST, *SMALL, "--jobs", "2"]) == 0
    assert _outputs(one) == _outputs(two)


def test_an_edited_manifest_is_refused_on_resume(tiny_folder, tmp_path, capsys):
    """vqsa_corrupt.json carries the sha256 of its own content: a changed setting is named, not trusted."""
    import json

    dst = tmp_path / "dst"
    args = ["corrupt", str(tiny_folder), str(dst), *FAST, *SMALL]
    assert main(args) == 0
    path = dst / "vqsa_corrupt.json"
    data = json.loads(path.read_text())
    data["settings"]["seed"] = 12345
    path.write_text(json.dumps(data))
    capsys.readouterr()
    assert main(args) == 1
    assert f"{path}: damaged file: its content does not match the sha256" in capsys.readouterr().err


def test_resume_writes_only_missing_files(tiny_folder, tmp_path, capsys):
    dst = tmp_path / "dst"
    args = ["corrupt", str(tiny_folder), str(dst), *FAST, *SMALL]
    assert main(args) == 0
    first = _outputs(dst)
    removed = ["gaussian_noise/1/cls_a/a0.png", "motion_blur/3/cls_b/b1.png", "motion_blur/3/cls_b/b2.png"]
    for rel in removed:
        (dst / rel).unlink()
    stale = dst / "motion_blur/3/cls_b/.b1.png.x1y2z3.tmp"  # what a kill during atomic_open leaves behind
    stale.write_bytes(b"half a png")
    mtimes = {p: p.stat().st_mtime_ns for p in dst.rglob("*.png")}
    capsys.readouterr()
    assert main(args) == 0
    summary = capsys.readouterr().out
    assert "written 3 files" in summary and "skipped 17 already done" in summary and "1 stale" in summary
    assert not stale.exists()
    assert {p: p.stat().st_mtime_ns for p in mtimes} == mtimes  # finished files untouched
    assert _outputs(dst) == first  # the rewritten files are byte-identical (deterministic)


def test_a_finished_file_truncated_afterwards_is_written_again(tiny_folder, tmp_path, capsys):
    dst = tmp_path / "dst"
    args = ["corrupt", str(tiny_folder), str(dst), *FAST, *SMALL]
    assert main(args) == 0
    first = _outputs(dst)
    damaged = dst / "gaussian_noise/1/cls_a/a0.png"
    damaged.write_bytes(damaged.read_bytes()[:-20])
    capsys.readouterr()
    assert main(args) == 0
    assert "written 1 files" in capsys.readouterr().out
    assert _outputs(dst) == first


def test_rerun_with_other_settings_or_foreign_destination_is_refused(tiny_folder, tmp_path, capsys):
    dst = tmp_path / "dst"
    assert main(["corrupt", str(tiny_folder), str(dst), *FAST, *SMALL]) == 0
    assert main(["corrupt", str(tiny_folder), str(dst), *FAST, *SMALL, "--seed", "1"]) == 1
    assert "other settings (seed: 0 there vs 1 now)" in capsys.readouterr().err
    foreign = tmp_path / "foreign"
    (foreign / "x").mkdir(parents=True)
    assert main(["corrupt", str(tiny_folder), str(foreign), *FAST, *SMALL]) == 1
    assert "not empty" in capsys.readouterr().err
    assert main(["corrupt", str(tiny_folder), str(tiny_folder / "out"), *FAST, *SMALL]) == 1
    assert "inside" in capsys.readouterr().err


def test_truncated_jpeg_errors_or_is_skipped(tiny_folder, tmp_path, capsys):
    good = (tiny_folder / "cls_b" / "b2.JPEG").read_bytes()
    (tiny_folder / "cls_a" / "broken.jpg").write_bytes(good[: len(good) // 2])
    args = ["corrupt", str(tiny_folder), str(tmp_path / "dst"), *FAST, *SMALL]
    assert main(args) == 1
    err = capsys.readouterr().err
    assert "broken.jpg" in err and "truncated" in err and "--skip-bad" in err
    assert main([*args, "--skip-bad"]) == 0
    out = capsys.readouterr().out  # the files before the bad one were done by the failed run: resumed
    assert "written 12 files" in out and "skipped 8 already done" in out
    assert "1 bad input file(s) skipped" in out and "broken.jpg" in out
    assert not list((tmp_path / "dst").rglob("broken*"))


def test_jpeg_quality_85_like_the_release(tiny_folder, tmp_path):
    dst = tmp_path / "dst"
    assert main(["corrupt", str(tiny_folder), str(dst), *FAST, *SMALL, "--jpeg-quality", "85"]) == 0
    names = {Path(k).name for k in _outputs(dst)}
    assert names == {"a0.jpg", "a1.jpg", "b0.jpg", "b1.jpg", "b2.JPEG"}  # JPEG sources keep their suffix
    reference = io.BytesIO()
    Image.fromarray(_rgb(32, 32, 9)).save(reference, format="JPEG", quality=85, optimize=True)
    with Image.open(dst / "gaussian_noise/3/cls_b/b2.JPEG") as im, Image.open(reference) as ref:
        assert im.format == "JPEG" and im.size == (32, 32)
        assert im.quantization == ref.quantization  # quality 85 tables


def test_preprocessing_matches_torchvision():
    from torchvision import transforms as T

    tv = T.Compose([T.Resize(256), T.CenterCrop(224)])
    for i, (h, w) in enumerate([(300, 451), (500, 257), (256, 256), (120, 90), (100, 1000)]):
        img = Image.fromarray(_rgb(h, w, i))
        np.testing.assert_array_equal(dw.imagenet_c_preprocess(img), np.asarray(tv(img)))
    small = Image.fromarray(_rgb(17, 30, 5))  # smaller than the crop: zero padding as CenterCrop
    np.testing.assert_array_equal(dw.imagenet_c_preprocess(small, None, 24), np.asarray(T.CenterCrop(24)(small)))


def test_real_imagenet_sample_image(imagenet_sample, tmp_path):
    src = tmp_path / "src" / "n01440764"
    src.mkdir(parents=True)
    (src / "n01440764_tench.JPEG").symlink_to(imagenet_sample / "n01440764" / "n01440764_tench.JPEG")
    dst = tmp_path / "dst"
    assert main(["corrupt", str(tmp_path / "src"), str(dst), "--corruptions", "fog", "--severities", "2",
                 "--jpeg-quality", "85", "--quiet"]) == 0
    with Image.open(dst / "fog/2/n01440764/n01440764_tench.JPEG") as im:
        assert im.size == (224, 224) and im.format == "JPEG"


def test_corrupt_arrays_layout_order_and_determinism(tmp_path):
    images = np.stack([_rgb(32, 32, i) for i in range(6)])
    labels = np.array([3, 1, 4, 1, 5, 9])
    keys = np.array([10, 11, 12, 20, 21, 22])
    dst = tmp_path / "c"
    s = dw.corrupt_arrays(dst, images, labels, ["gaussian_noise", "contrast"], keys=keys, seed=3, progress=False)
    assert (s.written, s.skipped) == (2, 0)
    arr = np.load(dst / "gaussian_noise.npy")
    assert arr.shape == (30, 32, 32, 3) and arr.dtype == np.uint8
    lab = np.load(dst / "labels.npy")
    assert lab.dtype == np.uint8 and lab.tolist() == labels.tolist() * 5
    for sev in (1, 5):  # severity-major rows
        for i in (0, 4):
            want = corruptions_pkg.corrupt(images[i], sev, "gaussian_noise", rng=dw.derive_rng(3, keys[i],
                                           "gaussian_noise", sev), profile="cifar")
            np.testing.assert_array_equal(arr[(sev - 1) * 6 + i], want)
    # a subset with the same keys gives the same rows; a rerun skips the complete files
    sub = tmp_path / "sub"
    dw.corrupt_arrays(sub, images[3:], labels[3:], ["gaussian_noise"], keys=keys[3:], seed=3, progress=False)
    np.testing.assert_array_equal(np.load(sub / "gaussian_noise.npy").reshape(5, 3, 32, 32, 3),
                                  arr.reshape(5, 6, 32, 32, 3)[:, 3:])
    mtime = (dst / "contrast.npy").stat().st_mtime_ns
    again = dw.corrupt_arrays(dst, images, labels, "contrast", keys=keys, seed=3, progress=False)
    assert (again.written, again.skipped) == (0, 1) and (dst / "contrast.npy").stat().st_mtime_ns == mtime


def test_cifar10_cli_limit(cifar10_root, tmp_path, capsys):
    from vqsa.data import load_cifar10

    dst = tmp_path / "c10c"
    args = ["corrupt", "--cifar10", "--data-root", str(cifar10_root), str(dst), "--limit", "20",
            "--corruptions", "snow", "pixelate", "--quiet"]
    assert main(args) == 0
    assert sorted(p.name for p in dst.iterdir()) == [LOCK_NAME, "labels.npy", "pixelate.npy", "snow.npy",
                                                     dw.MANIFEST_NAME]
    manifest = __import__("json").loads((dst / dw.MANIFEST_NAME).read_text())
    idx = np.array(manifest["indices"])
    assert len(idx) == 20 and np.all(np.diff(idx) > 0) and len(np.unique(load_cifar10(cifar10_root).labels[idx])) > 3
    ds = load_cifar10(cifar10_root, "test")
    snow = np.load(dst / "snow.npy")
    assert snow.shape == (100, 32, 32, 3)
    assert np.load(dst / "labels.npy").tolist() == np.tile(ds.labels[idx], 5).tolist()
    want = corruptions_pkg.corrupt(ds.images[idx[7]], 4, "snow", rng=dw.derive_rng(0, idx[7], "snow", 4),
                                   profile="cifar")
    np.testing.assert_array_equal(snow[3 * 20 + 7], want)
    two = tmp_path / "two"  # same bytes with 2 worker processes
    assert main([*args[:4], str(two), *args[5:], "--jobs", "2"]) == 0
    assert _tree(two)["snow.npy"] == _tree(dst)["snow.npy"]


def test_gallery_writes_a_png(tmp_path, capsys):
    src = tmp_path / "img.png"
    Image.fromarray(_rgb(50, 70, 8)).save(src)
    out = tmp_path / "g.png"
    assert main(["corrupt", "--gallery", str(src), str(out), "--corruptions", "noise", "contrast",
                 "--severities", "1", "5", "--resize", "48", "--center-crop", "40"]) == 0
    with Image.open(out) as im:
        assert im.format == "PNG" and im.size[0] > 200 and im.size[1] > 300
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


def test_gallery_to_an_unwritable_folder_fails_before_rendering(tmp_path, capsys, monkeypatch):
    src = tmp_path / "img.png"
    Image.fromarray(_rgb(50, 70, 8)).save(src)
    real_access = os.access
    monkeypatch.setattr(os, "access", lambda p, mode: mode != os.W_OK and real_access(p, mode))  # e.g. read-only
    monkeypatch.setattr(corruptions_pkg, "corrupt", lambda *a, **k: pytest.fail("rendered before the write check"))
    assert main(["corrupt", "--gallery", str(src), str(tmp_path / "g.png"), "--resize", "48",
                 "--center-crop", "40"]) == 1
    assert f"cannot write to {str(tmp_path)!r}" in capsys.readouterr().err


@pytest.mark.parametrize(
    "argv, code, message",
    [
        (["--corruptions", "fluffy_noise"], 1, "unknown corruption or subset 'fluffy_noise'"),
        (["--severities", "0"], 2, "severity must be in 1..5, got 0"),
        (["--jpeg-quality", "101"], 2, "JPEG quality must be in 1..95"),
        (["--limit", "5"], 1, "--limit cannot be used in folder mode"),
    ],
)
def test_bad_arguments(tiny_folder, tmp_path, capsys, argv, code, message):
    if code == 2:
        with pytest.raises(SystemExit) as e:
            main(["corrupt", str(tiny_folder), str(tmp_path / "d"), *argv])
        assert e.value.code == 2
    else:
        assert main(["corrupt", str(tiny_folder), str(tmp_path / "d"), *argv]) == 1
    assert message in capsys.readouterr().err


def test_missing_empty_or_wrong_sources(tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("VQSA_DATA", raising=False)
    assert main(["corrupt", "--cifar10", str(tmp_path / "c")]) == 1
    assert "--data-root" in capsys.readouterr().err
    assert main(["corrupt", "--cifar10", str(tmp_path / "c"), "--severities", "1"]) == 1
    assert "--severities cannot be used in cifar10 mode" in capsys.readouterr().err
    assert main(["corrupt", str(tmp_path / "nope"), str(tmp_path / "d")]) == 1
    assert "does not exist" in capsys.readouterr().err
    (tmp_path / "empty").mkdir()
    assert main(["corrupt", str(tmp_path / "empty"), str(tmp_path / "d")]) == 1
    assert "no images in" in capsys.readouterr().err
    assert main(["corrupt", str(tmp_path / "empty")]) == 1
    assert "usage: vqsa corrupt SRC DST" in capsys.readouterr().err


def test_derive_rng_is_stable():
    """Changing the key derivation would silently change every dataset written so far."""
    assert dw.derive_rng(0, "cls/a.png", "fog", 3).integers(0, 2**31, 3).tolist() == [425515339, 1898640735, 1453818761]
    assert dw.derive_rng(0, "a", 1).random() != dw.derive_rng(0, "a", 2).random()
    assert dw.derive_rng(1, 5).random() == dw.derive_rng(1, np.int64(5)).random()


def test_too_small_image_is_named(tmp_path, capsys):
    src = tmp_path / "src"
    src.mkdir()
    Image.fromarray(_rgb(20, 50, 0)).save(src / "tiny.png")
    args = ["corrupt", str(src), str(tmp_path / "d"), "--corruptions", "gaussian_noise", "--resize", "none",
            "--center-crop", "none", "--quiet"]
    assert main(args) == 1
    assert "tiny.png" in capsys.readouterr().err
    assert main([*args, "--skip-bad"]) == 0
    assert "50x20 after preprocessing" in capsys.readouterr().out


def _tiny_cifar(root, n=12):
    rng = np.random.default_rng(0)
    (root / "cifar10").mkdir(parents=True)
    classes = np.array(["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"])
    np.savez(root / "cifar10" / "test.npz", images=rng.integers(0, 256, (n, 32, 32, 3), dtype=np.uint8),
             labels=rng.integers(0, 10, n), classes=classes)
    return root


def test_cifar10_limit_above_the_test_set_is_an_error(tmp_path, capsys):
    root = _tiny_cifar(tmp_path / "data")
    args = ["corrupt", "--cifar10", "--data-root", str(root), str(tmp_path / "c"), "--corruptions", "contrast",
            "--quiet"]
    assert main([*args, "--limit", "13"]) == 1
    assert "limit 13 is larger than the 12 CIFAR-10 test images" in capsys.readouterr().err
    assert not (tmp_path / "c").exists()  # nothing written
    assert main([*args, "--limit", "12"]) == 0  # exactly all: fine


def test_cifar10_resume_with_another_limit_says_what_differs(tmp_path, capsys):
    root = _tiny_cifar(tmp_path / "data")
    args = ["corrupt", "--cifar10", "--data-root", str(root), str(tmp_path / "c"), "--corruptions", "contrast",
            "--quiet", "--limit"]
    assert main([*args, "5"]) == 0
    assert main([*args, "7"]) == 1
    err = capsys.readouterr().err
    assert "other settings (number of images n (--limit): 5 there vs 7 now; a different selection" in err
    assert "keys_sha256" not in err


def test_output_size_below_the_minimum_is_a_setting_error(tiny_folder, tmp_path, capsys):
    dst = tmp_path / "d"
    assert main(["corrupt", str(tiny_folder), str(dst), "--resize", "16", "--center-crop", "16", "--quiet"]) == 1
    err = capsys.readouterr().err
    assert "--center-crop 16 makes every image 16x16" in err and "--skip-bad" not in err
    assert not dst.exists()
    assert main(["corrupt", str(tiny_folder), str(dst), "--resize", "20", "--center-crop", "none", "--quiet"]) == 1
    assert "--resize 20" in capsys.readouterr().err


def test_resume_from_another_source_folder_is_refused(tiny_folder, tmp_path, capsys):
    """Finished outputs count as done by name: resuming from another source would keep the first source's images."""
    dst, other = tmp_path / "dst", tmp_path / "other"
    assert main(["corrupt", str(tiny_folder), str(dst), *FAST, *SMALL]) == 0
    (other / "cls_a").mkdir(parents=True)
    Image.fromarray(_rgb(48, 60, 9)).save(other / "cls_a" / "a0.png")
    before = _tree(dst)
    assert main(["corrupt", str(other), str(dst), *FAST, *SMALL]) == 1
    err = capsys.readouterr().err
    assert f"was written from {tiny_folder.resolve()}, not {other.resolve()}" in err
    assert _tree(dst) == before


def test_unwritable_destination_is_a_one_line_error(tiny_folder, tmp_path, capsys):
    """OS errors (a file in the way, a read-only or full disk) end like the other errors: one line, exit status 1."""
    (tmp_path / "afile").write_text("x")
    assert main(["corrupt", str(tiny_folder), str(tmp_path / "afile" / "sub"), *FAST, *SMALL]) == 1
    err = capsys.readouterr().err
    assert err.startswith("vqsa corrupt: error: ") and "Not a directory" in err and "Traceback" not in err
