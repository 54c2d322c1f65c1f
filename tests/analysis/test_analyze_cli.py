import json

import numpy as np
import pytest
import torch

import vqsa
from vqsa.cli.main import main


@pytest.fixture(scope="module")
def runs(tmp_path_factory, tiny_images):
    """Two saved checkpoints (VQSA with a logged usage history, and a fine-tuned baseline) and a CIFAR-style root."""
    tmp = tmp_path_factory.mktemp("analyze")
    torch.manual_seed(0)
    vqsa.save_model(vqsa.create_model("cifar_resnet8", 10, codebook_size=16, init="normal"),
                    tmp / "vq" / "model.safetensors")
    (tmp / "vq" / "metrics.jsonl").write_text(
        "".join(json.dumps({"epoch": e, "codebook_perplexity": 1.0 + e, "codebook_used": e / 16}) + "\n"
                for e in (1, 2)))
    vqsa.save_model(vqsa.create_model("cifar_resnet8", 10, vq=False), tmp / "ft" / "model.safetensors")
    images, labels = tiny_images
    (tmp / "data" / "cifar10").mkdir(parents=True)
    classes = np.array(["airplane", "automobile", "bird", "cat"])
    np.savez(tmp / "data" / "cifar10" / "test.npz", images=images, labels=labels.astype(np.int64), classes=classes)
    return tmp


def test_analyze_all_with_compare(runs, capsys):
    out = runs / "out"
    rc = main(["analyze", str(runs / "vq"), "--compare", str(runs / "ft"), "--data-root", str(runs / "data"),
               "--classes", "bird", "airplane", "--per-class", "3", "--cam-images", "3", "--limit", "12",
               "--corruptions", "fog", "contrast", "--tsne-iters", "250", "--out", str(out), "--device", "cpu"])
    assert rc == 0
    for name in ("vq/tsne_corruption.png", "vq/tsne_class.png", "vq/tsne.json", "vq/codebook.json",
                 "vq/codebook_usage.png", "vq/codebook_agreement.png", "vq/codebook_training.png",
                 "ft/tsne_class.png", "gradcam.png", "gradcam.json", "analysis.json"):
        assert (out / name).stat().st_size > 0, name
    assert not (out / "ft" / "codebook.json").exists()  # the baseline has no codebook
    report = json.loads((out / "analysis.json").read_text())
    assert report["codebook"]["ft"] is None
    assert report["codebook"]["vq"]["usage"]["clean"]["images"] == 12
    assert report["tsne"]["vq"]["class_wise"]["classes"] == ["bird", "airplane"]
    assert set(report["gradcam"]) == {"vq", "ft"}
    assert report["corruptions"] == ["fog", "contrast"]
    cam = json.loads((out / "gradcam.json").read_text())
    assert cam["corruption"] == "fog" and len(set(cam["labels"])) == 3
    assert "wrote" in capsys.readouterr().out


def test_analyze_reports_bad_input(runs, capsys):
    base = ["analyze", str(runs / "vq"), "--data-root", str(runs / "data"), "--out", str(runs / "bad")]
    assert main(base + ["--classes", "horse"]) == 1
    assert "unknown class 'horse'" in capsys.readouterr().err
    assert main(["analyze", str(runs / "ft"), "--data-root", str(runs / "data"), "--what", "codebook",
                 "--out", str(runs / "bad")]) == 1
    assert "none of the checkpoints has a codebook" in capsys.readouterr().err
    assert main(base + ["--classes", "12"]) == 1
    assert "class index 12 is out of range" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(base + ["--what", "tsne,umap"])
    with pytest.raises(SystemExit):  # refused before any feature is extracted
        main(base + ["--tsne-iters", "100"])
    assert "at least 250 iterations" in capsys.readouterr().err


def test_analyze_codebook_on_real_cifar10(runs, cifar10_root, tmp_path):
    rc = main(["analyze", str(runs / "vq"), "--data-root", str(cifar10_root), "--what", "codebook",
               "--limit", "40", "--corruptions", "gaussian_noise", "--out", str(tmp_path), "--device", "cpu"])
    assert rc == 0
    res = json.loads((tmp_path / "codebook.json").read_text())
    assert res["images"] == 40 and 0 <= res["agreement"]["overall"]["chance"] <= 1


def test_analyze_image_folder(runs, tmp_path):
    from PIL import Image

    rng = np.random.default_rng(0)
    for c in ("apple", "pear", "plum"):
        (tmp_path / "data" / "val" / c).mkdir(parents=True)
        for i in range(4):
            Image.fromarray(rng.integers(0, 255, (40, 48, 3), dtype=np.uint8)).save(tmp_path / "data" / "val" / c
                                                                                    / f"{i}.png")
    rc = main(["analyze", str(runs / "vq"), "--dataset", "imagefolder", "--data-root", str(tmp_path / "data"),
               "--what", "gradcam,codebook", "--cam-images", "3", "--limit", "5", "--corruptions", "fog",
               "--out", str(tmp_path / "out"), "--device", "cpu"])
    assert rc == 0
    report = json.loads((tmp_path / "out" / "analysis.json").read_text())
    # only the picked images are decoded: 3 Grad-CAM rows + 5 codebook images (disjoint for this seed)
    assert "8 of 12 images" in report["data"] and "CenterCrop(32)" in report["data"]
    cam = json.loads((tmp_path / "out" / "gradcam.json").read_text())
    assert cam["labels"] == [0, 1, 2]


def test_analyze_imagenet_folder_uses_imagenet_labels(imagenet_sample, tmp_path):
    torch.manual_seed(0)
    vqsa.save_model(vqsa.create_model("cifar_resnet8", 1000, codebook_size=16), tmp_path / "m.safetensors")
    rc = main(["analyze", str(tmp_path / "m.safetensors"), "--dataset", "imagefolder", "--data-root",
               str(imagenet_sample.parent), "--split", imagenet_sample.name, "--what", "gradcam", "--cam-images", "2",
               "--out", str(tmp_path / "out"), "--device", "cpu"])
    assert rc == 0
    cam = json.loads((tmp_path / "out" / "gradcam.json").read_text())
    index = json.loads((imagenet_sample.parent / "imagenet_wnid_to_index.json").read_text())
    first = sorted(p.name for p in imagenet_sample.iterdir() if p.is_dir())[:2]
    assert cam["labels"] == [index[w][0] for w in first]
