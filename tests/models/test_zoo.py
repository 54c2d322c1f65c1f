"""Weights shipped inside the package: listing, offline loading, sha256 checks, other class counts, VQSA on top."""
from __future__ import annotations

import shutil

import numpy as np
import pytest
import torch

import vqsa
from vqsa.models import zoo
from vqsa.models.zoo import WeightsIntegrityError, export_weights, load_shipped, sha256_file, shipped_weights

NAME = "cifar_airnet"


def _backbone_state(model) -> dict[str, torch.Tensor]:
    return {k.removeprefix("backbone.model."): v for k, v in model.state_dict().items() if k.startswith("backbone.")}


def test_the_shipped_backbone_is_listed_and_its_file_matches_the_manifest():
    assert NAME in vqsa.list_models(source="vqsa", pretrained=True)
    assert "cifar_resnet20" not in vqsa.list_models(source="vqsa", pretrained=True)
    entry = shipped_weights()[NAME]
    assert entry.path.stat().st_size <= 8 * 2**20
    assert sha256_file(entry.path) == entry.sha256
    assert entry.card["shipped_test_accuracy"] >= 91.0


def test_pretrained_true_loads_the_shipped_file_offline():
    model = vqsa.create_model(NAME, num_classes=10, vq=False, pretrained=True)
    from safetensors.torch import load_file

    shipped = load_file(str(shipped_weights()[NAME].path))
    state = _backbone_state(model)
    assert all(torch.equal(state[k], shipped[k]) for k in shipped if not k.startswith("fc."))
    assert torch.equal(model.fc.weight, shipped["fc.weight"])


def test_pretrained_without_num_classes_takes_the_shipped_classes(recwarn):
    """As timm: the pretrained weights' class count is the default, so their classifier loads without a warning."""
    model = vqsa.create_model(NAME, vq=False, pretrained=True)
    assert model.num_classes == 10 and model.model_config["num_classes"] == 10
    assert not [w for w in recwarn if "classifier" in str(w.message)]
    assert vqsa.create_model(NAME, vq=False).num_classes == 1000  # no weights: the library default


@pytest.mark.data
def test_the_shipped_backbone_classifies_real_cifar10_test_images(cifar10_root):
    from vqsa.data.cifar import find_cifar10, load_cifar10

    test = load_cifar10(find_cifar10(cifar10_root), "test").subset(1000, seed=0)
    model = vqsa.create_model(NAME, num_classes=10, vq=False, pretrained=True).eval()
    with torch.no_grad():
        x = torch.from_numpy(test.images).permute(0, 3, 1, 2).float().div(255)
        acc = float((model(x).argmax(1).numpy() == test.labels).mean())
    assert acc >= 0.88


def test_vqsa_on_the_pretrained_backbone_keeps_it_and_adds_a_new_codebook_and_head():
    base = vqsa.create_model(NAME, num_classes=10, vq=False, pretrained=True)
    torch.manual_seed(0)
    model = vqsa.create_model(NAME, num_classes=10, pretrained=True, codebook_size=32)
    a, b = _backbone_state(base), _backbone_state(model)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert model.vq is not None and model.vq.codebook.shape == (32, model.backbone.num_features)


def test_another_class_count_loads_the_backbone_with_a_new_classifier_and_says_so():
    base = vqsa.create_model(NAME, num_classes=10, vq=False, pretrained=True)
    with pytest.warns(UserWarning, match="10 outputs, not 100"):
        other = vqsa.create_model(NAME, num_classes=100, vq=False, pretrained=True)
    a, b = _backbone_state(base), _backbone_state(other)
    assert all(torch.equal(a[k], b[k]) for k in a if not k.startswith("fc."))
    assert other.fc.weight.shape == (100, base.backbone.num_features)
    features = vqsa.create_model(NAME, num_classes=0, vq=False, pretrained=True)  # headless: no warning
    assert features(torch.rand(2, 3, 32, 32)).shape == (2, base.backbone.num_features)


def test_backbones_without_shipped_weights_refuse_pretrained():
    with pytest.raises(RuntimeError, match="no pretrained weights"):
        vqsa.create_model("cifar_resnet20", num_classes=10, pretrained=True)


@pytest.fixture
def fake_zoo(tmp_path, monkeypatch):
    """A weights folder of its own, exported from a fresh baseline run's weights file."""
    from vqsa.models import save_model

    model = vqsa.create_model(NAME, num_classes=10, vq=False)
    save_model(model, tmp_path / "run.safetensors")
    monkeypatch.setattr(zoo, "WEIGHTS_DIR", tmp_path / "weights")
    shipped_weights.cache_clear()
    entry = export_weights(tmp_path / "run.safetensors", NAME, {"note": "test"}, weights_dir=tmp_path / "weights")
    yield tmp_path / "weights", entry, model
    shipped_weights.cache_clear()


def test_export_is_deterministic_and_round_trips(fake_zoo, tmp_path):
    weights_dir, entry, model = fake_zoo
    first = (weights_dir / entry.file).read_bytes()
    again = export_weights(tmp_path / "run.safetensors", NAME, {"note": "test"}, weights_dir=weights_dir)
    assert again.sha256 == entry.sha256 and (weights_dir / entry.file).read_bytes() == first
    loaded = load_shipped(vqsa.models.cifar_airnet.CifarAirNet(), NAME, weights_dir=weights_dir)
    state = _backbone_state(model)
    assert all(torch.equal(v, state[k]) for k, v in loaded.state_dict().items() if k in state)


def test_a_changed_weights_manifest_is_refused_naming_it(fake_zoo):
    """The manifest carries the sha256 of its own content: an edited card or hash is caught before any use."""
    import json

    weights_dir, entry, _ = fake_zoo
    path = weights_dir / "manifest.json"
    data = json.loads(path.read_text())
    assert len(data["content_sha256"]) == 64
    data[NAME]["card"]["note"] = "edited"
    path.write_text(json.dumps(data))
    shipped_weights.cache_clear()
    with pytest.raises(ValueError, match=f"{path}: damaged file"):
        shipped_weights()


def test_a_damaged_weights_file_is_refused_naming_it(fake_zoo):
    weights_dir, entry, _ = fake_zoo
    path = weights_dir / entry.file
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(WeightsIntegrityError, match=entry.file):
        load_shipped(vqsa.models.cifar_airnet.CifarAirNet(), NAME, weights_dir=weights_dir)


def test_a_missing_weights_file_is_refused_naming_it(fake_zoo):
    weights_dir, entry, _ = fake_zoo
    (weights_dir / entry.file).unlink()
    with pytest.raises(FileNotFoundError, match=entry.file):
        load_shipped(vqsa.models.cifar_airnet.CifarAirNet(), NAME, weights_dir=weights_dir)


def test_weights_of_another_network_are_refused(fake_zoo, tmp_path):
    weights_dir, entry, _ = fake_zoo
    from vqsa.models.cifar_airnet import CifarAirNet

    with pytest.raises(ValueError, match="does not fit"):
        load_shipped(CifarAirNet((16, 64, 64)), NAME, weights_dir=weights_dir)
    shutil.copy(weights_dir / entry.file, tmp_path / "copy.safetensors")
    with pytest.raises(ValueError, match="not a vqsa baseline"):
        export_weights(_vqsa_file(tmp_path), NAME, {}, weights_dir=weights_dir)


def _vqsa_file(tmp_path):
    from vqsa.models import save_model

    path = tmp_path / "vqsa.safetensors"
    save_model(vqsa.create_model(NAME, num_classes=10, codebook_size=8), path)
    return path


def test_cifar_airnet_has_the_timm_interface():
    model = vqsa.models.cifar_airnet.CifarAirNet(num_classes=10)
    x = torch.rand(2, 3, 32, 32)
    feats = model.forward_features(x)
    assert feats.shape == (2, 256, 3, 3)
    assert torch.allclose(model.forward_head(feats), model(x))
    assert model.forward_head(feats, pre_logits=True).shape == (2, model.num_features)
    model.reset_classifier(0)
    assert model(x).shape == (2, 256)
    assert np.isclose(sum(p.numel() for p in model.parameters()) / 1e6, 1.97, atol=0.01)


def test_safetensors_bytes_do_not_depend_on_the_process(child_env):
    import subprocess
    import sys

    code = ("import hashlib, torch; from vqsa.models.checkpoint import safetensors_bytes; "
            "t = {'w': torch.arange(6.).reshape(2, 3), 'b': torch.ones(3, dtype=torch.float16)}; "
            "m = {'format': 'vqsa', 'model_config': '{}', 'vqsa_version': '0', 'x': '1', 'y': '2'}; "
            "print(hashlib.sha256(safetensors_bytes(t, m)).hexdigest())")
    digests = {subprocess.run([sys.executable, "-c", code], env=child_env, capture_output=True, text=True,
                              check=True).stdout for _ in range(3)}
    assert len(digests) == 1
    from safetensors.torch import load

    from vqsa.models.checkpoint import safetensors_bytes

    back = load(safetensors_bytes({"w": torch.arange(6.0)}, {"k": "v"}))
    assert torch.equal(back["w"], torch.arange(6.0))


@pytest.mark.parametrize("config, problem", [("[1, 2]", "JSON list"), ("{bad", "not valid JSON")])
def test_bad_model_config_metadata_is_named_with_its_file(tmp_path, config, problem):
    from vqsa.models import load_model
    from vqsa.models.checkpoint import safetensors_bytes

    path = tmp_path / "m.safetensors"
    path.write_bytes(safetensors_bytes({"w": torch.zeros(1)}, {"format": "vqsa", "model_config": config}))
    with pytest.raises(ValueError, match=f"{path}: its model_config metadata .*{problem}"):
        load_model(path)
