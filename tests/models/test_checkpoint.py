"""save_model / load_model / load_checkpoint round trips, prefixes, safe loading and clear errors; official weights."""
import math
import re
from collections import OrderedDict

import pytest
import torch
import torch.nn.functional as F
import torchvision

import vqsa
from vqsa.utils.io import atomic_torch_save


@pytest.fixture(scope="module")
def trained():
    torch.manual_seed(0)
    model = vqsa.create_model("cifar_resnet8", 10, codebook_size=16, init="kmeans", dead_code_threshold=1)
    model(torch.rand(32, 3, 32, 32))  # k-means init + BN statistics move
    return model.eval()


def _same(a, b, x):
    a.eval(), b.eval()
    return torch.equal(a(x), b(x))


def test_safetensors_round_trip(trained, tmp_path):
    path = vqsa.save_model(trained, tmp_path / "m.safetensors")
    from safetensors import safe_open

    with safe_open(str(path), "pt") as f:
        assert f.metadata()["format"] == "vqsa"
    loaded = vqsa.load_model(path)
    assert loaded.model_config == trained.model_config and not loaded.training
    assert bool(loaded.vq.initted) and _same(trained, loaded, torch.rand(2, 3, 32, 32))
    assert [p.name for p in tmp_path.iterdir()] == ["m.safetensors"]  # atomic: no temporary left


def test_training_checkpoint_and_run_folder(trained, tmp_path):
    x = torch.rand(2, 3, 32, 32)
    ckpt = {"model": {f"module._orig_mod.{k}": v for k, v in trained.state_dict().items()},
            "model_config": trained.model_config, "epoch": 3, "rng": torch.get_rng_state()}
    atomic_torch_save(ckpt, tmp_path / "checkpoint_last.pt")
    assert _same(trained, vqsa.load_model(tmp_path), x)  # run folder without model.safetensors
    vqsa.save_model(trained, tmp_path / "model.safetensors")
    assert _same(trained, vqsa.load_model(tmp_path), x)
    (tmp_path / "empty_run").mkdir()
    with pytest.raises(FileNotFoundError, match="model.safetensors"):
        vqsa.load_model(tmp_path / "empty_run")


def test_load_checkpoint_plain_dict_with_prefixes(trained, tmp_path):
    torch.save({f"module.{k}": v for k, v in trained.state_dict().items()}, tmp_path / "plain.pth")
    fresh = vqsa.create_model(**trained.model_config)
    vqsa.load_checkpoint(fresh, tmp_path / "plain.pth")
    assert _same(trained, fresh, torch.rand(2, 3, 32, 32))
    ddp_like = torch.nn.Module()
    ddp_like.module = vqsa.create_model(**trained.model_config)
    vqsa.load_checkpoint(ddp_like, tmp_path / "plain.pth")  # loads into the wrapped model
    assert _same(trained, ddp_like.module, torch.rand(2, 3, 32, 32))


def test_refuses_pickled_objects(trained, tmp_path):
    torch.save({"model": trained.state_dict(), "config": OrderedDict(a=torch.nn.Linear(2, 2))}, tmp_path / "evil.pt")
    with pytest.raises(ValueError, match="weights_only"):
        vqsa.load_checkpoint(vqsa.create_model(**trained.model_config), tmp_path / "evil.pt")


def test_truncated_files(trained, tmp_path):
    good = vqsa.save_model(trained, tmp_path / "m.safetensors").read_bytes()
    (tmp_path / "cut.safetensors").write_bytes(good[: len(good) // 2])
    with pytest.raises(ValueError, match="truncated"):
        vqsa.load_model(tmp_path / "cut.safetensors")
    torch.save(trained.state_dict(), tmp_path / "full.pt")
    data = (tmp_path / "full.pt").read_bytes()
    (tmp_path / "cut.pt").write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError, match="truncated"):
        vqsa.load_checkpoint(trained, tmp_path / "cut.pt")


def test_wrong_architecture_and_head(trained, tmp_path):
    path = vqsa.save_model(trained, tmp_path / "m.safetensors")
    other_head = vqsa.create_model("cifar_resnet8", 5, codebook_size=16)
    with pytest.raises(ValueError, match="reset_classifier"):
        vqsa.load_checkpoint(other_head, path)
    no_attn = vqsa.create_model("cifar_resnet8", 10, codebook_size=16, attention=False)
    with pytest.raises(ValueError, match=r"1 unexpected keys \[attn.qkv.weight\]"):
        vqsa.load_checkpoint(no_attn, path)
    result = vqsa.load_checkpoint(no_attn, path, strict=False)
    assert result.unexpected_keys == ["attn.qkv.weight"]
    bigger = vqsa.create_model("cifar_resnet8", 10, codebook_size=32)
    with pytest.raises(ValueError, match="vq.codebook"):
        vqsa.load_checkpoint(bigger, path)
    torch.save(trained.state_dict(), tmp_path / "no_config.pt")
    with pytest.raises(ValueError, match="no model_config"):
        vqsa.load_model(tmp_path / "no_config.pt")


def _official_state_dict(n=6, classes=7, seed=0):
    """A state dict with the authors' exact key names and shapes, on a torchvision ResNet-18 (d = 512)."""
    torch.manual_seed(seed)
    tv = torchvision.models.resnet18(num_classes=classes)
    for m in tv.modules():  # non-trivial BN statistics
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-0.1, 0.1), m.running_var.uniform_(0.5, 1.5)
    d = tv.fc.in_features
    body = torch.nn.Sequential(*list(tv.children())[:-2])  # resnet_layer: all children but avgpool and fc
    state = {f"resnet_layer.{k}": v for k, v in body.state_dict().items()}
    state["codebook.embeddings.weight"] = torch.rand(n, d) * 3
    for key in ("K", "Q", "V"):
        state[key] = torch.randn(d, d) * math.sqrt(2 / d)
    fuse = torch.nn.Linear(2 * d, d)
    state.update({"fc_fuse.0.weight": fuse.weight.detach(), "fc_fuse.0.bias": fuse.bias.detach()})
    state.update({"fc.weight": tv.fc.weight.detach(), "fc.bias": tv.fc.bias.detach()})
    return {f"module.{k}": v for k, v in state.items()}, body


def _official_forward(state, body, x):
    """The authors' eval path (with the /sqrt(2) of training), written out from official_implementation.md."""
    s = {k.removeprefix("module."): v for k, v in state.items()}
    mean = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
    feat = body.eval()((x - mean) / std).mean((2, 3))
    emb = s["codebook.embeddings.weight"]
    code = emb[(F.normalize(feat, dim=1) @ F.normalize(emb, dim=1).T).argmax(1)]
    fuse = torch.stack([code, feat], dim=2)  # (B, d, 2)
    K, Q, V = (torch.matmul(s[k], fuse) for k in ("K", "Q", "V"))
    A = torch.softmax(K.transpose(1, 2) @ Q / math.sqrt(2), dim=1)
    out = (V @ A).transpose(1, 2).flatten(1)
    h = F.relu(F.linear(out, s["fc_fuse.0.weight"], s["fc_fuse.0.bias"]))
    return F.linear(h, s["fc.weight"], s["fc.bias"])


def test_convert_official(tmp_path):
    state, body = _official_state_dict()
    torch.save(state, tmp_path / "official.pth")
    model = vqsa.convert_official(tmp_path / "official.pth", backbone="tv:resnet18")
    cfg = model.model_config
    assert cfg["codebook_size"] == 6 and cfg["num_classes"] == 7 and cfg["fusion"] == "concat" and cfg["attention"]
    x = torch.rand(2, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(model(x), _official_forward(state, body, x), rtol=1e-4, atol=1e-4)
    with pytest.raises(ValueError, match="dim 512"):
        vqsa.convert_official(state, backbone="tv:resnet50")
    with pytest.raises(ValueError, match="official"):
        vqsa.convert_official({"fc.weight": torch.zeros(2, 2)})


def _imagenet_normalised(x):
    return (x - torch.tensor([0.485, 0.456, 0.406])[:, None, None]) / torch.tensor([0.229, 0.224, 0.225])[:, None, None]


def test_pretrained_from_a_torchvision_weights_file(tmp_path):
    """Offline machines: ``pretrained=FILE`` loads the network's own weights (as torchvision saves them); its head is
    kept when it has num_classes outputs (a fine-tuned file too), else a new one is built, as timm does."""
    torch.manual_seed(0)
    net = torchvision.models.resnet18().eval()
    torch.save(net.state_dict(), tmp_path / "r18.pth")
    x = torch.rand(2, 3, 64, 64)
    same = vqsa.create_model("tv:resnet18", 1000, vq=False, pretrained=tmp_path / "r18.pth").eval()
    torch.testing.assert_close(same(x), net(_imagenet_normalised(x)))
    vq10 = vqsa.create_model("tv:resnet18", 10, codebook_size=8, pretrained=str(tmp_path / "r18.pth"))
    assert torch.equal(vq10.backbone.body.layer4[1].conv2.weight, net.layer4[1].conv2.weight)
    assert vq10.fc.out_features == 10
    old_style = {k: v for k, v in net.state_dict().items() if not k.endswith("num_batches_tracked")}
    torch.save(old_style, tmp_path / "old.pth")  # files from before BatchNorm counted its batches
    vqsa.create_model("tv:resnet18", 10, vq=False, pretrained=tmp_path / "old.pth")
    tuned = torchvision.models.resnet18(num_classes=10)
    torch.save(tuned.state_dict(), tmp_path / "tuned.pth")
    assert torch.equal(vqsa.create_model("tv:resnet18", 10, vq=False, pretrained=tmp_path / "tuned.pth").fc.weight,
                       tuned.fc.weight)


def test_pretrained_from_a_timm_safetensors_file(tmp_path):
    timm = pytest.importorskip("timm")
    from safetensors.torch import save_file

    net = timm.create_model("resnet10t", num_classes=1000).eval()
    save_file(net.state_dict(), tmp_path / "r10t.safetensors")
    model = vqsa.create_model("resnet10t", 1000, vq=False, pretrained=tmp_path / "r10t.safetensors").eval()
    x = torch.rand(2, 3, 64, 64)
    torch.testing.assert_close(model(x), net(_imagenet_normalised(x)))
    # another num_classes: a new head, and still every backbone weight required (timm alone loads non-strictly)
    ten = vqsa.create_model("resnet10t", 10, codebook_size=8, pretrained=tmp_path / "r10t.safetensors")
    assert ten.fc.out_features == 10 and torch.equal(ten.backbone.model.conv1[0].weight, net.conv1[0].weight)
    wrong = r"not weights of 'resnet14t': \d+ missing keys \[layer1.0.conv3.weight, .*\d+ shapes differ"
    with pytest.raises(ValueError, match=wrong):
        vqsa.create_model("resnet14t", 10, pretrained=tmp_path / "r10t.safetensors")
    # strict whatever the heads: a fine-tuned head is kept, a headless file or another network's is checked in full
    tuned = timm.create_model("resnet10t", num_classes=10)
    save_file(tuned.state_dict(), tmp_path / "tuned.safetensors")
    kept = vqsa.create_model("resnet10t", 10, vq=False, pretrained=tmp_path / "tuned.safetensors")
    assert torch.equal(kept.fc.weight, tuned.fc.weight)
    headless = {k: v for k, v in net.state_dict().items() if not k.startswith(("fc.", "layer4.0.conv2"))}
    save_file(headless, tmp_path / "headless.safetensors")
    with pytest.raises(ValueError, match=r"1 missing keys \[layer4.0.conv2.weight\]"):
        vqsa.create_model("resnet10t", 10, pretrained=tmp_path / "headless.safetensors")
    with pytest.raises(ValueError, match="not weights of 'vit_tiny_patch16_224'"):
        vqsa.create_model("vit_tiny_patch16_224", 10, img_size=32, pretrained=tmp_path / "r10t.safetensors")
    with pytest.raises(ValueError, match="not weights of 'convnext_atto'"):  # its filter raised a bare KeyError
        vqsa.create_model("convnext_atto", 10, pretrained=tmp_path / "r10t.safetensors")
    vqsa.save_model(vqsa.create_model("resnet10t", 10, codebook_size=8), tmp_path / "vqsa.safetensors")
    with pytest.raises(ValueError, match="it is a vqsa model"):
        vqsa.create_model("resnet10t", 10, pretrained=tmp_path / "vqsa.safetensors")
    # a network's original format, renamed by timm's filter (head included): ConvNeXt as its authors save it
    cnx = timm.create_model("convnext_atto")
    original = {}
    for key, value in cnx.state_dict().items():
        key = key.replace("stem.", "downsample_layers.0.").replace("head.fc.", "head.").replace("head.norm.", "norm.")
        key = re.sub(r"stages\.(\d+)\.blocks\.(\d+)", r"stages.\1.\2", key)
        key = re.sub(r"stages\.(\d+)\.downsample\.(\d+)", r"downsample_layers.\1.\2", key)
        original[key.replace("conv_dw", "dwconv").replace("mlp.fc", "pwconv")] = value
    save_file(original, tmp_path / "convnext_original.safetensors")
    for classes in (1000, 10):
        m = vqsa.create_model("convnext_atto", classes, vq=False, pretrained=tmp_path / "convnext_original.safetensors")
        assert torch.equal(m.backbone.model.stages[3].blocks[1].conv_dw.weight, cnx.stages[3].blocks[1].conv_dw.weight)
        assert torch.equal(m.fc.weight, cnx.head.fc.weight) == (classes == 1000)
    # timm's checkpoint filter runs: position embeddings resampled to another image size
    vit = timm.create_model("vit_tiny_patch16_224")
    save_file(vit.state_dict(), tmp_path / "vit.safetensors")
    small = vqsa.create_model("vit_tiny_patch16_224", 10, codebook_size=8, img_size=64,
                              pretrained=tmp_path / "vit.safetensors")
    assert small.backbone.model.pos_embed.shape == (1, 17, 192)
    assert "state_dict" not in small.backbone.model.pretrained_cfg  # no second copy of the weights kept
    assert torch.equal(small.backbone.model.blocks[0].attn.qkv.weight, vit.blocks[0].attn.qkv.weight)


def test_pretrained_file_of_another_network_or_a_vqsa_model_is_refused(trained, tmp_path):
    torch.save(torchvision.models.resnet18().state_dict(), tmp_path / "r18.pth")
    with pytest.raises(ValueError, match=r"not weights of 'tv:resnet34': \d+ missing keys \[layer1.2"):
        vqsa.create_model("tv:resnet34", 10, pretrained=tmp_path / "r18.pth")
    vqsa.save_model(trained, tmp_path / "vqsa.safetensors")
    with pytest.raises(ValueError, match="it is a vqsa model: use vqsa.load_model"):
        vqsa.create_model(trained.model_config["name"], 10, pretrained=tmp_path / "vqsa.safetensors")
    with pytest.raises(TypeError, match="pretrained must be"):
        vqsa.create_model("tv:resnet18", 10, pretrained=2.0)
    assert vqsa.create_model("tv:resnet18", 10, vq=False, pretrained=None).fc.out_features == 10  # None: False


def test_load_checkpoint_of_the_bare_network_points_to_pretrained_file(tmp_path):
    """It loaded nothing under strict=False, silently; now it says so, and where the file belongs."""
    torch.save(torchvision.models.resnet18().state_dict(), tmp_path / "r18.pth")
    model = vqsa.create_model("tv:resnet18", 1000, vq=False)
    with pytest.raises(ValueError, match=r"pretrained=FILE"):
        vqsa.load_checkpoint(model, tmp_path / "r18.pth")
    with pytest.warns(UserWarning, match="nothing loaded"):
        vqsa.load_checkpoint(model, tmp_path / "r18.pth", strict=False)
    with pytest.raises(ValueError, match="--model NAME --pretrained PATH"):
        vqsa.load_model(tmp_path / "r18.pth")


def test_flipped_bytes_in_saved_weights_are_refused_naming_the_file(trained, tmp_path):
    """A model.safetensors records the sha256 of its tensor data; a changed byte is a clear error on any read, and
    files without the record (other tools') still load."""
    from safetensors import safe_open
    from safetensors.torch import save_file

    from vqsa.models.weights_io import DATA_SHA256, WeightsIntegrityError

    path = vqsa.save_model(trained, tmp_path / "m.safetensors")
    with safe_open(str(path), framework="pt") as f:
        assert len(f.metadata()[DATA_SHA256]) == 64
    raw = bytearray(path.read_bytes())
    raw[-5] ^= 0xFF
    path.write_bytes(bytes(raw))
    with pytest.raises(WeightsIntegrityError, match=re.escape(str(path)) + ": damaged weights file"):
        vqsa.load_model(path)
    plain = tmp_path / "plain.safetensors"
    save_file({k: v.contiguous() for k, v in trained.state_dict().items()}, str(plain))
    vqsa.load_checkpoint(trained, plain)  # no recorded sha256: nothing to check
