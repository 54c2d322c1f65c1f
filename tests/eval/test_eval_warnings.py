"""Silent nonsense gets a warning: non-finite logits in evaluation, a resize smaller than the crop."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from vqsa.data.cifar import ArrayDataset


def test_nan_weights_are_scored_with_a_warning():
    import vqsa

    model = vqsa.create_model("cifar_resnet8", num_classes=4, vq=False)
    with torch.no_grad():
        model.fc.weight.fill_(float("nan"))
    rng = np.random.default_rng(0)
    data = ArrayDataset(rng.integers(0, 256, (8, 32, 32, 3), dtype=np.uint8), rng.integers(0, 4, 8), ("a", "b", "c", "d"),
                        "random")
    with pytest.warns(UserWarning, match="NaN or Inf logits"):
        vqsa.evaluate(model, data, corruptions=["contrast"], severities=[1], num_workers=0, progress=False)


def test_a_resize_smaller_than_the_crop_warns(tmp_path):
    from PIL import Image

    from vqsa.cli.main import main

    src = tmp_path / "src" / "a"
    src.mkdir(parents=True)
    Image.fromarray(np.zeros((40, 40, 3), np.uint8)).save(src / "x.png")
    with pytest.warns(UserWarning, match="--resize 40 is smaller than --center-crop 64"):
        main(["corrupt", str(tmp_path / "src"), str(tmp_path / "out"), "--resize", "40", "--center-crop", "64",
              "--corruptions", "contrast", "--severities", "1", "--quiet"])
