import json

import numpy as np
import pytest
import torch
from torch import nn

from vqsa.analysis.gradcam import GradCAM, analyze_gradcam, map_similarity, overlay


class SpotModel(nn.Module):
    """Class 0 = "something bright", class 1 = "something dark", read off a stride-4 map of local brightness."""

    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Sequential(nn.Conv2d(3, 2, 4, stride=4), nn.ReLU())
        self.fc = nn.Linear(2, 2, bias=False)
        with torch.no_grad():
            self.features[0].weight.copy_(torch.stack([torch.full((3, 4, 4), 1 / 48), torch.full((3, 4, 4), -1 / 48)]))
            self.features[0].bias.copy_(torch.tensor([0.0, 1.0]))
            self.fc.weight.copy_(torch.eye(2))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.features(x).mean((2, 3)))


def _spot_image() -> torch.Tensor:
    x = torch.zeros(1, 3, 32, 32)
    x[:, :, 8:20, 16:28] = 1.0  # 3 x 3 cells of the stride-4 map
    return x


def test_gradcam_highlights_the_informative_region():
    model, x = SpotModel(), _spot_image()
    inside = np.zeros((32, 32), bool)
    inside[8:20, 16:28] = True
    far = np.ones((32, 32), bool)
    far[4:24, 12:32] = False  # the patch and a 4-px margin around it (bilinear upsampling blurs the edge)
    with GradCAM(model, [model.features]) as cam:
        bright = cam(x, targets=[0])[0]
        dark = cam(x, targets=[1])[0]
    assert bright.shape == (32, 32)
    assert inside.ravel()[bright.argmax()] and bright[inside].mean() > 0.8 and bright[far].max() < 0.05
    assert dark[inside].min() < 0.05 and dark[far].min() > 0.95  # the other class looks everywhere else


def test_gradcam_on_a_vqsa_model(tiny_vqsa, tiny_images):
    x = torch.from_numpy(tiny_images[0][:5]).permute(0, 3, 1, 2).float() / 255
    layer = tiny_vqsa.cam_target_layers()[0]
    tiny_vqsa.train()
    with torch.no_grad(), GradCAM(tiny_vqsa) as cam:  # works inside no_grad; default layer from the model
        maps = cam(x)
        assert len(layer._forward_hooks) == 1
        assert torch.equal(cam.logits.argmax(1), tiny_vqsa.eval()(x).argmax(1))
        tiny_vqsa.train()
    assert maps.shape == (5, 32, 32) and maps.dtype == np.float32
    assert maps.min() >= 0 and maps.max() <= 1 and np.allclose(maps.reshape(5, -1).max(1), 1)
    assert len(layer._forward_hooks) == 0  # released on exit
    assert tiny_vqsa.training  # mode restored
    assert all(p.grad is None for p in tiny_vqsa.parameters())  # no gradient accumulated
    tiny_vqsa.eval()


def test_release_and_reuse():
    model = SpotModel()
    cam = GradCAM(model, [model.features])
    cam.release()
    cam.release()
    assert len(model.features._forward_hooks) == 0
    with pytest.raises(RuntimeError, match="released"):
        cam(_spot_image())


def test_hooks_are_released_when_the_call_fails():
    model = SpotModel()
    with pytest.raises(ValueError, match="one class per image"):
        with GradCAM(model, [model.features]) as cam:
            cam(_spot_image(), targets=[0, 1])
    assert len(model.features._forward_hooks) == 0


def test_bad_models_and_targets():
    class TupleModel(SpotModel):
        def forward(self, x):
            return super().forward(x), x

    model = TupleModel()
    with GradCAM(model, [model.features]) as cam, pytest.raises(TypeError, match="logits"):
        cam(_spot_image())
    with pytest.raises(ValueError, match="cam_target_layers"):
        GradCAM(nn.Linear(2, 2))
    with GradCAM(SpotModel(), [SpotModel().features]) as cam, pytest.raises(RuntimeError, match="not reached"):
        cam(_spot_image())  # a layer of another model
    model = SpotModel()
    with GradCAM(model, [model.features]) as cam, pytest.raises(ValueError, match="class indices"):
        cam(_spot_image(), targets=[5])


def test_overlay_and_similarity():
    img = np.full((4, 4, 3), 100, np.uint8)
    out = overlay(img, np.zeros((4, 4)), alpha=0.0)
    assert out.dtype == np.uint8 and np.array_equal(out, img)
    with pytest.raises(ValueError, match="differ in size"):
        overlay(img, np.zeros((3, 4)))
    a = np.random.default_rng(0).random((2, 4, 4))
    sim = map_similarity(a, np.stack([a[0], np.ones((4, 4))]))
    assert sim[0] == pytest.approx(1.0) and np.isnan(sim[1])


def test_analyze_gradcam_two_models(tiny_vqsa, tiny_images, tmp_path):
    import vqsa

    images, labels = tiny_images
    other = vqsa.create_model("cifar_resnet8", 10, vq=False)
    res = analyze_gradcam({"vqsa": tiny_vqsa, "finetune": other}, images, labels, indices=[0, 6, 12],
                          class_names=list("abcd"), out_dir=tmp_path)
    assert (tmp_path / "gradcam.png").stat().st_size > 0
    saved = json.loads((tmp_path / "gradcam.json").read_text())
    assert saved == res
    assert set(res["models"]) == {"vqsa", "finetune"} and res["labels"] == [0, 1, 2]
    for m in res["models"].values():
        assert len(m["map_correlation"]) == 3 and len(m["pred_corrupted"]) == 3
    assert len(tiny_vqsa.cam_target_layers()[0]._forward_hooks) == 0
