"""Whole models that ship with vqsa (``<backbone>.<tag>``): exported in float16, listed, rebuilt with their own
architecture and weights by ``create_model``, checked by sha256, and evaluated by name from the command line."""
import json

import pytest
import torch

import vqsa
from evalhelpers import write_cifar10, write_cifar10_c
from vqsa.cli.main import main
from vqsa.models import zoo
from vqsa.models.weights_io import WeightsIntegrityError

TAG = "cifar_airnet.test_c10c"


@pytest.fixture()
def shipped(tmp_path, monkeypatch):
    torch.manual_seed(0)
    model = vqsa.create_model("cifar_airnet", num_classes=10, codebook_size=16).eval()
    vqsa.save_model(model, tmp_path / "run.safetensors")
    monkeypatch.setattr(zoo, "WEIGHTS_DIR", tmp_path / "weights")
    zoo.shipped_weights.cache_clear()
    card = {"train_corruptions": "common", "note": "test"}
    entry = zoo.export_model(tmp_path / "run.safetensors", TAG, card, weights_dir=tmp_path / "weights")
    yield entry, model
    zoo.shipped_weights.cache_clear()


def test_a_shipped_model_loads_by_name_with_its_architecture_and_weights(shipped):
    entry, original = shipped
    assert TAG in vqsa.list_models(source="vqsa", pretrained=True)
    assert entry.storage == "float16" and entry.path.stat().st_size < 0.6 * 4 * sum(
        p.numel() for p in original.state_dict().values())
    model = vqsa.create_model(TAG, pretrained=True).eval()
    assert model.model_config == original.model_config
    for key, value in original.state_dict().items():
        loaded = model.state_dict()[key]
        assert loaded.dtype == value.dtype
        if value.is_floating_point():
            torch.testing.assert_close(loaded, value.half().to(value.dtype))
    x = torch.rand(2, 3, 32, 32)
    torch.testing.assert_close(model(x), original(x), atol=0.05, rtol=0.05)
    fresh = vqsa.create_model(TAG, pretrained=False)  # the architecture alone
    assert fresh.model_config == original.model_config
    assert not torch.equal(fresh.fc.weight, model.fc.weight)


def test_a_shipped_model_refuses_other_architectures_and_damage(shipped):
    entry, _ = shipped
    with pytest.raises(ValueError, match="its own architecture.*codebook_size"):
        vqsa.create_model(TAG, pretrained=True, codebook_size=5)
    with pytest.raises(ValueError, match="reset_classifier\\(3\\)"):
        vqsa.create_model(TAG, num_classes=3, pretrained=True)
    raw = bytearray(entry.path.read_bytes())
    raw[-3] ^= 0xFF
    entry.path.write_bytes(bytes(raw))
    with pytest.raises(WeightsIntegrityError, match=entry.file):
        vqsa.create_model(TAG, pretrained=True)


def test_export_needs_the_runs_own_backbone_and_a_tag(shipped, tmp_path):
    with pytest.raises(ValueError, match="<backbone>.<tag>"):
        zoo.export_model(tmp_path / "run.safetensors", "cifar_resnet20.x", {}, weights_dir=tmp_path / "weights")
    with pytest.raises(ValueError, match="<backbone>.<tag>"):
        zoo.export_model(tmp_path / "run.safetensors", "cifar_airnet", {}, weights_dir=tmp_path / "weights")


def test_vqsa_evaluate_takes_a_shipped_model_by_name(shipped, tmp_path):
    root = tmp_path / "data"
    labels = write_cifar10(root, n=6)
    write_cifar10_c(root / "cifar10-c", ["fog", "speckle_noise"], n=6, clean_labels=labels)
    out = tmp_path / "eval"
    with pytest.warns(UserWarning, match="trained on 1 of the evaluated corruptions"):
        assert main(["evaluate", "--model", TAG, "--dataset", "cifar10-c", "--data-root", str(root), "--corruptions",
                     "fog", "speckle_noise", "--workers", "0", "--no-progress", "--out", str(out)]) == 0
    d = json.loads((out / "results.json").read_text())
    assert d["model"]["label"] == TAG and d["model"]["sha256"] == shipped[0].sha256
    assert d["summary"]["protocol"] == "seen" and d["per_corruption"]["speckle_noise"]["seen_in_training"] is False
