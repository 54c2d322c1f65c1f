"""TokenSelfAttention against a naive per-sample implementation of the authors' Eq. 8 layout."""
import math

import torch

from vqsa.layers import Fusion, TokenSelfAttention


def naive_official(code, feat, W_K, W_Q, W_V, scale=1 / math.sqrt(2)):
    """The authors' layout, one sample at a time: fuse = [code, feat] as columns (d, 2), A over keys (dim 0)."""
    outs = []
    for c, f in zip(code, feat):
        fuse = torch.stack([c, f], dim=1)  # (d, 2)
        K, Q, V = W_K @ fuse, W_Q @ fuse, W_V @ fuse
        A = torch.softmax(K.T @ Q * scale, dim=0)  # (2 keys, 2 queries)
        outs.append((V @ A).T.reshape(-1))  # (2, d) -> 2d: [code token, feature token]
    return torch.stack(outs)


def test_attention_matches_naive_reference():
    torch.manual_seed(0)
    d, B = 12, 5
    attn = TokenSelfAttention(d)
    z, z_hat = torch.randn(B, d), torch.randn(B, d)
    W_Q, W_K, W_V = attn.qkv.weight.detach().chunk(3, dim=0)
    tokens = Fusion("concat")(z, z_hat)
    torch.testing.assert_close(attn(tokens).flatten(1), naive_official(z_hat, z, W_K, W_Q, W_V))


def test_scale_is_the_same_in_train_and_eval():
    attn = TokenSelfAttention(8)
    x = torch.randn(3, 2, 8)
    train = attn.train()(x)
    torch.testing.assert_close(attn.eval()(x), train)
    assert attn.scale == 1 / math.sqrt(2)


def test_kaiming_normal_init_per_map():
    d = 512
    for w in TokenSelfAttention(d).qkv.weight.detach().chunk(3, dim=0):
        assert abs(w.std().item() - math.sqrt(2 / d)) < 0.05 * math.sqrt(2 / d)


def test_fusion_modes():
    z, zh = torch.randn(2, 4), torch.randn(2, 4)
    assert torch.equal(Fusion("none")(z, None), z)
    assert torch.equal(Fusion("replace")(z, zh), zh)
    assert torch.equal(Fusion("add")(z, zh), z + zh)
    cat = Fusion("concat")(z, zh)
    assert cat.shape == (2, 2, 4) and torch.equal(cat[:, 0], zh) and torch.equal(cat[:, 1], z)
    assert Fusion("concat").out_features(4) == 8 and Fusion("add").out_features(4) == 4
