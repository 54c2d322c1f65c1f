"""Two gloo processes: k-means init and dead-code restarts leave identical codebooks on every rank; usage sums."""

import gc

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

pytestmark = pytest.mark.ddp


def _worker(rank: int, world: int, init_file: str) -> None:
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world)
    torch.set_num_threads(1)
    try:
        import vqsa
        from vqsa.layers import VectorQuantizer

        def same_on_all_ranks(t: torch.Tensor) -> bool:
            ref = t.detach().clone()
            dist.broadcast(ref, 0)
            ok = torch.tensor(int(torch.equal(ref, t.detach())))
            dist.all_reduce(ok, op=dist.ReduceOp.MIN)
            return bool(ok)

        # Rank-dependent data and generator seeds: without the broadcasts the codebooks would diverge.
        g = torch.Generator().manual_seed(100 + rank)
        vq = VectorQuantizer(8, 24, init="kmeans", dead_code_threshold=2, dead_code_interval=2, seed=rank)
        vq(torch.randn(16, 8, generator=g))
        assert same_on_all_ranks(vq.codebook), "k-means init differs between ranks"
        before = vq.codebook.detach().clone()
        for _ in range(3):
            vq(torch.randn(16, 8, generator=g) + 3 * rank)
        assert not torch.equal(before, vq.codebook), "no code was restarted"
        assert same_on_all_ranks(vq.codebook), "dead-code restart differs between ranks"
        vq.reset_usage()
        vq(torch.randn(5 + rank, 8, generator=g))  # uneven shards
        assert vq.usage().total == 5 + 6

        # A DDP-wrapped model: buffer broadcasting must not clobber the per-rank usage counters.
        torch.manual_seed(0)
        model = vqsa.create_model("cifar_resnet8", 4, codebook_size=8, dead_code_threshold=1, dead_code_interval=1)
        ddp = torch.nn.parallel.DistributedDataParallel(model)
        opt = torch.optim.SGD(ddp.parameters(), lr=0.1)
        model.vq.reset_usage()
        for _ in range(2):
            out = ddp(torch.rand(3 + rank, 3, 16, 16, generator=g), return_aux=True)
            (out.logits.sum() + out.aux_loss).backward()
            opt.step(), opt.zero_grad()
        assert model.vq.usage().total == 2 * (3 + 4)
        assert same_on_all_ranks(model.vq.codebook)
        # Free everything that holds DDP's reducer (the wrapper, and the model whose parameters carry its hooks)
        # before the process group goes away: a reducer destroyed later aborts the process at exit.
        del ddp, opt, out, model
        gc.collect()
        dist.barrier()
    finally:
        dist.destroy_process_group()


def test_two_ranks_stay_consistent(tmp_path):
    mp.spawn(_worker, args=(2, str(tmp_path / "init")), nprocs=2, join=True)
