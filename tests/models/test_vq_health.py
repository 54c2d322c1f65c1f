"""Codebook health: data-driven inits, restarts from a feature buffer, EMA updates, usage monitor, presets."""
import json
import warnings

import pytest
import torch
import torch.nn.functional as F

import vqsa
from vqsa.layers import VectorQuantizer
from vqsa.models.presets import CODEBOOK_PRESETS, codebook_preset, init_codebook_from_data
from vqsa.train.monitor import CodebookCollapseWarning, UsageThresholds, check_usage, usage_problem, usage_summary


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _clustered(n_clusters=16, per=32, dim=8, seed=0, offset=0.0):
    g = torch.Generator().manual_seed(seed)
    centres = torch.randn(n_clusters, dim, generator=g) * 5 + offset
    return centres.repeat_interleave(per, 0) + 0.1 * torch.randn(n_clusters * per, dim, generator=g)


# ------------------------------------------------------------------------------------------------------ inits
@pytest.mark.parametrize("distance", ["l2", "cosine"])
@pytest.mark.parametrize("method, iters, factor", [("kmeans", 10, 0.05), ("kmeans", 0, 0.3), ("features", 10, 0.7)])
def test_data_inits_beat_uniform_on_clusters(distance, method, iters, factor):
    x = _clustered()
    uniform = VectorQuantizer(8, 16, distance=distance, init="uniform")
    vq = VectorQuantizer(8, 16, distance=distance, init=method, kmeans_iters=iters, seed=0)
    assert vq.needs_data_init and not uniform.needs_data_init
    vq.init_from_features(x)
    assert not vq.needs_data_init
    assert vq.quantization_error(x) < factor * uniform.quantization_error(x)
    if method == "features":  # codes are observed rows
        assert all((x == c).all(1).any() for c in vq.codebook.detach())


def test_kmeanspp_seeding_alone_covers_every_cluster():
    x = _clustered(n_clusters=8, per=64)
    vq = VectorQuantizer(8, 8, distance="l2", init="kmeans", kmeans_iters=0, seed=1)
    vq.init_from_features(x)
    labels = torch.arange(8).repeat_interleave(64)
    hit = {int(labels[(x == c).all(1)][0]) for c in vq.codebook.detach()}  # seeds are rows: their clusters
    assert hit == set(range(8))  # D^2 sampling puts one seed in each far-apart cluster


def test_explicit_init_is_deterministic_and_kept_by_training():
    x = _clustered()
    a, b = VectorQuantizer(8, 16, init="kmeans", seed=5), VectorQuantizer(8, 16, init="kmeans", seed=5)
    a.init_from_features(x)
    b.init_from_features(x.view(16, 32, 8))  # any shape forward accepts
    assert torch.equal(a.codebook, b.codebook)
    before = a.codebook.detach().clone()
    a.train()(torch.randn(4, 8))  # already initted: the first batch does not re-init
    assert torch.equal(a.codebook, before)
    with pytest.raises(ValueError, match="method"):
        a.init_from_features(x, method="uniform")
    with pytest.raises(ValueError, match="no features"):
        a.init_from_features(torch.zeros(0, 8))


# --------------------------------------------------------------------------------------------------- restarts
def test_dead_code_restarted_from_buffer_then_used():
    vq = VectorQuantizer(4, 4, distance="l2", init="uniform", dead_code_threshold=1, dead_code_interval=3,
                         dead_code_buffer=5, seed=0)
    with torch.no_grad():
        vq.codebook.copy_(torch.tensor([[0.0, 0, 0, 0], [100, 100, 100, 100], [-100, 0, 0, 0], [0, -100, 0, 0]]))
    near0 = torch.zeros(2, 4) + 0.01
    far = torch.tensor([[10.0, 0, 0, 0], [0, 10.0, 0, 0]])  # nearest to code 0 as well: codes 1-3 stay dead
    vq(near0), vq(far), vq(near0)
    # ring buffer: the last 5 rows of the 6 seen, in arrival order modulo its size
    assert int(vq.restart_filled) == 5 and int(vq.restart_ptr) == 1
    assert torch.equal(vq.restart_features[0], near0[1])
    vq.reset_usage()
    vq(far)  # step 3: codes 1, 2, 3 (no assignment in 3 steps) restart from the buffer, then get used
    assert int(vq.restarted_codes) == 3
    seen = torch.cat([near0, far, near0, far])
    assert all((seen == vq.codebook[k]).all(1).any() for k in (1, 2, 3))
    u = vq.usage()
    assert u.codes_used >= 2 and int(u.counts[0]) < 2  # the far features moved off code 0 onto restarted codes


def test_restart_resets_ema_statistics():
    vq = VectorQuantizer(2, 3, distance="l2", codebook_update="ema", decay=0.5, dead_code_threshold=1,
                         dead_code_interval=1, seed=0)
    with torch.no_grad():
        vq.codebook.copy_(torch.tensor([[0.0, 0.0], [50.0, 50.0], [-50.0, 50.0]]))
        vq.ema_embed_sum.copy_(vq.codebook * 7), vq.ema_cluster_size.fill_(7)
    vq(torch.tensor([[1.0, 0.0]]))
    vq(torch.tensor([[1.0, 0.0]]))  # codes 1, 2 dead for the step: restarted at [1, 0] with prior statistics
    assert int(vq.restarted_codes) == 2
    # after the restart (stats 1 and the new code) this step's EMA ran: one feature on the first of the tied codes
    torch.testing.assert_close(vq.ema_cluster_size[2], torch.tensor(0.5))
    torch.testing.assert_close(vq.ema_embed_sum[2], torch.tensor([0.5, 0.0]))


# -------------------------------------------------------------------------------------------------------- EMA
def test_ema_update_exact_on_hand_made_case():
    vq = VectorQuantizer(2, 2, distance="l2", codebook_update="ema", decay=0.5, eps=0.1, commitment_weight=0.25)
    assert "codebook" not in dict(vq.named_parameters()) and "vq" not in str(list(vq.parameters()))
    with torch.no_grad():
        vq.codebook.copy_(torch.tensor([[1.0, 0.0], [0.0, 1.0]]))
        vq._reset_ema()
    z = torch.tensor([[3.0, 0.0], [1.0, 0.0], [0.0, 5.0]], requires_grad=True)  # codes 0, 0, 1
    q, idx, loss, parts = vq(z, return_loss_breakdown=True)
    assert idx.tolist() == [0, 0, 1]
    torch.testing.assert_close(q, torch.tensor([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0]]))  # codes before the update
    torch.testing.assert_close(loss, 0.25 * parts.commitment)  # L_vq is not used with EMA
    # sizes 0.5 * 1 + 0.5 * [2, 1] = [1.5, 1]; sums 0.5 * I + 0.5 * [[4, 0], [0, 5]] = [[2.5, 0], [0, 3]]
    torch.testing.assert_close(vq.ema_cluster_size, torch.tensor([1.5, 1.0]))
    torch.testing.assert_close(vq.ema_embed_sum, torch.tensor([[2.5, 0.0], [0.0, 3.0]]))
    # Laplace: (N_k + 0.1) / (2.5 + 0.2) * 2.5 = 40/27 and 55/54 -> codes 2.5 * 27/40 and 3 * 54/55
    torch.testing.assert_close(vq.codebook, torch.tensor([[67.5 / 40, 0.0], [0.0, 162 / 55]]))
    loss.backward()
    assert vq.codebook.grad is None


def test_ema_converges_to_assigned_means():
    x = _clustered(n_clusters=4, per=16, dim=4)
    vq = VectorQuantizer(4, 4, distance="l2", init="kmeans", codebook_update="ema", decay=0.8, kmeans_iters=0)
    vq.init_from_features(x[::16] + 1.0)  # one (shifted) seed per cluster
    for _ in range(80):
        vq(x)
    idx = vq.nearest(x)
    means = torch.stack([x[idx == k].mean(0) for k in range(4)])
    torch.testing.assert_close(vq.codebook, means, atol=1e-3, rtol=1e-3)


# ------------------------------------------------------------------------------------------- usage and monitor
def test_usage_summary_on_known_stream():
    vq = VectorQuantizer(4, 8, distance="l2")
    with torch.no_grad():
        vq.codebook.copy_(torch.cat([torch.eye(4), -torch.eye(4)]) * 10)
    stream = torch.tensor([0, 1, 2, 3] * 4 + [0] * 16)  # code 0: 20, codes 1-3: 4 each, 4-7 never
    vq.eval()(vq.codebook[stream].detach())
    u = vq.usage()
    p = torch.tensor([20, 4, 4, 4], dtype=torch.float64) / 32
    assert u.counts.tolist() == [20, 4, 4, 4, 0, 0, 0, 0] and u.codes_used == 4
    assert u.perplexity == pytest.approx(float(torch.exp(-(p * p.log()).sum())))
    history = [{"epoch": 1, "codebook_perplexity": 1.5, "codebook_used": 0.01, "codebook_dead_codes": 990,
                "codebook_restarts": 0},
               {"epoch": 2, "codebook_perplexity": u.perplexity, "codebook_used": u.fraction_used,
                "codebook_dead_codes": 8 - u.codes_used, "codebook_restarts": 12}]
    s = usage_summary(history, 8)
    # epoch 2: half the codes used, but perplexity 3.2 < min(10, 8 / 2): flagged too
    assert s["final_dead_codes"] == 4 and s["restarted_codes"] == 12 and s["collapsed_epochs"] == [1, 2]
    assert s["min_perplexity"] == 1.5 and s["final_fraction_used"] == 0.5
    assert json.loads(json.dumps(s)) == s


def _epoch_record(vq, x, epoch):
    vq.reset_usage()
    vq.train()(x)
    u = vq.usage()
    return {"epoch": epoch, "codebook_perplexity": u.perplexity, "codebook_used": u.fraction_used}


def test_warning_fires_on_collapse_once_and_not_on_healthy():
    x = _clustered(n_clusters=64, per=8, dim=16, offset=3.0).abs()
    collapsed = VectorQuantizer(16, 256, init="uniform")
    with torch.no_grad():  # a collapsed codebook as in the pilot: 3 codes reachable, the others point away
        collapsed.codebook[3:] = -1.0
    healthy = VectorQuantizer(16, 256, init="kmeans")
    healthy.init_from_features(x)
    rec_c, rec_h = _epoch_record(collapsed, x, 1), _epoch_record(healthy, x, 1)
    assert rec_c["codebook_perplexity"] < 10 and rec_h["codebook_perplexity"] > 30
    with pytest.warns(CodebookCollapseWarning, match="codebook_preset: healthy"):
        assert check_usage([rec_c], 256)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert check_usage([rec_h], 256) is None
        assert check_usage([rec_c, dict(rec_c, epoch=2)], 256)  # flagged again, warned only the first time
        assert check_usage([dict(rec_c, epoch=1)], 256, UsageThresholds(start_epoch=2)) is None
    small = {"epoch": 1, "codebook_perplexity": 7.9, "codebook_used": 1.0}  # n = 8 used uniformly: healthy
    assert usage_problem(small, 8) is None and usage_problem(small, 1000)
    with pytest.raises(ValueError):
        UsageThresholds(min_fraction_used=2)


# ---------------------------------------------------------------------------------------------------- presets
@pytest.mark.parametrize("preset", list(CODEBOOK_PRESETS))
def test_presets_build_init_and_train_one_step(preset):
    torch.manual_seed(0)
    model = vqsa.create_model("cifar_resnet8", 10, codebook_size=16, codebook_preset=preset, init_samples=None)
    assert model.model_config["init"] == CODEBOOK_PRESETS[preset]["init"]
    rebuilt = vqsa.create_model(**model.model_config)
    assert rebuilt.model_config == model.model_config
    images = torch.rand(24, 3, 16, 16)
    if model.vq.needs_data_init:
        bn = {k: v.clone() for k, v in model.named_buffers()}
        rng = torch.get_rng_state()
        n = init_codebook_from_data(model, [(images[:8], None), (images[8:],)], max_features=20)
        assert n == 20 and not model.vq.needs_data_init
        assert all(torch.equal(bn[k], v) for k, v in model.named_buffers() if not k.startswith("vq."))
        assert torch.equal(rng, torch.get_rng_state())  # the pass leaves the global RNG alone
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    before = model.vq.codebook.detach().clone()
    out = model.train()(images[:8], return_aux=True)
    (F.cross_entropy(out.logits, torch.arange(8)) + out.aux_loss).backward()
    opt.step()
    assert not torch.equal(before, model.vq.codebook)  # loss update (Adam) or EMA update both move the codes
    is_param = isinstance(model.vq.codebook, torch.nn.Parameter)
    assert is_param == (CODEBOOK_PRESETS[preset]["codebook_update"] == "loss")


def test_preset_overrides_and_errors():
    assert codebook_preset("healthy") is not codebook_preset("healthy")  # copies
    model = vqsa.create_model("cifar_resnet8", 10, codebook_size=8, codebook_preset="healthy", dead_code_interval=7)
    assert model.vq.dead_code_interval == 7 and model.vq.init == "kmeans"
    with pytest.raises(ValueError, match="codebook_preset must be one of"):
        vqsa.create_model("cifar_resnet8", 10, codebook_preset="robust")
    with pytest.raises(ValueError, match="vq=False"):
        vqsa.create_model("cifar_resnet8", 10, vq=False, codebook_preset="healthy")
    with pytest.raises(ValueError, match="no codebook"):
        init_codebook_from_data(vqsa.create_model("cifar_resnet8", 10, vq=False), [torch.rand(2, 3, 16, 16)],
                                max_features=4)
    with pytest.raises(ValueError, match="max_features"):
        init_codebook_from_data(model, [torch.rand(2, 3, 16, 16)], max_features=0)


@pytest.mark.parametrize("kwargs", [dict(codebook_update="adam"), dict(decay=1.0), dict(decay=0), dict(eps=0),
                                    dict(init_samples=-1), dict(dead_code_buffer=1.5),
                                    dict(init="uniform", init_samples=10)])
def test_bad_health_options(kwargs):
    with pytest.raises(ValueError):
        VectorQuantizer(4, 8, **kwargs)


def test_train_runs_the_data_init_and_reports_usage(tmp_path, capsys):
    from vqsa.cli.main import main

    args = {"output_dir": str(tmp_path), "name": "h", "epochs": "1", "batch_size": "32", "data.dataset": "digits",
            "data.train_subset": "64", "data.val_subset": "32", "data.workers": "0", "model.name": "cifar_resnet8",
            "model.codebook_size": "16", "model.kwargs": "{codebook_preset: healthy, init_samples: 48}",
            "corruption.corruptions": "[contrast]", "eval.enabled": "false"}
    assert main(["train", *[t for k, v in args.items() for t in (f"--{k}", v)]]) == 0
    assert "codebook initialised (kmeans) from 48 training features" in capsys.readouterr().err
    record = json.loads((tmp_path / "h" / "metrics.jsonl").read_text().splitlines()[-1])
    assert record["codebook_dead_codes"] == 16 - round(16 * record["codebook_used"])
    summary = json.loads((tmp_path / "h" / "summary.json").read_text())["codebook"]
    assert summary["codebook_size"] == 16 and summary["final_perplexity"] == record["codebook_perplexity"]
