"""What timm users expect of any image classifier, checked over vqsa's own, torchvision and timm backbones, with and
without a codebook: shapes that agree with ``pretrained_cfg``, the classifier and first conv it names, pre-logits,
``reset_classifier``, gradients to every trainable parameter, timm's data config, and torch.fx feature extraction."""
import pytest
import torch
import torch.nn.functional as F
from torchvision.models.feature_extraction import create_feature_extractor, get_graph_node_names

import vqsa
from vqsa.models import VQSAClassifier

BACKBONES = ["cifar_resnet8", "cifar_airnet", "tv:resnet18", "test_resnet"]  # vqsa, vqsa, torchvision, timm
HEADS = {"finetune": {"vq": False}, "add": {"fusion": "add", "codebook_size": 8},
         "concat_sa": {"codebook_size": 8}}
CASES = [(name, head) for name in BACKBONES for head in HEADS]


def _model(name: str, head: str) -> VQSAClassifier:
    torch.manual_seed(0)
    return vqsa.create_model(name, num_classes=7, **HEADS[head]).eval()


def _input(model: VQSAClassifier, batch: int = 2) -> torch.Tensor:
    return torch.rand(batch, *model.pretrained_cfg["input_size"], generator=torch.Generator().manual_seed(1))


@pytest.mark.parametrize("name, head", CASES)
def test_shapes_agree_with_the_pretrained_cfg(name, head):
    model = _model(name, head)
    cfg = model.pretrained_cfg
    x = _input(model)
    feats = model.forward_features(x)
    assert feats.shape == (2, model.num_features, *cfg["pool_size"])
    pre = model.forward_head(feats, pre_logits=True)
    assert pre.shape == (2, model.head_hidden_size)
    logits = model(x)
    assert logits.shape == (2, cfg["num_classes"]) == (2, 7)
    torch.testing.assert_close(model.get_classifier()(pre), logits)
    modules = dict(model.named_modules())
    assert modules[cfg["classifier"]] is model.get_classifier()
    first = modules[cfg["first_conv"]]
    assert isinstance(first, torch.nn.Conv2d) and first.in_channels == cfg["input_size"][0]


@pytest.mark.parametrize("name, head", CASES)
def test_reset_classifier_keeps_the_features(name, head):
    model = _model(name, head)
    x = _input(model)
    pre = model.forward_head(model.forward_features(x), pre_logits=True)
    model.reset_classifier(0)
    torch.testing.assert_close(model(x), pre)
    model.reset_classifier(3)
    assert model(x).shape == (2, 3) and model.pretrained_cfg["num_classes"] == 3


@pytest.mark.parametrize("name, head", CASES)
def test_a_loss_on_the_logits_reaches_every_trainable_parameter(name, head):
    model = _model(name, head).train()
    F.cross_entropy(model(_input(model, 4)), torch.arange(4)).backward()
    missing = [n for n, p in model.named_parameters() if p.requires_grad and p.grad is None]
    assert not missing


@pytest.mark.parametrize("name", BACKBONES)
def test_timm_resolves_the_data_config(name):
    timm_data = pytest.importorskip("timm.data")
    model = _model(name, "concat_sa")
    cfg = timm_data.resolve_data_config({}, model=model)
    assert cfg["input_size"] == model.pretrained_cfg["input_size"]
    assert cfg["mean"] == (0.0, 0.0, 0.0) and cfg["std"] == (1.0, 1.0, 1.0)  # the model normalises inside


@pytest.mark.parametrize("name, head", CASES)
def test_torchvision_feature_extraction_traces_the_model(name, head):
    """create_feature_extractor (torch.fx) returns the logits and an inner node; the quantizer is one node whose
    usage statistics still count when the traced graph runs."""
    model = _model(name, head)
    x = _input(model)
    inner = "fc_fuse" if head != "finetune" else "flatten"
    extractor = create_feature_extractor(model, return_nodes={"fc": "logits", inner: "pre"})
    out = extractor(x)
    torch.testing.assert_close(out["logits"], model(x))
    assert out["pre"].shape[0] == 2
    nodes = get_graph_node_names(model)[1]
    assert ("vq" in nodes) == (head != "finetune")
    if head != "finetune":
        before = int(extractor.vq.usage_counts.sum())
        extractor(x)
        assert int(extractor.vq.usage_counts.sum()) == before + 2


def test_traced_graphs_keep_the_input_checks_out_and_the_model_checks_in():
    """Tracing records no input check (there are no values yet); the model itself still checks its input."""
    model = _model("cifar_resnet8", "concat_sa")
    graph = torch.fx.symbolic_trace(model)
    torch.testing.assert_close(graph(_input(model)), model(_input(model)))
    with pytest.raises(ValueError, match="NaN"):
        model(torch.full((1, 3, 32, 32), float("nan")))
