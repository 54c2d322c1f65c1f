"""A loss on ``model(x)`` alone trains the codebook: the logits carry L_vq + beta L_cmt in their backward pass."""
from __future__ import annotations

import copy
import gc

import pytest
import torch
import torch.nn.functional as F

import vqsa
from vqsa.layers import attach_aux_loss


def _pair(fusion: str, **kwargs):
    torch.manual_seed(0)
    model = vqsa.create_model("cifar_resnet8", num_classes=5, codebook_size=16, fusion=fusion, **kwargs).train()
    return model, copy.deepcopy(model)


@pytest.mark.parametrize("fusion", ["replace", "add", "concat"])
def test_logits_only_loss_gives_the_gradients_of_the_documented_aux_path(fusion):
    plain, documented = _pair(fusion)
    x, y = torch.rand(6, 3, 16, 16, generator=torch.Generator().manual_seed(1)), torch.arange(6) % 5
    F.cross_entropy(plain(x), y).backward()
    out = documented(x, return_aux=True)
    (F.cross_entropy(out.logits, y) + out.aux_loss).backward()
    for (name, a), b in zip(plain.named_parameters(), documented.parameters()):
        assert (a.grad is None) == (b.grad is None), name
        if a.grad is not None:
            torch.testing.assert_close(a.grad, b.grad, msg=name)
    assert plain.vq.codebook.grad is not None and plain.vq.codebook.grad.abs().sum() > 0


def test_return_aux_logits_carry_nothing_so_aux_is_not_counted_twice():
    model, _ = _pair("concat")
    out = model(torch.rand(4, 3, 16, 16), return_aux=True)
    out.logits.sum().backward()
    assert model.vq.codebook.grad is None  # only the explicit aux_loss reaches the codebook


def test_eval_and_no_grad_outputs_are_plain_tensors():
    model, _ = _pair("concat")
    x = torch.rand(2, 3, 16, 16)
    with torch.no_grad():
        assert model(x).grad_fn is None
    model.eval()
    assert model(x).grad_fn is None or "AttachAuxLoss" not in type(model(x).grad_fn).__name__


def test_ema_codebook_preset_still_trains_through_the_logits():
    model, _ = _pair("concat", codebook_preset="healthy_ema")
    model.vq.init_from_features(torch.randn(64, model.vq.dim))
    before = model.vq.codebook.detach().clone()
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    for _ in range(3):
        F.cross_entropy(model(torch.rand(8, 3, 16, 16)), torch.arange(8) % 5).backward()
        opt.step()
        opt.zero_grad()
    assert not torch.equal(before, model.vq.codebook)  # the EMA moved the codes


def test_attach_aux_loss_checks_its_input():
    x = torch.rand(3, requires_grad=True)
    assert attach_aux_loss(x, torch.zeros(())) is x
    with pytest.raises(ValueError, match="0-dim"):
        attach_aux_loss(x, torch.rand(2, requires_grad=True))


def _ddp_worker(rank: int, world: int, init_file: str) -> None:
    import torch.distributed as dist

    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world)
    torch.set_num_threads(1)
    try:
        torch.manual_seed(0)
        model = vqsa.create_model("cifar_resnet8", 4, codebook_size=8)
        before = model.vq.codebook.detach().clone()
        ddp = torch.nn.parallel.DistributedDataParallel(model, find_unused_parameters=False)
        opt = torch.optim.SGD(ddp.parameters(), lr=0.1)
        g = torch.Generator().manual_seed(10 + rank)
        for _ in range(3):
            F.cross_entropy(ddp(torch.rand(4, 3, 16, 16, generator=g)), torch.arange(4)).backward()
            opt.step()
            opt.zero_grad()
        ref = model.vq.codebook.detach().clone()
        dist.broadcast(ref, 0)
        assert torch.equal(ref, model.vq.codebook.detach()), "codebooks differ between ranks"
        assert not torch.equal(before, model.vq.codebook.detach()), "the codebook did not train"
        del ddp, opt, model
        gc.collect()
        dist.barrier()
    finally:
        dist.destroy_process_group()


@pytest.mark.ddp
def test_ddp_without_unused_parameters_trains_the_codebook_from_a_logits_only_loss(tmp_path):
    import torch.multiprocessing as mp

    mp.spawn(_ddp_worker, args=(2, str(tmp_path / "init")), nprocs=2, join=True)
