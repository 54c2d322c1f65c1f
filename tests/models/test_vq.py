"""VectorQuantizer: contract, losses, gradients, chunked fp32 distances, usage statistics, inits and restarts."""
import pytest
import torch
import torch.nn.functional as F

from vqsa.layers import VectorQuantizer, usage_from_counts


@pytest.mark.parametrize(
    "shape, idx_shape", [((6, 8), (6,)), ((2, 5, 8), (2, 5)), ((2, 8, 3, 4), (2, 3, 4))]
)
@pytest.mark.parametrize("distance", ["cosine", "l2"])
def test_shapes_and_codes(shape, idx_shape, distance):
    vq = VectorQuantizer(8, 16, distance=distance, init="normal")
    z = torch.randn(shape)
    q, idx, loss = vq(z)
    assert q.shape == z.shape and idx.shape == idx_shape and loss.ndim == 0 and loss > 0
    codes = vq.get_codes_from_indices(idx)  # (*idx_shape, D)
    expect = codes.permute(0, 3, 1, 2) if z.ndim == 4 else codes
    torch.testing.assert_close(q, expect)


def test_nearest_matches_definition():
    torch.manual_seed(0)
    z, vq = torch.randn(50, 8), VectorQuantizer(8, 32, distance="l2", init="normal")
    assert torch.equal(vq(z)[1], torch.cdist(z, vq.codebook).argmin(1))
    cos = VectorQuantizer(8, 32, distance="cosine", init="normal")
    sim = F.normalize(z, dim=1) @ F.normalize(cos.codebook, dim=1).T
    q, idx, _ = cos(z)
    assert torch.equal(idx, sim.argmax(1))
    torch.testing.assert_close(q, cos.codebook[idx].detach())  # the un-normalised code is returned (as the authors)


def test_losses_and_gradients():
    vq = VectorQuantizer(8, 16, commitment_weight=0.25, init="normal")
    z = torch.randn(10, 8, requires_grad=True)
    q, idx, loss, parts = vq(z, return_loss_breakdown=True)
    codes = vq.codebook[idx].detach()
    torch.testing.assert_close(parts.codebook, F.mse_loss(codes, z.detach()))
    torch.testing.assert_close(parts.commitment, F.mse_loss(z.detach(), codes))
    torch.testing.assert_close(loss, parts.codebook + 0.25 * parts.commitment)
    # straight-through: d(sum q)/dz = 1, and the task loss never reaches the codebook
    q.sum().backward(retain_graph=True)
    assert torch.equal(z.grad, torch.ones_like(z)) and vq.codebook.grad is None
    # the codebook gradient comes from the VQ term alone; the commitment term only moves z
    g_total = torch.autograd.grad(loss, vq.codebook, retain_graph=True)[0]
    g_vq = torch.autograd.grad(parts.codebook, vq.codebook, retain_graph=True)[0]
    torch.testing.assert_close(g_total, g_vq)
    assert torch.autograd.grad(parts.commitment, vq.codebook, allow_unused=True)[0] is None


def test_eval_same_arity_zero_loss_deterministic():
    vq = VectorQuantizer(8, 16).eval()
    z = torch.randn(4, 8)
    out1, out2 = vq(z), vq(z)
    assert len(out1) == 3 and float(out1[2]) == 0.0
    assert torch.equal(out1[0], out2[0]) and torch.equal(out1[1], out2[1])
    assert len(vq(z, return_loss_breakdown=True)) == 4


def test_chunked_equals_unchunked_and_fp32_under_autocast():
    torch.manual_seed(0)
    z = torch.randn(3, 70, 16)
    for distance in ("cosine", "l2"):
        big = VectorQuantizer(16, 300, distance=distance, init="normal")
        small = VectorQuantizer(16, 300, distance=distance, init="normal", chunk_budget=300 * 7)  # 7 rows a block
        small.load_state_dict(big.state_dict())
        assert torch.equal(big(z)[1], small(z)[1])
        with torch.autocast("cpu", dtype=torch.bfloat16):
            q, idx, loss = small(z.bfloat16())
        assert torch.equal(idx, big(z)[1])  # chosen in fp32, not bf16
        assert q.dtype == torch.bfloat16 and loss.dtype == torch.float32


def test_usage_on_known_stream():
    vq = VectorQuantizer(4, 4, distance="l2")
    with torch.no_grad():
        vq.codebook.copy_(torch.eye(4) * 10)
    stream = torch.tensor([0, 0, 1, 1, 0, 0, 1, 1])  # codes 0 and 1 equally, 2 and 3 never
    vq(vq.codebook[stream] + 0.1)
    vq.eval()
    vq(vq.codebook[stream[:4]])  # counted in eval too
    u = vq.usage()
    assert u.counts.tolist() == [6, 6, 0, 0] and u.total == 12
    assert u.perplexity == pytest.approx(2.0) and u.fraction_used == 0.5 and u.codes_used == 2
    vq.reset_usage()
    assert vq.usage().total == 0 and vq.usage().perplexity == 0.0
    assert usage_from_counts(torch.ones(8, dtype=torch.long)).perplexity == pytest.approx(8.0)
    assert "usage_counts" not in vq.state_dict()


def test_dead_code_restart_then_used():
    torch.manual_seed(0)
    vq = VectorQuantizer(8, 32, init="uniform", dead_code_threshold=1, dead_code_interval=2, seed=3)
    with torch.no_grad():
        vq.codebook[4:] = -1.0  # 28 codes point away from the (non-negative) features: never chosen
    z = torch.randn(64, 8).abs()
    for _ in range(2):
        vq(z)
    before = vq.usage().codes_used
    assert before <= 4
    vq.reset_usage()
    vq(z)  # step 2: the dead codes are replaced by batch features, then used
    after = vq.usage().codes_used
    assert after > 3 * before
    assert int(vq.window_counts.sum()) == 64  # the window restarted


def _clustered(n_clusters=16, per=32, dim=8, seed=0):
    g = torch.Generator().manual_seed(seed)
    centres = torch.randn(n_clusters, dim, generator=g) * 5
    return (centres.repeat_interleave(per, 0) + 0.1 * torch.randn(n_clusters * per, dim, generator=g))


def test_kmeans_init_beats_uniform_and_is_not_rerun():
    x = _clustered()
    uniform = VectorQuantizer(8, 16, distance="l2", init="uniform")
    kmeans = VectorQuantizer(8, 16, distance="l2", init="kmeans", seed=0)
    assert not bool(kmeans.initted)
    kmeans(x)
    assert bool(kmeans.initted)
    err_k, err_u = kmeans.quantization_error(x), uniform.quantization_error(x)
    assert err_k < 0.05 * err_u
    again = VectorQuantizer(8, 16, distance="l2", init="kmeans", seed=0)
    again(x)
    assert torch.equal(again.codebook, kmeans.codebook)  # deterministic with a seed
    loaded = VectorQuantizer(8, 16, distance="l2", init="kmeans", seed=1)
    loaded.load_state_dict(kmeans.state_dict())
    loaded(torch.randn(20, 8))
    assert torch.equal(loaded.codebook, kmeans.codebook)  # initted came with the state dict: no re-init


def test_kmeans_with_fewer_rows_than_codes_gives_distinct_codes():
    vq = VectorQuantizer(8, 64, init="kmeans")
    vq(torch.randn(10, 8))
    assert torch.unique(vq.codebook.detach(), dim=0).shape[0] == 64


@pytest.mark.parametrize(
    "kwargs, err",
    [
        (dict(dim=0, codebook_size=4), ValueError),
        (dict(dim=4, codebook_size=4, distance="dot"), ValueError),
        (dict(dim=4, codebook_size=4, init="zeros"), ValueError),
        (dict(dim=4, codebook_size=4, commitment_weight=-1), ValueError),
        (dict(dim=4, codebook_size=4, init_range=(3, 0)), ValueError),
    ],
)
def test_bad_options(kwargs, err):
    with pytest.raises(err):
        VectorQuantizer(**kwargs)


def test_bad_inputs():
    vq = VectorQuantizer(4, 8)
    with pytest.raises(ValueError, match="dimension"):
        vq(torch.randn(2, 5))
    with pytest.raises(TypeError, match="floating"):
        vq(torch.ones(2, 4, dtype=torch.long))
    with pytest.raises(ValueError, match="shape"):
        vq(torch.randn(4))
    with pytest.raises(ValueError, match=r"\[0, 8\)"):
        vq.get_codes_from_indices(torch.tensor([8]))


def test_usage_repr_is_one_short_line():
    from vqsa.layers.vq import usage_from_counts

    text = repr(usage_from_counts(torch.tensor([3, 0, 1] + [0] * 997)))
    assert text == "CodebookUsage(codes_used=2/1000, fraction_used=0.002, perplexity=1.75, total=4)"
