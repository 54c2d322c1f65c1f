"""Two gloo processes: feature-gathered inits, EMA updates and buffer restarts leave bit-identical codebooks."""
import contextlib
import gc

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

import vqsa.utils.distributed as vdist

pytestmark = pytest.mark.ddp


def _same_on_all_ranks(t: torch.Tensor) -> bool:
    ref = t.detach().clone()
    dist.broadcast(ref, 0)
    ok = torch.tensor(int(torch.equal(ref, t.detach())))
    dist.all_reduce(ok, op=dist.ReduceOp.MIN)
    return bool(ok)


@contextlib.contextmanager
def _single_process():
    """Run vqsa code as one process would (its collectives become no-ops): the reference to compare ranks with."""
    real = vdist.is_distributed
    vdist.is_distributed = lambda: False
    try:
        yield
    finally:
        vdist.is_distributed = real


def _worker(rank: int, world: int, init_file: str) -> None:
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world)
    torch.set_num_threads(1)
    try:
        import vqsa
        from vqsa.layers import VectorQuantizer
        from vqsa.models.presets import init_codebook_from_data

        g = torch.Generator().manual_seed(0)
        data = torch.randn(40, 8, generator=g) * 3
        shard = data[:10] if rank == 0 else data[10:]  # uneven shards; rank-dependent seeds below

        # explicit init: gathered from both ranks, identical everywhere and equal to one process on all the data
        for method in ("kmeans", "features"):
            vq = VectorQuantizer(8, 12, init=method, seed=7 if rank == 0 else 99)
            vq.init_from_features(shard)
            single = VectorQuantizer(8, 12, init=method, seed=7)
            with _single_process():
                single.init_from_features(data)
            assert _same_on_all_ranks(vq.codebook), f"{method} init differs between ranks"
            assert torch.equal(vq.codebook, single.codebook), f"{method} init did not use every rank's features"

        # lazy init on the first batch also gathers both ranks' features
        lazy = VectorQuantizer(8, 12, init="kmeans", seed=rank)
        lazy(shard)
        assert _same_on_all_ranks(lazy.codebook)

        # EMA: statistics all-reduced -> identical codebooks and stats, equal (up to summation order) to one process
        ema = VectorQuantizer(8, 6, distance="l2", init="kmeans", codebook_update="ema", decay=0.9, seed=rank)
        ref = VectorQuantizer(8, 6, distance="l2", init="kmeans", codebook_update="ema", decay=0.9)
        ema.init_from_features(shard)
        ref.load_state_dict(ema.state_dict())
        gen = torch.Generator().manual_seed(1)
        for _ in range(4):
            batch = torch.randn(24, 8, generator=gen) * 3
            ema(batch[:8] if rank == 0 else batch[8:])
        for name in ("codebook", "ema_cluster_size", "ema_embed_sum"):
            assert _same_on_all_ranks(getattr(ema, name)), f"EMA {name} differs between ranks"
        gen = torch.Generator().manual_seed(1)
        with _single_process():
            for _ in range(4):
                ref(torch.randn(24, 8, generator=gen) * 3)
        torch.testing.assert_close(ema.codebook, ref.codebook, rtol=1e-5, atol=1e-5)

        # restarts from each rank's feature buffer (rank 0 draws), with EMA stats reset: identical everywhere
        torch.manual_seed(0)  # the same uniform init on both ranks (DDP's broadcast at wrap time does this in training)
        rs = VectorQuantizer(8, 32, init="uniform", codebook_update="ema", dead_code_threshold=2, dead_code_interval=2,
                             dead_code_buffer=16, seed=rank)
        gen = torch.Generator().manual_seed(100 + rank)
        for _ in range(4):
            rs(torch.randn(6 + rank, 8, generator=gen) + 3 * rank)
        assert int(rs.restarted_codes) > 0
        for name in ("codebook", "ema_cluster_size", "ema_embed_sum", "restarted_codes"):
            assert _same_on_all_ranks(getattr(rs, name)), f"restart left {name} different between ranks"

        # a model and a data pass per rank (each its own images): one codebook everywhere; then DDP training
        torch.manual_seed(0)
        model = vqsa.create_model("cifar_resnet8", 4, codebook_size=8, codebook_preset="healthy_ema")
        imgs = torch.rand(10, 3, 16, 16, generator=torch.Generator().manual_seed(rank))
        assert init_codebook_from_data(model, [imgs[:4], imgs[4:]], max_features=12) == 12
        assert _same_on_all_ranks(model.vq.codebook)
        ddp = torch.nn.parallel.DistributedDataParallel(model)
        opt = torch.optim.SGD(ddp.parameters(), lr=0.1)
        for _ in range(2):
            out = ddp(imgs[:3 + rank], return_aux=True)
            (out.logits.sum() + out.aux_loss).backward()
            opt.step(), opt.zero_grad()
        assert _same_on_all_ranks(model.vq.codebook) and _same_on_all_ranks(model.vq.ema_embed_sum)
        # Free everything that holds DDP's reducer (the wrapper, and the model whose parameters carry its hooks)
        # before the process group goes away: a reducer destroyed later aborts the process at exit.
        del ddp, opt, out, model
        gc.collect()
        dist.barrier()
    finally:
        dist.destroy_process_group()


def test_two_ranks_identical_codebooks(tmp_path):
    mp.spawn(_worker, args=(2, str(tmp_path / "init")), nprocs=2, join=True)
