"""``vqsa evaluate`` and ``vqsa compare`` end to end on a tiny saved model and tiny released-layout sets."""
import json

import pytest
import torch
import yaml

import vqsa
from evalhelpers import write_cifar10, write_cifar10_c
from vqsa.cli.main import main


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    run = tmp_path_factory.mktemp("runs") / "tiny"
    run.mkdir()
    torch.manual_seed(0)
    model = vqsa.create_model("cifar_resnet8", num_classes=10, codebook_size=8)
    vqsa.save_model(model, run / "model.safetensors")
    (run / "config.yaml").write_text(yaml.safe_dump({"corruption": {"corruptions": ["fog", "contrast"]}}))
    return run


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("data")
    labels = write_cifar10(root, n=8)
    write_cifar10_c(root / "CIFAR-10-C", ["fog", "speckle_noise"], n=6, clean_labels=labels)
    return root


def test_cli_evaluate_writes_all_files(run_dir, data, tmp_path, capsys):
    out = tmp_path / "eval"
    with pytest.warns(UserWarning, match="trained on 1 of the evaluated corruptions .*fog"):
        rc = main(["evaluate", "--checkpoint", str(run_dir), "--dataset", "cifar10-c", "--data-root", str(data),
                   "--corruptions", "fog", "speckle_noise", "--severities", "1", "3", "--batch-size", "5",
                   "--workers", "0", "--out", str(out), "--no-progress"])
    assert rc == 0
    printed = capsys.readouterr().out
    assert "| model | dataset | clean acc |" in printed and "results.json" in printed
    assert {p.name for p in out.iterdir()} == {"results.json", "results.csv", "results.md", "results.png"}
    d = json.loads((out / "results.json").read_text())
    assert d["dataset"] == "cifar10-c" and d["source"].startswith("released files")
    assert d["n_examples"] == {"clean": 6, "per_cell": 6, "total": 6 + 4 * 6}  # the 6 clean images of the rows
    assert d["train_corruptions"] == ["fog", "contrast"] and d["overlap"] == ["fog"]
    assert d["model"]["name"] == "cifar_resnet8" and d["model"]["checkpoint"] == str(run_dir)
    assert d["summary"]["mce"] is None and isinstance(d["summary"]["mean_error"], float)
    assert len((out / "results.csv").read_text().splitlines()) == 1 + 1 + 4
    # compare two runs (the same file twice, labelled)
    cmp = tmp_path / "cmp"
    assert main(["compare", str(out / "results.json"), str(out), "--names", "a", "b", "--out", str(cmp)]) == 0
    text = capsys.readouterr().out
    assert "| a | cifar10-c |" in text and "| b | cifar10-c |" in text and "speckle_noise" in text
    assert (cmp / "compare.md").is_file() and (cmp / "compare.png").stat().st_size > 1000


def test_cli_errors_are_clear(run_dir, data, tmp_path, capsys):
    base = ["evaluate", "--dataset", "cifar10-c", "--data-root", str(data), "--workers", "0", "--no-progress",
            "--out", str(tmp_path / "o")]
    bad = tmp_path / "broken.safetensors"
    bad.write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{not json at all")
    assert main([*base, "--checkpoint", str(bad)]) == 1
    assert "cannot load a model from" in capsys.readouterr().err
    assert main([*base, "--checkpoint", str(tmp_path / "nope")]) == 1
    assert "does not exist" in capsys.readouterr().err
    assert main([*base, "--checkpoint", str(run_dir), "--corruptions", "snow"]) == 1
    assert "snow.npy" in capsys.readouterr().err
    with pytest.warns(UserWarning):
        rc = main([*base, "--checkpoint", str(run_dir), "--corruptions", "snow", "fog", "--severities", "2",
                   "--allow-missing"])
    assert rc == 0
    d = json.loads((tmp_path / "o" / "results.json").read_text())
    assert [s["corruption"] for s in d["skipped"]] == ["snow"] and d["eval_corruptions"] == ["fog"]
    assert "skipped snow/2" in (tmp_path / "o" / "results.md").read_text()
    assert main(["compare", str(tmp_path / "missing.json")]) == 1
    assert "does not exist" in capsys.readouterr().err


def test_cli_model_zoo_classifier(data, tmp_path, capsys):
    args = ["evaluate", "--model", "cifar_resnet8", "--dataset", "cifar10", "--data-root", str(data), "--workers", "0",
            "--no-progress", "--out", str(tmp_path / "zoo")]
    assert main(args) == 0
    captured = capsys.readouterr()
    assert "random weights" in captured.err
    d = json.loads((tmp_path / "zoo" / "results.json").read_text())
    assert d["model"]["name"] == "cifar_resnet8" and d["eval_corruptions"] == [] and d["clean"]["total"] == 8
    assert main([*args, "--num-classes", "100"]) == 1
    assert "label-space mismatch: the model outputs 100 classes" in capsys.readouterr().err
    # offline pretrained weights: the network's own weights file
    from vqsa.models._registry import vqsa_backbone

    torch.save(vqsa_backbone("cifar_resnet8")(num_classes=10).state_dict(), tmp_path / "net.pth")
    assert main([*args, "--pretrained", str(tmp_path / "net.pth")]) == 0
    assert "random weights" not in capsys.readouterr().err
    recorded = json.loads((tmp_path / "zoo" / "results.json").read_text())["model"]
    assert recorded["pretrained"] == str(tmp_path / "net.pth")
