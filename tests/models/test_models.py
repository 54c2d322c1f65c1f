"""timm-style model tests over small backbones x Table 1 rows: contract, shapes, gradients, determinism, errors."""
import dataclasses
import json

import pytest
import torch
import torch.nn.functional as F

import vqsa
from vqsa.models import VQSAClassifier, VQSAOutput

# (name, input side, extra kwargs): vqsa's CIFAR ResNet, a torchvision ResNet with a CIFAR stem, a tiny timm model
BACKBONES = [("cifar_resnet8", 32, {}), ("tv:resnet18", 32, {}), ("test_resnet", 32, {})]
ROWS = {
    "finetune": {"vq": False},
    "replace": {"fusion": "replace"},
    "add": {"fusion": "add"},
    "concat": {"fusion": "concat", "attention": False},
    "concat_sa": {},
}


def _build(name, kw, row, **extra):
    opts = dict(ROWS[row])
    if opts.get("vq", True):
        opts["codebook_size"] = 16
    torch.manual_seed(0)
    return vqsa.create_model(name, 42, **kw, **opts, **extra)


@pytest.mark.parametrize("row", list(ROWS))
@pytest.mark.parametrize("name, side, kw", BACKBONES, ids=[b[0] for b in BACKBONES])
def test_train_step_and_contract(name, side, kw, row):
    model = _build(name, kw, row)
    assert isinstance(model, VQSAClassifier) and model.num_classes == 42
    x, y = torch.rand(4, 3, side, side), torch.randint(0, 42, (4,))
    logits = model(x)
    assert isinstance(logits, torch.Tensor) and logits.shape == (4, 42) and torch.isfinite(logits).all()
    out = model(x, return_aux=True)
    assert isinstance(out, VQSAOutput) and out.features.shape == (4, model.head_hidden_size)
    assert out.aux_loss.ndim == 0
    if row == "finetune":
        assert model.vq is None and out.indices is None and out.quantized is None and out.losses == {}
        assert float(out.aux_loss) == 0
    else:
        assert out.indices.shape == (4,) and out.quantized.shape == out.features.shape
        assert set(out.losses) == {"codebook", "commitment"} and float(out.aux_loss) > 0
    (F.cross_entropy(out.logits, y) + out.aux_loss).backward()
    missing = [n for n, p in model.named_parameters() if p.grad is None]
    assert not missing, f"parameters without gradient: {missing}"
    # eval: same arity, zero aux loss, deterministic
    model.eval()
    a, b = model(x, return_aux=True), model(x, return_aux=True)
    assert isinstance(model(x), torch.Tensor) and float(a.aux_loss) == 0
    assert torch.equal(a.logits, b.logits)
    if name != "cifar_resnet8" and row != "concat_sa":
        return  # the config check below rebuilds the model: once per large backbone is enough
    # the config rebuilds the same architecture
    rebuilt = vqsa.create_model(**json.loads(json.dumps(model.model_config)))
    assert list(rebuilt.state_dict()) == list(model.state_dict())
    assert model.model_config.get("pretrained", False) is False


def test_codebook_gradient_only_from_vq_term():
    model = _build("cifar_resnet8", {}, "concat_sa")
    out = model(torch.rand(4, 3, 32, 32), return_aux=True)
    ce = F.cross_entropy(out.logits, torch.randint(0, 42, (4,)))
    assert torch.autograd.grad(ce, model.vq.codebook, retain_graph=True, allow_unused=True)[0] is None
    g_aux = torch.autograd.grad(out.aux_loss, model.vq.codebook, retain_graph=True)[0]
    g_vq = torch.autograd.grad(out.losses["codebook"], model.vq.codebook)[0]
    torch.testing.assert_close(g_aux, g_vq)
    assert g_aux.abs().sum() > 0


def test_heads_per_row():
    d = 64
    shapes = {}
    for row in ROWS:
        m = _build("cifar_resnet8", {}, row)
        shapes[row] = (m.fc_fuse[0].weight.shape if row != "finetune" else None, m.fc.weight.shape)
    assert shapes["finetune"] == (None, (42, d))
    assert shapes["replace"] == shapes["add"] == ((d, d), (42, d))
    assert shapes["concat"] == shapes["concat_sa"] == ((d, 2 * d), (42, d))


def test_timm_interface():
    model = _build("cifar_resnet8", {}, "concat_sa").eval()
    x = torch.rand(2, 3, 32, 32)
    feats = model.forward_features(x)
    assert feats.ndim == 4 and feats.shape[1] == model.num_features
    pre = model.forward_head(feats, pre_logits=True)
    assert pre.shape == (2, model.head_hidden_size)
    torch.testing.assert_close(model.fc(pre), model(x))
    model.reset_classifier(7)
    assert model(x).shape == (2, 7) and model.model_config["num_classes"] == 7
    model.reset_classifier(0)
    assert model(x).shape == (2, model.head_hidden_size)
    assert model.pretrained_cfg["mean"] == (0.0, 0.0, 0.0)  # timm's data config must not normalise again
    layer = model.cam_target_layers()[0]
    assert layer is model.backbone.model.layer3[-1]


def test_timm_semantics_of_widths_pooling_decay_and_checkpointing():
    """As timm: num_features is forward_features' width and head_hidden_size the pre-logits' (MobileNetV3's head
    conv makes them differ), reset_classifier takes global_pool, no_weight_decay names the codebook."""
    timm = pytest.importorskip("timm")
    model = vqsa.create_model("mobilenetv3_small_100", 5, codebook_size=8).eval()
    ref = timm.create_model("mobilenetv3_small_100")
    x = torch.rand(1, 3, 64, 64)
    assert (model.num_features, model.head_hidden_size) == (ref.num_features, ref.head_hidden_size) == (576, 1024)
    assert model.forward_features(x).shape[1] == 576 and model.forward_head(model.forward_features(x),
                                                                            pre_logits=True).shape == (1, 1024)
    model.reset_classifier(3, "avg")
    assert model(x).shape == (1, 3)
    with pytest.raises(ValueError, match="this model pools with 'avg'"):
        model.reset_classifier(3, "max")
    vit = vqsa.create_model("vit_tiny_patch16_224", 5, codebook_size=8, img_size=32)
    vit.reset_classifier(4, "token")
    with pytest.raises(ValueError, match="this model pools with 'token'"):
        vit.reset_classifier(4, "avg")  # accepted before, and silently kept token pooling
    assert "vq.codebook" in model.no_weight_decay()
    model.set_grad_checkpointing()
    assert model.backbone.model.grad_checkpointing
    assert isinstance(vqsa.create_model("efficientvit_m0", 0, codebook_size=8).fc, torch.nn.Identity)  # no head
    with pytest.raises(NotImplementedError, match="timm backbone"):
        vqsa.create_model("tv:resnet18", 5, vq=False).set_grad_checkpointing()


def test_group_matcher_gives_timm_layer_decay_the_backbones_layers():
    """Without it timm's layer decay put every parameter in one layer. torchvision and timm ResNet-18 group alike
    (stem, 8 blocks); the codebook and classifier form the last group (full learning rate)."""
    pytest.importorskip("timm")
    from timm.models import group_parameters
    from timm.optim import create_optimizer_v2

    for name in ("tv:resnet18", "resnet18"):
        model = vqsa.create_model(name, 10, codebook_size=8)
        layers = group_parameters(model, model.group_matcher(), reverse=True)
        body = "backbone.body." if name.startswith("tv:") else "backbone.model."
        assert layers[body + "conv1.weight"] == 0 and layers[body + "layer1.1.conv2.weight"] == 2
        assert layers["vq.codebook"] == layers["fc.weight"] == layers["attn.qkv.weight"] == 9
        assert max(group_parameters(model, model.group_matcher(coarse=True), reverse=True).values()) == 5
        opt = create_optimizer_v2(model, "adamw", lr=1e-3, weight_decay=0.05, layer_decay=0.5)
        assert sorted({g["lr_scale"] for g in opt.param_groups})[::9] == [0.5**9, 1.0]
    regnet = vqsa.create_model("tv:regnet_y_400mf", 10, vq=False)  # stem, 1 + 3 + 6 + 6 blocks, head
    layers = group_parameters(regnet, regnet.group_matcher(), reverse=True)
    assert layers["backbone.body.stem.0.weight"] == 0 and layers["fc.weight"] == 17


def test_vqsa_train_does_not_decay_what_no_weight_decay_names():
    """vqsa train's optimizer follows the model's no_weight_decay(), as timm's factory does (a ViT backbone's
    position embedding and class token are 2-D / 3-D, so the 1-D rule alone decayed them)."""
    from vqsa.train.config import OptimConfig
    from vqsa.train.optim import build_optimizer

    model = vqsa.create_model("vit_tiny_patch16_224", 5, codebook_size=8, img_size=32)
    opt = build_optimizer(model, OptimConfig(name="adamw", weight_decay=0.05))
    undecayed = {id(p) for g in opt.param_groups if g["weight_decay"] == 0 for p in g["params"]}
    for name in ("backbone.model.pos_embed", "backbone.model.cls_token", "vq.codebook"):
        assert id(model.get_parameter(name)) in undecayed, name
    assert id(model.get_parameter("fc.weight")) not in undecayed


def test_timm_backbone_preprocessing_reaches_resolve_data_config():
    from timm.data import resolve_data_config

    model = vqsa.create_model("resnet18.a1_in1k", 10, vq=False)
    cfg = resolve_data_config({}, model=model)
    assert cfg["crop_pct"] == 0.95 and cfg["interpolation"] == "bicubic"  # resnet18.a1_in1k's own preprocessing
    assert cfg["mean"] == (0.0, 0.0, 0.0) and cfg["std"] == (1.0, 1.0, 1.0)  # the model normalises inside
    assert model.pretrained_cfg["test_input_size"] == (3, 288, 288)


def test_cifar_stem():
    tv = vqsa.create_model("tv:resnet18", 10, vq=False, cifar_stem=True)
    assert tv.backbone.body.conv1.kernel_size == (3, 3) and tv.backbone.body.conv1.stride == (1, 1)
    assert isinstance(tv.backbone.body.maxpool, torch.nn.Identity)
    assert tv.forward_features(torch.rand(1, 3, 16, 16)).shape[-1] == 2  # 16 px / 8, no stem downsampling
    timm_model = vqsa.create_model("resnet10t", 10, codebook_size=8, cifar_stem=True)
    assert timm_model.backbone.model.conv1.stride == (1, 1) and timm_model.model_config["cifar_stem"] is True


def test_normalisation_inside_uses_backbone_stats():
    cifar = vqsa.create_model("cifar_resnet8", 10, vq=False)
    tv = vqsa.create_model("tv:resnet18", 10, vq=False)
    assert cifar.normalize.mean.flatten().tolist() == pytest.approx([0.4914, 0.4822, 0.4465])
    assert tv.normalize.std.flatten().tolist() == pytest.approx([0.229, 0.224, 0.225])
    custom = vqsa.create_model("cifar_resnet8", 10, vq=False, mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25))
    assert custom.model_config["mean"] == [0.5, 0.5, 0.5]
    assert vqsa.create_model(**custom.model_config).normalize.std.flatten().tolist() == [0.25] * 3


def test_vqsa_output_is_a_dataclass():
    assert {f.name for f in dataclasses.fields(VQSAOutput)} == {
        "logits", "aux_loss", "losses", "indices", "features", "quantized"
    }


def test_list_and_is_model():
    assert vqsa.list_models("cifar_*") == ["cifar_airnet", "cifar_resnet20", "cifar_resnet32", "cifar_resnet8"]
    assert "tv:resnext101_32x8d" in vqsa.list_models("tv:resnext*")
    assert "resnet50" in vqsa.list_models("resnet5*", source="timm")
    assert vqsa.is_model("tv:resnet50") and vqsa.is_model("resnet10t") and vqsa.is_model("cifar_resnet20")
    assert not vqsa.is_model("tv:vgg16") and not vqsa.is_model("resnet9000")


def test_none_kwargs_are_dropped_and_defaults_apply():
    m = vqsa.create_model("cifar_resnet8", 10, codebook_size=None, distance=None, init=None, drop_rate=None)
    cfg = m.model_config
    assert cfg["codebook_size"] == 10000 and cfg["distance"] == "cosine" and cfg["commitment_weight"] == 0.25
    assert cfg["fusion"] == "concat" and cfg["attention"] is True and "init" not in cfg


@pytest.mark.parametrize(
    "kwargs, err, match",
    [
        (dict(name="no_such_net"), ValueError, "unknown backbone"),
        (dict(name="tv:vgg16"), ValueError, "torchvision"),
        (dict(name="cifar_resnet8", fusion="add", attention=True), ValueError, "concat"),
        (dict(name="cifar_resnet8", fusion="mix"), ValueError, "fusion"),
        (dict(name="cifar_resnet8", vq=False, codebook_size=10), ValueError, "vq=False"),
        (dict(name="cifar_resnet8", vq=False, init="kmeans"), ValueError, "vq=False"),
        (dict(name="cifar_resnet8", vq=False, fusion="concat"), ValueError, "codebook"),
        (dict(name="cifar_resnet8", vq=False, attention=True), ValueError, "codebook"),
        (dict(name="cifar_resnet8", fusion="none"), ValueError, "vq=False"),
        (dict(name="cifar_resnet8", distance="dot"), ValueError, "distance"),
        (dict(name="cifar_resnet8", num_classes=-1), ValueError, "num_classes"),
        (dict(name="cifar_resnet8", cifar_stem=True), ValueError, "cifar_stem"),
        (dict(name="cifar_resnet8", pretrained=True), RuntimeError, "pretrained"),
        (dict(name="cifar_resnet8", seed=object()), TypeError, "JSON"),
    ],
)
def test_bad_options(kwargs, err, match):
    with pytest.raises(err, match=match):
        vqsa.create_model(**kwargs)


def test_bad_inputs():
    model = _build("cifar_resnet8", {}, "concat_sa")
    with pytest.raises(ValueError, match="shape"):
        model(torch.rand(2, 1, 32, 32))
    with pytest.raises(TypeError, match="float"):
        model(torch.zeros(2, 3, 32, 32, dtype=torch.uint8))
    with pytest.raises(ValueError, match="NaN"):
        model(torch.full((2, 3, 32, 32), float("nan")))
    with pytest.raises(TypeError):
        model([[0.0]])
    with pytest.warns(UserWarning, match=r"\[0, 1\]"):
        model(torch.randn(2, 3, 32, 32))


@pytest.mark.parametrize("name", ["tv:resnet18", "resnet10t"])
def test_pretrained_without_network_says_so(name, monkeypatch, tmp_path):
    def offline(*args, **kwargs):
        raise OSError("Network is unreachable")

    import timm.models._builder
    import torch.hub

    monkeypatch.setenv("TORCH_HOME", str(tmp_path))  # no cached torchvision weights
    monkeypatch.setattr(torch.hub, "urlopen", offline)  # torchvision downloads through torch.hub
    monkeypatch.setattr(timm.models._builder, "load_state_dict_from_hf", offline)
    monkeypatch.setattr(timm.models._builder, "load_state_dict_from_url", offline)
    with pytest.raises(RuntimeError, match="could not load pretrained weights.*Network is unreachable"):
        vqsa.create_model(name, vq=False, pretrained=True)


def test_timm_pretrained_cfg_keys_name_the_classifier_first_conv_and_pool_size():
    for name, pool in (("cifar_resnet20", (8, 8)), ("cifar_airnet", (3, 3)), ("tv:resnet18", (7, 7))):
        cfg = vqsa.create_model(name, num_classes=10, codebook_size=8).pretrained_cfg
        assert cfg["classifier"] == "fc" and cfg["pool_size"] == pool, name
        assert cfg["first_conv"].startswith("backbone.") and cfg["first_conv"].endswith(("conv1", "stem"))


@pytest.mark.parametrize("kwargs, match", [({"features_only": True}, "features_only"),
                                           ({"global_pool": ""}, "unpooled")])
def test_options_that_leave_no_pooled_feature_are_refused_at_creation(kwargs, match):
    with pytest.raises(ValueError, match=match):
        vqsa.create_model("resnet18", num_classes=10, **kwargs)


def test_one_channel_input_gets_grey_statistics_and_runs():
    model = vqsa.create_model("cifar_resnet8", num_classes=4, codebook_size=8, in_chans=1)
    assert model(torch.rand(2, 1, 32, 32)).shape == (2, 4)
    assert model.pretrained_cfg["mean"] == (0.0,) and model.pretrained_cfg["input_size"] == (1, 32, 32)
    assert len(model.model_config["mean"]) == 1
    with pytest.raises(ValueError, match="in_chans=1 needs mean and std"):
        vqsa.create_model("cifar_resnet8", num_classes=4, in_chans=1, mean=(0.5, 0.5, 0.5), std=(0.2, 0.2, 0.2))


@pytest.mark.parametrize("name, size", [("cifar_resnet8", 32), ("cifar_airnet", 32), ("resnet18", 64)])
def test_forward_intermediates_follows_timm(name, size):
    model = vqsa.create_model(name, num_classes=5, codebook_size=8).eval()
    x = torch.rand(2, 3, size, size)
    final, maps = model.forward_intermediates(x)
    assert all(m.ndim == 4 and m.shape[0] == 2 for m in maps) and len(maps) >= 3
    torch.testing.assert_close(model.forward_head(final), model(x))
    last = model.forward_intermediates(x, indices=1, intermediates_only=True)
    assert len(last) == 1 and last[0].shape == maps[-1].shape


def test_forward_intermediates_of_torchvision_backbones_is_refused_clearly():
    model = vqsa.create_model("tv:resnet18", num_classes=5, codebook_size=8)
    with pytest.raises(NotImplementedError, match="create_feature_extractor"):
        model.forward_intermediates(torch.rand(1, 3, 64, 64))
