"""torch.compile(fullgraph=True) and torch.export work with the default input checks (no host sync in forward)."""
from __future__ import annotations

import torch
import torch.nn.functional as F

import vqsa


def _model():
    torch.manual_seed(0)
    return vqsa.create_model("cifar_resnet8", num_classes=4, codebook_size=8)


def test_export_with_default_input_checks_matches_eager():
    model = _model().eval()
    assert model.check_inputs
    x = torch.rand(2, 3, 16, 16)
    exported = torch.export.export(model, (x,))
    torch.testing.assert_close(exported.module()(x), model(x))


def test_compile_fullgraph_eval_and_a_training_loop_that_trains_the_codebook():
    model = _model()
    x, y = torch.rand(4, 3, 16, 16), torch.arange(4)
    model.train()
    compiled = torch.compile(model, fullgraph=True, backend="aot_eager")
    before = model.vq.codebook.detach().clone()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    for _ in range(2):
        F.cross_entropy(compiled(x), y).backward()
        opt.step()
        opt.zero_grad()
    assert not torch.equal(before, model.vq.codebook.detach())
    model.eval()
    torch.testing.assert_close(torch.compile(model, fullgraph=True, backend="aot_eager")(x), model(x))
